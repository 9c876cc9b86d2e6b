"""The margin:P ranker: its margins on a hand-made table, its policy text, and a run end to end."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from keras_itl.cli.main import main
from keras_itl.selection import all_rankers, parse_policy, policy_help, select_drops
from keras_itl.selection.rankers.margin import margins
from tests.helpers import ranking_inputs

PROBS = np.array([[0.7, 0.2, 0.1],    # given 0: 0.7 - 0.2 = 0.5
                  [0.65, 0.35, 0.0],  # given 1: 0.35 - 0.65 = -0.3 (loss 1.05)
                  [0.1, 0.1, 0.8],    # given 2: 0.8 - 0.1 = 0.7
                  [0.35, 0.3, 0.35],  # given 1: 0.3 - 0.35 = -0.05 (loss 1.20: unsure, not contradicted)
                  [0.05, 0.9, 0.05]])  # given 0: 0.05 - 0.9 = -0.85
LABELS = np.array([0, 1, 2, 1, 0])


def test_margins_on_a_hand_made_table():
    np.testing.assert_allclose(margins(PROBS, LABELS), [0.5, -0.3, 0.7, -0.05, -0.85])


def test_margin_policy_drops_the_smallest_margins_first_with_a_reason():
    policy = parse_policy("margin:0.4")
    assert str(policy) == "margin:0.4" and policy.family == "margin" and "margin:P" in policy_help()
    ranking = all_rankers()["margin"].rank(ranking_inputs(LABELS, probabilities=PROBS))
    np.testing.assert_allclose(ranking.suspicion, -margins(PROBS, LABELS))
    result = select_drops(["a", "b", "c", "d", "e"], LABELS, ranking.order_scores, policy=policy,
                          class_names=["x", "y", "z"], max_drop_fraction=0.9, min_class_keep_fraction=0.0,
                          min_per_class=0)
    assert result.drop_ids == ["e", "b"]  # -0.85, then -0.3; the loss ranking takes d (loss 1.20) before b (1.05)
    loss = all_rankers()["loss"].rank(ranking_inputs(LABELS, probabilities=PROBS))
    assert select_drops(["a", "b", "c", "d", "e"], LABELS, loss.order_scores, policy="loss:0.4",
                        class_names=["x", "y", "z"], max_drop_fraction=0.9, min_class_keep_fraction=0.0,
                        min_per_class=0).drop_ids == ["e", "d"]
    assert result.reasons["e"] == "among the 40% smallest label margins (rank 1, margin -0.85)"


@pytest.mark.parametrize("text", ["margin", "margin:0", "margin:1.2"])
def test_margin_needs_a_fraction_strictly_between_0_and_1(text):
    from keras_itl.errors import UserError

    with pytest.raises(UserError):
        parse_policy(text)


@pytest.mark.slow
def test_margin_policy_runs_end_to_end_from_the_cli(tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(main, [
        "train", "--source", "mnist-5k", "--target", "digits", "--method", "instance", "--policy", "margin:0.1",
        "--label-noise", "0.2", "--arch", "small-cnn", "--image-size", "12", "--max-train-examples", "120",
        "--batch-size", "32", "--epochs", "2", "--head-epochs", "0", "--source-epochs", "1", "--quiet",
        "--output", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "selection.json").read_text())
    assert report["policy_family"] == "margin" and len(report["selection"]["drop_ids"]) == 12
    assert all("smallest label margins" in reason for reason in report["selection"]["reasons"].values())
    assert report["label_noise_detection"]["roc_auc"] > 0.5
