"""The instance method's refits train as many optimizer steps as the warm-up, however many instances they drop."""
from __future__ import annotations

import pytest

from keras_itl.errors import UserError
from keras_itl.transfer.config import TransferConfig
from keras_itl.transfer.instance_method import steps_budget


def _config(**changes) -> TransferConfig:
    return TransferConfig(target="digits", source="mnist-5k", method="instance", **changes)


def test_a_refit_on_fewer_instances_gets_proportionally_more_epochs():
    budget = steps_budget(_config(epochs=10, head_epochs=2), total=300, kept=219)
    assert (budget.epochs, budget.head_epochs) == (14, 3)  # 10 x 300/219 = 13.7, 2 x 300/219 = 2.7
    assert budget.learning_rate == _config().learning_rate and budget.seed == _config().seed


def test_keeping_everything_keeps_the_budget_and_a_skipped_head_phase_stays_skipped():
    config = _config(epochs=7, head_epochs=0)
    assert steps_budget(config, total=120, kept=120) == config
    assert steps_budget(config, total=120, kept=60).head_epochs == 0


@pytest.mark.parametrize("kept", [0, 121])
def test_a_refit_without_instances_or_with_more_than_all_is_refused(kept):
    with pytest.raises(UserError, match="kept instances"):
        steps_budget(_config(), total=120, kept=kept)
