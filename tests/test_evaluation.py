"""Evaluation keeps no model alive: an experiment evaluates many models in one process."""
from __future__ import annotations

import gc
import weakref

from keras_itl.backbones import build_model
from keras_itl.evaluation import evaluate_model
from tests.helpers import bright_quadrant_split


def test_a_deleted_model_is_garbage_collected_after_evaluation():
    split = bright_quadrant_split(16, size=12)
    refs = []
    for seed in range(3):
        model = build_model("small-cnn", 4, image_size=12, channels=1)
        metrics = evaluate_model(model, split)
        assert metrics.num_examples == 16
        refs.append(weakref.ref(model))
        del model
    gc.collect()
    assert [ref() is None for ref in refs] == [True, True, True]
