"""Evaluation keeps no model alive (an experiment evaluates many models in one process), and a model
that cannot be loaded is reported in one line whatever the loader raised."""
from __future__ import annotations

import gc
import weakref

import keras
import pytest

from keras_itl.backbones import build_model
from keras_itl.errors import UserError
from keras_itl.evaluation import evaluate_model, load_trained_model
from keras_itl.pretrained import load_source_into
from tests.helpers import bright_quadrant_split


def test_a_deleted_model_is_garbage_collected_after_evaluation():
    split = bright_quadrant_split(16, size=12)
    refs = []
    for _ in range(3):
        model = build_model("small-cnn", 4, image_size=12, channels=1)
        metrics = evaluate_model(model, split)
        assert metrics.num_examples == 16
        refs.append(weakref.ref(model))
        del model
    gc.collect()
    assert [ref() is None for ref in refs] == [True, True, True]


@pytest.mark.parametrize("load", [load_trained_model, lambda path: load_source_into(None, path)],
                         ids=["trained", "source"])
def test_a_load_failure_without_a_message_is_a_one_line_user_error(tmp_path, monkeypatch, load):
    def fail(path):
        raise ValueError()  # Keras raises such errors on some unreadable files

    monkeypatch.setattr(keras.saving, "load_model", fail)
    (tmp_path / "model.keras").write_bytes(b"not a model")
    with pytest.raises(UserError, match=r"cannot load (source )?model .*model\.keras: ValueError$"):
        load(tmp_path / "model.keras")
