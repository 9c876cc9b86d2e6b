"""Every preset end to end at a tiny size: TFDS presets on tfds.testing.mock_data, ImageNet ones with weights=None.

The runs go through the real code paths of each preset - its TFDS loader (mocked examples, no
download), its source (ImageNet architecture with random weights, or a source dataset pretrained
here), its imbalance or label noise, the three methods, the results table and the export. Only the
budget shrinks: one epoch, no separate head phase, the ``sign`` selection (one refit instead of
auto's five), damping 1, a single replica.

cifar10 runs with each of its three Keras Applications (one experiment per architecture, as
``--arch`` does). The other ImageNet presets run with VGG16 in place of their ResNet50 /
DenseNet121: on this 2-core CPU one DenseNet121 training call spends 40-220 s tracing its graph,
so every preset with every architecture would take most of an hour.
"""
from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds

from keras_itl.experiment import run_experiment
from keras_itl.presets import METHOD_ORDER, PRESETS
from keras_itl.pretrained import IMAGENET
from keras_itl.selection import parse_policy
from keras_itl.training import make_strategy
from keras_itl.transfer import RANDOM_WEIGHTS, InstanceOptions

MOCK_EXAMPLES = 60  # per TFDS split
STAND_IN_ARCH = "vgg16"  # the Keras Application that traces fastest
TFDS_NAMES = {"cifar10": "cifar10", "cifar100": "cifar100", "svhn": "svhn_cropped", "mnist": "mnist",
              "digits": "digits"}


def _cases() -> list[tuple[str, str]]:
    """(preset, arch) pairs: one experiment each, so parallel test workers can share them out."""
    cases = []
    for name, preset in PRESETS.items():
        archs = preset.archs if preset.source != IMAGENET or name == "cifar10" else (STAND_IN_ARCH,)
        cases += [(name, arch) for arch in archs]
    return cases


def _tiny(name: str, arch: str):
    preset = PRESETS[name]
    tiny = replace(preset, archs=(arch,), epochs=1, head_epochs=0, source_epochs=1, batch_size=8)
    if preset.max_train_examples is not None:  # the offline digits presets: real data, fewer of it
        tiny = replace(tiny, max_train_examples=80, image_size=12)
    # Damping 1: a randomly initialised backbone after one epoch gives the head an ill-conditioned
    # Hessian, on which cg at 0.01 needs retries (tested in test_influence) and minutes.
    overrides = {"instance": InstanceOptions(damping=1.0)}  # the policies are the preset's rows
    if preset.source == IMAGENET:
        overrides["weights"] = RANDOM_WEIGHTS
    return tiny, overrides


def _train_labels(run_dir) -> np.ndarray:
    """The (given) class name of every training instance the instance method scored."""
    with open(run_dir / "influence.csv", newline="") as handle:
        return np.array([row["label"] for row in csv.DictReader(handle)])


@pytest.mark.slow
@pytest.mark.parametrize(("name", "arch"), _cases())
def test_preset_runs_end_to_end_on_mock_data(name, arch, tmp_path):
    preset, overrides = _tiny(name, arch)
    with tfds.testing.mock_data(num_examples=MOCK_EXAMPLES):
        result = run_experiment(preset, tmp_path / "out", overrides=overrides, export_base=tmp_path / "saved",
                                strategy=make_strategy(["/cpu:0"]), verbose=False)

    labels = ["scratch", "model"] + [f"instance[{parse_policy(p).family}]" for p in preset.instance_policies]
    assert [(row["arch"], row["method"]) for row in result.rows] == \
        [(arch, method) for arch in preset.archs for method in labels]
    runs = {(run.arch, run.method): json.loads((Path(run.run_dir) / "run.json").read_text()) for run in result.runs}
    for (arch, method), run in runs.items():
        assert run["dataset"]["name"] == TFDS_NAMES[preset.target]
        assert run["config"]["source"] == preset.source and run["config"]["image_size"] == preset.image_size
        assert run["config"]["weights"] == overrides.get("weights")
        assert run["test"]["error_rate"] == pytest.approx(
            next(r.test_error for r in result.runs if (r.arch, r.method) == (arch, method)))
    assert len({json.dumps(run["dataset"]["sizes"]) for run in runs.values()}) == 1  # identical splits

    table = (tmp_path / "out" / "results.md").read_text()
    assert ("paper's error %" in table) == any(arch in PRESETS[name].paper for arch in preset.archs)
    for arch in preset.archs:
        paper = PRESETS[name].paper.get(arch)
        if paper:
            assert f"| {arch} | instance[influence] |" in table and f"{paper[2]:.2f} |" in table

    instance_dir = tmp_path / "out" / "runs" / f"{preset.archs[0]}-seed0-instance-influence"
    if preset.imbalance:  # class 0 is the majority of what the instance method scored
        labels = _train_labels(instance_dir)
        counts = {label: int((labels == label).sum()) for label in set(labels)}
        majority = runs[(preset.archs[0], "instance[influence]")]["dataset"]["class_names"][0]
        assert counts[majority] == max(counts.values())
    if preset.label_noise:
        instance_row = next(row for row in result.rows if row["method"] == "instance[influence]")
        train_size = runs[(preset.archs[0], "instance[influence]")]["dataset"]["sizes"]["train"]
        assert instance_row["noise_detection"]["flipped_mean"] == round(preset.label_noise * train_size)
        assert "Label-noise detection:" in table

    exported = tmp_path / "saved" / name / "1"
    assert result.exported == str(exported)
    metadata = json.loads((exported / "assets.extra" / "keras_itl.json").read_text())
    assert metadata["experiment"] == name and metadata["method"] in METHOD_ORDER
