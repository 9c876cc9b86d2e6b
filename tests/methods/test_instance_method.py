"""Instance-based transfer end to end, and the influence command, on the real offline digits data."""
from __future__ import annotations

import csv
import json
from collections import Counter

import pytest
from click.testing import CliRunner

from keras_itl import registry
from keras_itl.cli.main import main
from keras_itl.selection.auto import family_gate

# 12x12 images, batch 32, one source epoch: the source budget of the suite's other digits experiments, so the
# mnist-5k source is pretrained once per test run (tests/conftest.py's shared cache)
BUDGET = {"--arch": "small-cnn", "--image-size": 12, "--max-train-examples": 120, "--batch-size": 32, "--epochs": 2,
          "--head-epochs": 1, "--source-epochs": 1}


def _budget(**changes) -> list[str]:
    """BUDGET as command-line arguments, with ``changes`` (option name without dashes) applied."""
    options = {**BUDGET, **{f"--{name.replace('_', '-')}": value for name, value in changes.items()}}
    return [*(str(part) for item in options.items() for part in item), "--quiet"]


TINY = _budget()
# One phase per fit (no separate head phase) halves the training calls and leaves what the tests using it check:
# auto judged by full refits (one per candidate), the baseline policies' selections. The two-phase fine-tuning
# runs in the influence test above, in tests/methods/test_transfer_cli.py and in tests/training/test_training.py.
ONE_PHASE = _budget(head_epochs=0)


def _invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _csv_rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_instance_method_runs_end_to_end_and_its_reports_agree_with_the_csv(tmp_path):
    out = tmp_path / "run"
    result = _invoke("train", "--source", "mnist-5k", "--target", "digits", "--method", "instance",
                     "--label-noise", "0.2", "--output", out, *TINY)
    assert result.exit_code == 0, result.output
    assert "dropped" in result.output and "test error rate" in result.output
    for name in ("influence.csv", "influence.json", "influence_histogram.png", "harmful_grid.png", "model.keras",
                 "metrics-test.json", "run.json"):
        assert (out / name).exists(), name
    rows = _csv_rows(out / "influence.csv")
    summary = json.loads((out / "influence.json").read_text())
    selection = summary["selection"]
    assert len(rows) == 120 == summary["num_train"]
    dropped_rows = [r for r in rows if r["dropped"] == "1"]
    assert sorted(r["id"] for r in dropped_rows) == sorted(selection["drop_ids"])
    assert Counter(r["label"] for r in dropped_rows) == Counter(
        {name: n for name, n in selection["dropped_per_class"].items() if n})
    assert summary["num_harmful"] == sum(float(r["predicted_delta_val_loss"]) < 0 for r in rows)
    _check_auto_choice(selection)
    noise = summary["label_noise_detection"]
    assert noise["flipped"] == 24 and noise["dropped"] == len(dropped_rows) and 0 <= noise["roc_auc"] <= 1
    validation = summary["validation"]  # influence, selection and report parts: disjoint, all of val
    assert set(validation["sizes"]) == {"influence", "selection", "report"}
    assert sum(validation["sizes"].values()) == json.loads((out / "run.json").read_text())["dataset"]["sizes"]["val"]
    assert "chose nothing" in validation["design"] and summary["auto_judge"] == "head"
    run = json.loads((out / "run.json").read_text())
    assert run["influence"]["selection"]["drop_ids"] == selection["drop_ids"]
    # auto pooled both cross-fitted folds: each candidate was judged on the influence and the selection parts
    pooled = validation["sizes"]["influence"] + validation["sizes"]["selection"]
    assert all(c["examples"] == pooled for c in selection["candidates"])
    assert any("cross-fitted folds" in note for note in selection["notes"])
    # the warm-up chose the fine-tuning rate on the influence part; the final refit used it
    choice = run["fine_tuning"]
    assert choice == summary["fine_tune_lr_factor"] and choice["chosen_by"] == "validation"
    assert choice["val_losses"][f"{choice['factor']:g}"] == min(choice["val_losses"].values())
    phases = [phase["name"] for phase in run["phases"]]
    assert summary["final_model"] == ("refit" if selection["drop_ids"] else "warm-up")
    refit = ["head", "finetune"] if selection["drop_ids"] else []
    assert phases == ["warmup-head", "warmup-finetune-lr0.1", "warmup-finetune-lr1", *refit]
    if selection["drop_ids"]:  # the refit took as many optimizer steps as the warm-up: epochs scaled by 120/kept
        kept = 120 - len(selection["drop_ids"])
        epochs = {phase["name"]: len(phase["history"]) for phase in run["phases"]}
        assert summary["final_refit_budget"] == {"epochs": epochs["finetune"], "head_epochs": epochs["head"],
                                                 "kept": kept, "of": 120}
        assert epochs["finetune"] == round(2 * 120 / kept) and epochs["head"] == round(120 / kept)


@pytest.mark.slow
def test_when_nothing_is_dropped_the_warm_up_is_the_final_model_without_a_refit(tmp_path):
    out = tmp_path / "run"
    result = _invoke("train", "--source", "mnist-5k", "--target", "digits", "--method", "instance", "--policy",
                     "sign", "--max-drop-fraction", "0", "--output", out, *ONE_PHASE)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "influence.json").read_text())
    assert summary["selection"]["drop_ids"] == [] and summary["final_model"] == "warm-up"
    run = json.loads((out / "run.json").read_text())
    assert [phase["name"] for phase in run["phases"]] == ["warmup-finetune-lr0.1", "warmup-finetune-lr1"]
    assert not (out / "refits").exists()


def _check_auto_choice(selection):
    """auto's choice agrees with its candidates: a drop set only on a win over none beyond the default gate for
    that many sets, and never fewer drops than the lowest-loss such set (the largest it does not clearly beat)."""
    candidates = selection["candidates"]
    assert candidates[0]["name"] == "none" and candidates[0]["win_z"] == 0
    chosen = next(c for c in candidates if c["name"] == selection["chosen"])
    gate = family_gate(registry.AUTO_MIN_Z, len(candidates) - 1)
    supported = [c for c in candidates[1:] if c["win_z"] > gate]
    assert chosen is candidates[0] if not supported else chosen in supported
    if supported:
        assert len(chosen["drop_ids"]) >= len(min(supported, key=lambda c: c["val_loss"])["drop_ids"])


@pytest.mark.slow
def test_auto_judged_by_full_refits_measures_per_example_losses(tmp_path):
    out = tmp_path / "run"
    result = _invoke("train", "--source", "mnist-5k", "--target", "digits", "--method", "instance", "--label-noise",
                     "0.3", "--noise-kind", "pair", "--auto-judge", "full", "--output", out, *ONE_PHASE)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "influence.json").read_text())
    assert summary["auto_judge"] == "full"
    _check_auto_choice(summary["selection"])
    assert len(summary["selection"]["candidates"]) >= 2


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["loss:0.1", "cleanlab", "random:0.1"])
def test_baseline_policies_run_end_to_end_and_report_their_selection(policy, tmp_path):
    out = tmp_path / "run"
    result = _invoke("train", "--source", "mnist-5k", "--target", "digits", "--method", "instance",
                     "--policy", policy, "--label-noise", "0.2", "--noise-kind", "pair", "--output", out, *ONE_PHASE)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "selection.json").read_text())
    assert report["policy_family"] == policy.split(":")[0] and not (out / "influence.csv").exists()
    run = json.loads((out / "run.json").read_text())
    assert run["influence"]["selection"]["drop_ids"] == report["selection"]["drop_ids"]
    assert run["config"]["noise_kind"] == "pair" and report["label_noise_detection"]["flipped"] == 24
    if policy != "cleanlab":  # loss and random drop exactly 10% of 120 (the floors allow it)
        assert len(report["selection"]["drop_ids"]) == 12


@pytest.fixture(scope="module")
def trained_run(trained_digits_run):
    """The suite's trained digits run (120 training images): influence only reads it."""
    return trained_digits_run / "run"


def test_influence_command_reports_and_checks_against_leave_one_out(trained_run, tmp_path):
    result = _invoke("influence", "--model", trained_run, "--policy", "fraction:0.1", "--check-loo", 4,
                     "--output", tmp_path, "--quiet")
    assert result.exit_code == 0, result.output
    assert "leave-one-out check over 4 instances: Pearson" in result.output
    rows = _csv_rows(tmp_path / "influence.csv")
    assert len(rows) == 120
    harmful = sum(float(r["predicted_delta_val_loss"]) < 0 for r in rows)
    assert harmful > 0
    assert sum(r["dropped"] == "1" for r in rows) == min(12, harmful)  # fraction:0.1 never drops a helpful one
    loo = json.loads((tmp_path / "loo.json").read_text())
    assert len(loo["actual"]) == 4 and (tmp_path / "loo_scatter.png").exists()


@pytest.mark.parametrize("args,message", [
    (["--policy", "auto"], "train --method instance"),
    (["--policy", "loss:0.1"], "is a baseline"),
    (["--solver", "newton"], "newton"),
    (["--scope", "middle"], "unknown scope"),
    (["--val-fraction", "0.0"], "val_fraction"),
])
def test_influence_command_bad_input_is_one_line(trained_run, tmp_path, args, message):
    result = _invoke("influence", "--model", trained_run, "--output", tmp_path, "--quiet", *args)
    assert result.exit_code != 0
    assert message in result.output and "Traceback" not in result.output
