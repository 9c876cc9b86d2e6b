"""Multi-worker training on localhost: two ``keras-itl train`` processes under MultiWorkerMirroredStrategy.

A run killed mid-way and resumed must end with the weights of an uninterrupted run (every worker
resumes from the chief's checkpoint), and only the chief writes outputs. Workers are separate
processes (a MultiWorkerMirroredStrategy must be the first TF thing in its process).
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_itl.training.launcher import launch_local_workers, local_tf_configs

TIMEOUT_SECONDS = 900  # 2 shared cores: worker start-up and collectives are slow under load
EPOCHS = 4
TRAIN_ARGS = ["train", "--target", "digits", "--max-train-examples", "160", "--epochs", str(EPOCHS),
              "--batch-size", "32", "--image-size", "12", "--quiet", "--export", "mw"]


def _command(output: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "keras_itl.cli.main", *TRAIN_ARGS, "--output", str(output),
            "--export-base", str(output.parent / "saved_models"), *extra]


def _env(scratch: Path) -> dict:
    env = {**os.environ, "TMPDIR": str(scratch), "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("TF_CONFIG", None)
    return env


def _start_workers(commands: list[list[str]], scratch: Path) -> list[subprocess.Popen]:
    """One process per command, each with its worker's TF_CONFIG (the first is the chief)."""
    return [subprocess.Popen(command, env={**_env(scratch), "TF_CONFIG": tf_config}, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
            for command, tf_config in zip(commands, local_tf_configs(len(commands)))]


def _kill_when(processes: list[subprocess.Popen], path: Path) -> None:
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while not path.exists():
        assert all(p.poll() is None for p in processes), "a worker ended before it could be killed"
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)
    for process in processes:
        process.send_signal(signal.SIGKILL)
        process.communicate()


def _run(command: list[str], scratch: Path) -> tuple[str, str]:
    done = subprocess.run(command, env=_env(scratch), capture_output=True, text=True, timeout=TIMEOUT_SECONDS)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout, done.stderr


def _weights(run_dir: Path) -> list[np.ndarray]:
    return keras.saving.load_model(run_dir / "model.keras").get_weights()


@pytest.mark.slow
def test_killed_and_resumed_two_worker_run_matches_an_uninterrupted_one(tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    uninterrupted, interrupted = tmp_path / "a" / "run", tmp_path / "b" / "run"

    stdout, stderr = _run(_command(uninterrupted, "--workers", "2"), scratch)
    assert "test error rate" in stdout and "[worker 1] worker done" in stderr

    workers = _start_workers([_command(interrupted)] * 2, scratch)
    _kill_when(workers, interrupted / "checkpoints" / "scratch" / "ckpt-2.index")
    # what the killed non-chief left behind (under load it may not have written its scratch checkpoint yet)
    left_by_the_killed = set(scratch.glob("keras-itl-worker-*"))
    assert not (interrupted / "model.keras").exists()
    assert not (interrupted / "checkpoints" / "scratch" / f"ckpt-{EPOCHS}.index").exists()

    # A worker that cannot see the chief's checkpoints must not train on from random weights.
    chief, blind = (_command(interrupted, "--resume"), _command(tmp_path / "c" / "run", "--resume"))
    for worker in _start_workers([chief, blind], scratch):
        output = worker.communicate(timeout=TIMEOUT_SECONDS)[0]
        assert worker.returncode == 1, output[-3000:]
        # the newest intact checkpoint: ckpt-2 may have been cut mid-write, then ckpt-1 is resumed from
        assert re.search(r"Error: scratch: the epoch resumed from differs between workers \(0 to [12]\)", output)

    _run(_command(interrupted, "--workers", "2", "--resume"), scratch)

    difference = max(float(np.abs(a - b).max()) for a, b in zip(_weights(uninterrupted), _weights(interrupted)))
    print(f"kill-and-resume max abs weight difference: {difference:.3g}")
    assert difference <= 1e-6

    # Only the chief wrote outputs: one exported version per run, and the same files as the uninterrupted run.
    for run in (uninterrupted, interrupted):
        assert sorted(p.name for p in (run.parent / "saved_models" / "mw").iterdir()) == ["1"]
    assert sorted(p.name for p in interrupted.iterdir()) == sorted(p.name for p in uninterrupted.iterdir())
    # The non-chief's scratch checkpoints are gone once it finished (only the killed worker's are left behind).
    assert set(scratch.glob("keras-itl-worker-*")) == left_by_the_killed


def test_local_workers_get_one_cluster_and_a_failure_stops_the_others(tmp_path):
    report = tmp_path / "worker-{}.json"
    script = ("import json, os, sys, time; config = json.loads(os.environ['TF_CONFIG']); "
              "index = config['task']['index']; "
              f"open({str(report)!r}.format(index), 'w').write(json.dumps(config)); "
              "sys.exit(3) if index == 1 else time.sleep(600)")
    started = time.monotonic()
    assert launch_local_workers([sys.executable, "-c", script], 2) == 3
    assert time.monotonic() - started < 120  # worker 0 was stopped, not waited for
    configs = [json.loads(Path(str(report).format(i)).read_text()) for i in range(2)]
    assert configs[0]["cluster"] == configs[1]["cluster"]
    assert len(set(configs[0]["cluster"]["worker"])) == 2
    assert all(address.startswith("127.0.0.1:") for address in configs[0]["cluster"]["worker"])
    assert [c["task"] for c in configs] == [{"type": "worker", "index": 0}, {"type": "worker", "index": 1}]
    assert launch_local_workers([sys.executable, "-c", "pass"], 2) == 0


def test_workers_option_refuses_an_existing_tf_config(monkeypatch, tmp_path):
    from click.testing import CliRunner

    from keras_itl.cli.main import main

    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"index": 0}}))
    result = CliRunner().invoke(main, ["train", "--target", "digits", "--workers", "2", "--output", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output.strip() == "Error: --workers starts its own local cluster; unset TF_CONFIG (or drop --workers)"


@pytest.mark.slow
def test_a_paired_method_trains_under_two_workers_and_matches_its_resumed_self(tmp_path):
    """DANN without target labels: source batches beside the target's, a domain classifier trained and
    checkpointed with the model - killed after its first epoch and resumed, it ends where an uninterrupted
    two-worker run does."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    paired = ["--method", "dann", "--source", "mnist-5k", "--source-epochs", "1", "--target-labels", "none",
              "--head-epochs", "0", "--fine-tune-lr-factor", "1"]
    uninterrupted, interrupted = tmp_path / "a" / "run", tmp_path / "b" / "run"
    stdout, stderr = _run(_command(uninterrupted, "--workers", "2", *paired), scratch)
    assert "dann: small-cnn from mnist-5k" in stdout and "[worker 1] worker done" in stderr
    assert json.loads((uninterrupted / "run.json").read_text())["fine_tuning"]["validation"] == "source val"

    workers = _start_workers([_command(interrupted, *paired)] * 2, scratch)
    _kill_when(workers, interrupted / "checkpoints" / "finetune" / "ckpt-2.index")
    _run(_command(interrupted, "--workers", "2", "--resume", *paired), scratch)
    difference = max(float(np.abs(a - b).max()) for a, b in zip(_weights(uninterrupted), _weights(interrupted)))
    assert difference <= 1e-6
