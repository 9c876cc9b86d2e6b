"""The README's first set-up command: its main job runs offline and reports a digits test error."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _main_job_command() -> list[str]:
    block = README.read_text().split("```bash\n", 1)[1].split("```", 1)[0]
    install_and_run = block.strip().splitlines()[0]
    job = install_and_run.split("&&")[-1].strip()
    assert job.startswith("keras-itl train"), job
    return shlex.split(job)


@pytest.mark.slow
def test_readme_main_job_prints_a_digits_test_error_rate(tmp_path):
    command = _main_job_command()
    executable = Path(sys.executable).with_name("keras-itl")
    env = {**os.environ, "KERAS_ITL_CACHE": str(tmp_path / "cache")}
    done = subprocess.run([str(executable), *command[1:]], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = done.stdout.strip().splitlines()[-1]
    match = re.search(r"on digits - test error rate (\d+\.\d+)%", summary)
    assert match, summary
    assert float(match.group(1)) < 10.0  # transfer from MNIST makes 8x8 digits easy; chance is 90%
    assert list((tmp_path / "runs").glob("*/model.keras"))
    assert list((tmp_path / "saved_models").glob("*/1/saved_model.pb"))  # published for TF Serving
