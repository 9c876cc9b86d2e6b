"""keras-itl experiment: dry runs of every preset, and a tiny offline digits comparison end to end."""
from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from keras_itl.cli.main import main
from keras_itl.errors import UserError
from keras_itl.presets import OVERRIDES_ENV, PRESETS, with_overrides
from keras_itl.selection import parse_policy
from tests.experiment.experiment_checks import check_experiment
from tests.serving.serving_helpers import Server, post


@pytest.mark.parametrize("name", list(PRESETS))
def test_dry_run_prints_every_run_of_the_preset(name, tmp_path):
    preset = PRESETS[name]
    result = CliRunner().invoke(main, ["experiment", "--preset", name, "--seeds", "2", "--dry-run",
                                       "--output", str(tmp_path)])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    commands = [shlex.split(line) for line in lines[:-1]]
    rows = [(method, None) for method in preset.methods if method != "instance"] + \
        [("instance", p) for p in preset.instance_policies if "instance" in preset.methods]
    assert len(commands) == len(preset.archs) * 2 * len(rows)
    seen = set()
    for words in commands:
        assert words[:2] == ["keras-itl", "train"]
        options = dict(zip(words[2::2], words[3::2]))
        assert options["--source"] == preset.source and options["--target"] == preset.target
        assert options["--image-size"] == str(preset.image_size)
        assert options.get("--label-noise") == (str(preset.label_noise) if preset.label_noise else None)
        assert options.get("--imbalance") == preset.imbalance
        assert options.get("--noise-kind", "symmetric") == preset.noise_kind
        assert options.get("--target-labels", "all") == preset.target_labels
        seen.add((options["--arch"], options.get("--seed", "0"), options["--method"], options.get("--policy")))
    assert seen == {(a, s, m, p) for a in preset.archs for s in ("0", "1") for m, p in rows}
    assert f"{name}/<version>" in lines[-1]
    assert not (tmp_path / "results.md").exists()  # a dry run runs nothing


def test_digits_presets_run_influence_and_every_baseline_and_policies_choose_rows(tmp_path):
    for name in ("digits", "digits-noisy", "digits-pairflip"):
        assert {parse_policy(p).family for p in PRESETS[name].instance_policies} == \
            {"influence", "loss", "cleanlab", "random"}
    assert PRESETS["digits-pairflip"].noise_kind == "pair" and PRESETS["digits-pairflip"].label_noise == 0.3
    result = CliRunner().invoke(main, ["experiment", "--policies", "loss:0.2,cleanlab", "--dry-run",
                                       "--output", str(tmp_path)])
    assert result.exit_code == 0, result.output
    policies = [line.split("--policy ")[1].split()[0] for line in result.output.splitlines() if "--policy" in line]
    assert policies == ["loss:0.2", "cleanlab"]


def test_unknown_preset_lists_the_choices():
    result = CliRunner().invoke(main, ["experiment", "--preset", "imagenet-21k", "--dry-run"])
    assert result.exit_code != 0 and "digits" in result.output and "Traceback" not in result.output


@pytest.mark.slow
def test_tiny_digits_experiment_writes_results_and_serves_its_best_model(tiny_noisy_experiment, tmp_path):
    """Also the digits-noisy preset's end-to-end run (tests/experiment/test_presets_mock.py leaves it to this test)."""
    preset, result, out, saved_models = (tiny_noisy_experiment.preset, tiny_noisy_experiment.result,
                                         tiny_noisy_experiment.out, tiny_noisy_experiment.saved)
    check_experiment(preset, out, saved_models)
    for name in ("results.md", "results.json", "validation_accuracy.png", "harmful_grid.png",
                 "influence_histogram.png"):
        assert (out / name).exists(), name
    saved = json.loads((out / "results.json").read_text())
    rows = ["scratch", "model", "instance[influence]", "instance[loss]", "instance[cleanlab]", "instance[random]"]
    assert [row["method"] for row in saved["rows"]] == rows
    for run in saved["runs"]:  # the table is made of what each run measured on the same test split
        metrics = json.loads((Path(run["run_dir"]) / "metrics-test.json").read_text())
        assert run["test_error"] == pytest.approx(metrics["error_rate"])
    sizes = {json.dumps(json.loads((Path(run["run_dir"]) / "run.json").read_text())["dataset"]["sizes"])
             for run in saved["runs"]}
    assert len(sizes) == 1  # identical splits for every method
    for row in saved["rows"][2:]:  # every instance row: the dropped set and the ranking against the flips
        detection = row["noise_detection"]
        assert detection["flipped_mean"] == 12 and 0.0 <= detection["roc_auc_mean"] <= 1.0
    assert 0 < saved["rows"][5]["dropped_mean"] <= 12  # random:0.2 of 60, less where a class floor bit
    table = (out / "results.md").read_text()
    assert "precision | recall | ROC AUC |" in table
    assert all(f"| small-cnn | {m} |" in table for m in rows)
    best = min(result.runs, key=lambda r: r.val_loss)
    assert result.exported == str(saved_models / "digits-noisy" / "1")
    meta = json.loads((saved_models / "digits-noisy" / "1" / "assets.extra" / "keras_itl.json").read_text())
    assert meta["method"] == best.method.split("[")[0]

    server = Server(["--model-base-path", str(saved_models / "digits-noisy"), "--model-name", "digits"],
                    tmp_path / "server.log")
    try:
        server.wait_available("digits")
        status, body = post(f"{server.url}/v1/models/digits:predict",
                            {"instances": np.zeros((1, 12, 12, 1)).tolist()})
    finally:
        server.stop()
    assert status == 200 and len(body["predictions"][0]["probabilities"]) == 10


def test_preset_overrides_from_the_environment_shrink_the_budget_and_say_so(tmp_path, monkeypatch):
    shrunk = with_overrides(PRESETS["digits"], "epochs=2, max_train_examples=60,label_noise=0.1,imbalance=none")
    assert (shrunk.epochs, shrunk.max_train_examples, shrunk.label_noise, shrunk.imbalance) == (2, 60, 0.1, None)
    assert shrunk.image_size == PRESETS["digits"].image_size  # what is not named keeps the preset's value
    with pytest.raises(UserError, match="'archs=vgg16' is not NAME=VALUE"):
        with_overrides(PRESETS["digits"], "archs=vgg16")

    monkeypatch.setenv(OVERRIDES_ENV, "epochs=3,image_size=12")
    result = CliRunner().invoke(main, ["experiment", "--dry-run", "--output", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert f"{OVERRIDES_ENV}=epochs=3,image_size=12: the preset's budget is overridden" in result.output
    commands = [line for line in result.output.splitlines() if line.startswith("keras-itl train")]
    assert commands and all("--epochs 3" in c and "--image-size 12" in c for c in commands)
    monkeypatch.setenv(OVERRIDES_ENV, "epochs")
    result = CliRunner().invoke(main, ["experiment", "--dry-run", "--output", str(tmp_path)])
    assert result.exit_code != 0 and "is not NAME=VALUE" in result.output and "Traceback" not in result.output
