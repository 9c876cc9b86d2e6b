"""keras-itl experiment: dry runs of every preset, and a tiny offline digits comparison end to end."""
from __future__ import annotations

import json
import shlex
from dataclasses import replace

import numpy as np
import pytest
from click.testing import CliRunner

from keras_itl.cli.main import main
from keras_itl.experiment import run_experiment
from keras_itl.presets import METHOD_ORDER, PRESETS, get_preset
from tests.serving_helpers import Server, post


@pytest.mark.parametrize("name", list(PRESETS))
def test_dry_run_prints_every_run_of_the_preset(name, tmp_path):
    preset = PRESETS[name]
    result = CliRunner().invoke(main, ["experiment", "--preset", name, "--seeds", "2", "--dry-run",
                                       "--output", str(tmp_path)])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    commands = [shlex.split(line) for line in lines[:-1]]
    assert len(commands) == len(preset.archs) * 2 * 3
    seen = set()
    for words in commands:
        assert words[:2] == ["keras-itl", "train"]
        options = dict(zip(words[2::2], words[3::2]))
        assert options["--source"] == preset.source and options["--target"] == preset.target
        assert options["--image-size"] == str(preset.image_size)
        assert options.get("--label-noise") == (str(preset.label_noise) if preset.label_noise else None)
        assert options.get("--imbalance") == preset.imbalance
        seen.add((options["--arch"], options.get("--seed", "0"), options["--method"]))
    assert seen == {(a, s, m) for a in preset.archs for s in ("0", "1") for m in METHOD_ORDER}
    assert f"{name}/<version>" in lines[-1]
    assert not (tmp_path / "results.md").exists()  # a dry run runs nothing


def test_unknown_preset_lists_the_choices():
    result = CliRunner().invoke(main, ["experiment", "--preset", "imagenet-21k", "--dry-run"])
    assert result.exit_code != 0 and "digits" in result.output and "Traceback" not in result.output


@pytest.mark.slow
def test_tiny_digits_experiment_writes_results_and_serves_its_best_model(tmp_path):
    preset = replace(get_preset("digits"), max_train_examples=60, image_size=12, epochs=2, head_epochs=1,
                     source_epochs=1)
    result = run_experiment(preset, tmp_path / "out", export_base=tmp_path / "saved", verbose=False)
    for name in ("results.md", "results.json", "validation_accuracy.png", "harmful_grid.png",
                 "influence_histogram.png"):
        assert (tmp_path / "out" / name).exists(), name
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [row["method"] for row in saved["rows"]] == list(METHOD_ORDER)
    for run in saved["runs"]:  # the table is made of what each run measured on the same test split
        metrics = json.loads((tmp_path / "out" / "runs" / f"small-cnn-seed0-{run['method']}" /
                              "metrics-test.json").read_text())
        assert run["test_error"] == pytest.approx(metrics["error_rate"])
    sizes = {json.dumps(json.loads((tmp_path / "out" / "runs" / f"small-cnn-seed0-{m}" / "run.json").read_text())
                        ["dataset"]["sizes"]) for m in METHOD_ORDER}
    assert len(sizes) == 1  # identical splits for every method
    table = (tmp_path / "out" / "results.md").read_text()
    assert all(f"| small-cnn | {m} |" in table for m in METHOD_ORDER)
    best = min(result.runs, key=lambda r: r.val_loss)
    assert result.exported == str(tmp_path / "saved" / "digits" / "1")
    exported_meta = json.loads((tmp_path / "saved" / "digits" / "1" / "assets.extra" / "keras_itl.json").read_text())
    assert exported_meta["method"] == best.method

    server = Server(["--model-base-path", str(tmp_path / "saved" / "digits"), "--model-name", "digits"],
                    tmp_path / "server.log")
    try:
        server.wait_available("digits")
        status, body = post(f"{server.url}/v1/models/digits:predict",
                            {"instances": np.zeros((1, 12, 12, 1)).tolist()})
    finally:
        server.stop()
    assert status == 200 and len(body["predictions"][0]["probabilities"]) == 10
