"""What every preset's end-to-end experiment must have written, checked from its files alone.

Shared by the tests that run a preset end to end - the mock-data presets, the tiny digits-noisy
experiment and the README's main job (the full digits preset, run as a subprocess) - so each preset
runs once in the suite and is held to the same checks wherever it runs.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from keras_itl.methods import method_names
from keras_itl.presets import PRESETS, Preset
from keras_itl.selection import parse_policy

TFDS_NAMES = {"cifar10": "cifar10", "cifar100": "cifar100", "svhn": "svhn_cropped", "mnist": "mnist",
              "digits": "digits", "mnist-5k": "mnist-5k"}


def row_labels(preset: Preset) -> list[str]:
    """The table rows of one arch, in run order: the preset's methods (scratch, model, instance, ...), the
    instance method one row per policy, model without target labels the source-only row."""
    def labels(method: str) -> list[str]:
        if method == "instance":
            return [f"instance[{parse_policy(p).family}]" for p in preset.instance_policies]
        return ["source-only" if method == "model" and preset.target_labels == "none" else method]

    return [label for method in preset.methods for label in labels(method)]


def _train_labels(run_dir: Path) -> np.ndarray:
    """The (given) class name of every training instance the instance method scored."""
    with open(run_dir / "influence.csv", newline="") as handle:
        return np.array([row["label"] for row in csv.DictReader(handle)])


def check_experiment(preset: Preset, out_dir: Path, export_base: Path, *, weights: str | None = None,
                     cwd: Path = Path()) -> dict:
    """Assert the rows, runs, table, imbalance/noise effects and export of ``preset`` run into ``out_dir``.

    ``preset`` is the preset as run (possibly shrunk); its name picks the paper's numbers. Paths are
    as the experiment was given them; relative ones (a CLI run's defaults) are taken from ``cwd``.
    Returns the parsed results.json for further checks.
    """
    out_dir = cwd / out_dir
    saved = json.loads((out_dir / "results.json").read_text())
    assert [(row["arch"], row["method"]) for row in saved["rows"]] == \
        [(arch, method) for arch in preset.archs for method in row_labels(preset)]
    runs = {(run["arch"], run["method"]): json.loads((cwd / run["run_dir"] / "run.json").read_text())
            for run in saved["runs"]}
    for run in saved["runs"]:
        recorded = runs[(run["arch"], run["method"])]
        assert recorded["dataset"]["name"] == TFDS_NAMES[preset.target]
        assert recorded["config"]["source"] == preset.source and recorded["config"]["image_size"] == preset.image_size
        assert recorded["config"]["weights"] == weights
        assert recorded["config"]["target_labels"] == preset.target_labels
        assert recorded["test"]["error_rate"] == pytest.approx(run["test_error"])
    assert len({json.dumps(run["dataset"]["sizes"]) for run in runs.values()}) == 1  # identical splits

    table = (out_dir / "results.md").read_text()
    paper = PRESETS[preset.name].paper
    assert ("paper's error %" in table) == any(arch in paper for arch in preset.archs)
    for arch in preset.archs:
        if paper.get(arch):
            assert f"| {arch} | instance[influence] |" in table and f"{paper[arch]['instance']:.2f} |" in table

    first = preset.archs[0]
    if preset.imbalance:  # class 0 is the majority of what the instance method scored
        labels = _train_labels(out_dir / "runs" / f"{first}-seed0-instance-influence")
        counts = {label: int((labels == label).sum()) for label in set(labels)}
        majority = runs[(first, "instance[influence]")]["dataset"]["class_names"][0]
        assert counts[majority] == max(counts.values())
    if preset.label_noise:
        instance_row = next(row for row in saved["rows"] if row["method"] == "instance[influence]")
        train_size = runs[(first, "instance[influence]")]["dataset"]["sizes"]["train"]
        assert instance_row["noise_detection"]["flipped_mean"] == round(preset.label_noise * train_size)
        assert "Label-noise detection:" in table

    exported = export_base / preset.name / "1"
    assert saved["exported"] == str(exported)
    metadata = json.loads((cwd / exported / "assets.extra" / "keras_itl.json").read_text())
    assert metadata["experiment"] == preset.name and metadata["method"] in method_names()
    return saved
