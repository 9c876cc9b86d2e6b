"""The README's first set-up command: its main job runs offline, prints the comparison table and
leaves a model that TF Serving can load.

The command runs as written, end to end on the real bundled data, at a smaller budget set through
``$KERAS_ITL_PRESET_OVERRIDES`` (fewer and smaller training images, fewer epochs): at the preset's own
budget it took 7.5 minutes, most of the suite's 10-minute target.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from keras_itl.presets import OVERRIDES_ENV, PRESETS, with_overrides
from tests.experiment.experiment_checks import check_experiment

README = Path(__file__).resolve().parents[2] / "README.md"
SMALL_BUDGET = "max_train_examples=60,image_size=12,epochs=2,head_epochs=0,source_epochs=1"


def _main_job_command() -> list[str]:
    block = README.read_text().split("```bash\n", 1)[1].split("```", 1)[0]
    install_and_run = block.strip().splitlines()[0]
    job = install_and_run.split("&&")[-1].strip()
    assert job.startswith("keras-itl "), job
    return shlex.split(job)


@pytest.mark.slow
def test_readme_main_job_prints_the_comparison_and_exports_the_best_model(tmp_path):
    command = _main_job_command()
    executable = Path(sys.executable).with_name("keras-itl")
    # the suite's shared source cache (tests/conftest.py): the mnist-5k source at this budget is the one the
    # other digits experiments pretrain, once per test run
    env = {**os.environ, OVERRIDES_ENV: SMALL_BUDGET}
    done = subprocess.run([str(executable), *command[1:]], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"{OVERRIDES_ENV}={SMALL_BUDGET}" in done.stderr  # the run says its budget is not the preset's
    rows = ("scratch", "model", "instance[influence]", "instance[loss]", "instance[cleanlab]", "instance[random]")
    for method in rows:  # one table row per method and selection policy, with a test error rate
        assert re.search(rf"\| small-cnn \| {re.escape(method)} \| \d+\.\d\d ± \d+\.\d\d \|", done.stdout), \
            done.stdout[-2000:]
    results = list((tmp_path / "runs").glob("*/results.md"))
    assert results and (results[0].parent / "results.json").exists()
    assert list((tmp_path / "saved_models").glob("*/1/saved_model.pb"))  # published for TF Serving
    # the digits preset end to end (tests/experiment/test_presets_mock.py leaves it to this test): the checks every
    # preset passes
    check_experiment(with_overrides(PRESETS["digits"], SMALL_BUDGET), Path("runs/experiment-digits"),
                     Path("saved_models"), cwd=tmp_path)
