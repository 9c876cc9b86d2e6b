"""Every preset end to end at a tiny size: TFDS presets on tfds.testing.mock_data, ImageNet ones with weights=None.

The runs go through the real code paths of each preset - its TFDS loader (mocked examples, no
download), its source (ImageNet architecture with random weights, or a source dataset pretrained
here), its imbalance or label noise, the methods, the results table and the export. Only the
budget shrinks: one epoch, no separate head phase, damping 1, a single replica, one instance row
(influence) per preset - every baseline row runs end to end in the digits experiments named below.

The scratch and model rows run the same code whatever the architecture or dataset, so of the
ImageNet presets only cifar10 with VGG16 runs all three methods; the other ImageNet cases run the
instance row alone (what is particular to a preset - its loader, class count, imbalance - shows in
it). Every ImageNet case fine-tunes only the top of the backbone (VGG16's last block, the last ten
layers of ResNet50 and DenseNet121): tracing a heavy backbone's training graphs takes minutes per
row on this 2-core CPU, and VGG16's backward pass through its 32- to 4-pixel blocks cost about a
third of a stand-in case's CPU time. Training a whole VGG16 still runs in cifar10's scratch row, and
fine-tuning a whole backbone (no ``fine_tune_layers``) in every digits experiment - the same code.

Two presets run end to end in other tests, held to the same checks (tests/experiment/experiment_checks.py):
``digits`` is the README's main job (tests/experiment/test_readme_main_job.py, all six rows at a small
budget) and ``digits-noisy`` the tiny experiment of tests/experiment/test_experiment.py (all six rows, then
served); running them here again would only repeat them.

cifar10 runs with each of its three Keras Applications (one experiment per architecture, as
``--arch`` does). The other ImageNet presets run with VGG16 in place of their ResNet50 /
DenseNet121: on this 2-core CPU one DenseNet121 training call spends 40-220 s tracing its graph,
so every preset with every architecture would take most of an hour.
"""
from __future__ import annotations

from dataclasses import replace

import pytest
import tensorflow_datasets as tfds

from keras_itl.experiment import run_experiment
from keras_itl.influence import SolverOptions
from keras_itl.presets import INFLUENCE_ONLY, PRESETS
from keras_itl.pretrained import IMAGENET
from keras_itl.training import make_strategy
from keras_itl.transfer import RANDOM_WEIGHTS, InstanceOptions
from tests.experiment.experiment_checks import check_experiment

MOCK_EXAMPLES = 60  # per TFDS split
STAND_IN_ARCH = "vgg16"  # the Keras Application that traces fastest
# The top of the backbone the other ImageNet cases fine-tune: VGG16's block 5 (conv x3 + pool), ten layers of a
# heavy backbone (backward graphs through all of it take minutes).
TOP_LAYERS = {"vgg16": 4, "densenet121": 10, "resnet50": 10}
RUN_ELSEWHERE = {"digits": "test_readme_main_job.py", "digits-noisy": "test_experiment.py"}
ALL_METHODS_CASE = ("cifar10", STAND_IN_ARCH)  # the one ImageNet case that runs scratch and model too
# mnist-digits-unlabelled's source-only row fine-tunes on all 3,600 mnist-5k source images, the slowest row of the
# offline presets; the same code runs on the digits source in digits-mnist-unlabelled.
FEWER_ROWS = {"mnist-digits-unlabelled": ("coral", "mmd", "dann")}


def _cases() -> list[tuple[str, str]]:
    """(preset, arch) pairs: one experiment each, so parallel test workers can share them out."""
    cases = []
    for name, preset in PRESETS.items():
        if name in RUN_ELSEWHERE:
            continue
        archs = preset.archs if preset.source != IMAGENET or name == "cifar10" else (STAND_IN_ARCH,)
        cases += [(name, arch) for arch in archs]
    return cases


def _tiny(name: str, arch: str):
    preset = PRESETS[name]
    tiny = replace(preset, archs=(arch,), epochs=1, head_epochs=0, source_epochs=1, batch_size=8,
                   instance_policies=INFLUENCE_ONLY)
    if preset.max_train_examples is not None:  # the offline digits presets: real data, fewer of it
        # batch 32 as the tiny digits experiment: the source it pretrains is then reused from the cache
        tiny = replace(tiny, max_train_examples=80, image_size=12, batch_size=32,
                       methods=FEWER_ROWS.get(name, preset.methods))
    # Damping 1: a randomly initialised backbone after one epoch gives the head an ill-conditioned
    # Hessian, on which cg at 0.01 needs retries (tested in test_influence) and minutes.
    overrides = {"instance": InstanceOptions(solver=SolverOptions(damping=1.0))}  # the policy is the row's (influence)
    if preset.source == IMAGENET:
        overrides["weights"] = RANDOM_WEIGHTS
        overrides["fine_tune_layers"] = TOP_LAYERS[arch]
        if (name, arch) != ALL_METHODS_CASE:
            tiny = replace(tiny, methods=("instance",))
    return tiny, overrides


@pytest.mark.slow
@pytest.mark.parametrize(("name", "arch"), _cases())
def test_preset_runs_end_to_end_on_mock_data(name, arch, tmp_path):
    preset, overrides = _tiny(name, arch)
    with tfds.testing.mock_data(num_examples=MOCK_EXAMPLES):
        result = run_experiment(preset, tmp_path / "out", overrides=overrides, export_base=tmp_path / "saved",
                                strategy=make_strategy(["/cpu:0"]), verbose=False)

    saved = check_experiment(preset, tmp_path / "out", tmp_path / "saved", weights=overrides.get("weights"))
    assert result.exported == saved["exported"]  # what the call returned is what it wrote
    assert [(r.arch, r.method, r.test_error) for r in result.runs] == \
        [(r["arch"], r["method"], r["test_error"]) for r in saved["runs"]]
