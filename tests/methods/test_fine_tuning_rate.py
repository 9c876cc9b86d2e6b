"""The fine-tuning rate factor chosen from data: one fine-tuning per candidate from the same head, the lowest
validation loss kept - its weights, not a retrain - and a user's factor taken as it is."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from keras_itl import registry
from keras_itl.backbones import build_model
from keras_itl.evaluation import evaluate_model
from keras_itl.methods import MethodInputs, get_method
from keras_itl.training import make_strategy
from keras_itl.transfer import TransferConfig, fit_target
from tests.helpers import bright_quadrant_split

BUDGET = dict(target="toy", source="toy-source", arch="small-cnn", image_size=12, epochs=2, head_epochs=1,
              batch_size=16)


def _fit(tmp_path, **changes):
    strategy = make_strategy()
    with strategy.scope():
        model = build_model("small-cnn", 4, image_size=12, channels=1)
    model.set_weights([np.full_like(w, 0.01) if w.ndim == 1 else w for w in model.get_weights()])
    fit = fit_target(model, bright_quadrant_split(64, seed=1), bright_quadrant_split(32, seed=2),
                     TransferConfig(**BUDGET, **changes), strategy=strategy, run_dir=tmp_path, verbose=False)
    return model, fit


def test_the_candidate_with_the_lowest_validation_loss_is_kept_with_its_weights(tmp_path, monkeypatch):
    # A near-zero second candidate barely moves from the head: the first one wins, so a fit that kept the
    # last candidate's weights instead of the winner's would end with the wrong validation loss.
    monkeypatch.setattr(registry, "FINE_TUNE_LR_FACTORS", (1.0, 1e-9))
    model, fit = _fit(tmp_path)
    choice = fit.lr_factor
    assert choice.chosen_by == "validation" and set(choice.val_losses) == {"1", "1e-09"}
    assert choice.factor == 1.0 and choice.val_losses["1"] < choice.val_losses["1e-09"]
    assert [p.name for p in fit.phases] == ["head", "finetune-lr1", "finetune-lr1e-09"]
    val_loss = evaluate_model(model, bright_quadrant_split(32, seed=2), batch_size=128).loss
    assert val_loss == pytest.approx(choice.val_losses["1"], rel=1e-5)
    assert "lr factor 1 chosen on validation loss" in choice.describe()


def test_a_factor_the_user_sets_is_used_without_a_search(tmp_path):
    _, fit = _fit(tmp_path, fine_tune_lr_factor=0.5)
    assert [p.name for p in fit.phases] == ["head", "finetune"]
    assert fit.lr_factor.factor == 0.5 and fit.lr_factor.chosen_by == "option"


def test_scratch_has_no_fine_tuning_rate(tmp_path):
    strategy = make_strategy()
    with strategy.scope():
        model = build_model("small-cnn", 4, image_size=12, channels=1)
    splits = {"train": bright_quadrant_split(64, seed=1), "val": bright_quadrant_split(32, seed=2)}
    config = TransferConfig(**{**BUDGET, "source": None}, method="scratch")
    outcome = get_method("scratch").fit(MethodInputs(model, SimpleNamespace(split=splits.get), config, strategy,
                                                     tmp_path, verbose=False))
    assert outcome.fine_tuning is None and [p.name for p in outcome.phases] == ["scratch"]


@pytest.mark.parametrize("factor", [0.0, -1.0])
def test_a_factor_that_is_not_positive_is_refused(factor):
    from keras_itl.errors import UserError

    with pytest.raises(UserError, match="fine-tune lr factor must be positive"):
        TransferConfig(**BUDGET, fine_tune_lr_factor=factor)
