"""Sharded influence: two worker processes on 127.0.0.1 score like one process, and act on the chief's drop set.

Each worker computes its shard of the validation gradient, the Hessian-vector products and the
scores (keras_itl.influence.sharding); the reduced result must match the unsharded one, scored by
the same function in the test's own process. Workers are separate processes (a
MultiWorkerMirroredStrategy must be the first TF thing in its process).
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from keras_itl.training import make_strategy
from keras_itl.training.launcher import local_tf_configs
from tests.influence.influence_shard_worker import score

TIMEOUT_SECONDS = 600


def _score_in_workers(output: Path, scratch: Path, workers: int) -> list[dict]:
    """Run the scoring script in ``workers`` processes on 127.0.0.1; each process's JSON report."""
    env = {**os.environ, "TMPDIR": str(scratch), "TF_CPP_MIN_LOG_LEVEL": "2"}
    processes = [subprocess.Popen([sys.executable, "-m", "tests.influence.influence_shard_worker", str(output)],
                                  env={**env, "TF_CONFIG": config}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True)
                 for config in local_tf_configs(workers)]
    reports = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=TIMEOUT_SECONDS)
        assert process.returncode == 0, stdout[-3000:] + stderr[-3000:]
        reports.append(json.loads(stdout.strip().splitlines()[-1]))
    return reports


def _csv(output: Path) -> list[dict]:
    with open(output / "influence.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_two_workers_score_like_one_process_and_share_the_chiefs_drop_set(tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    one, two = tmp_path / "one", tmp_path / "two"
    single = score(one, make_strategy(["/cpu:0"]))  # unsharded, in this process: one replica, no TF_CONFIG
    chief, worker = _score_in_workers(two, scratch, 2)

    difference = float(np.abs(np.load(one / "scores.npy") - np.load(two / "scores.npy")).max())
    print(f"sharded influence: max abs score difference {difference:.3g}; scoring seconds "
          f"1 process {single['scores']:.2f}, 2 workers {chief['scores']:.2f} / {worker['scores']:.2f} "
          "(shared, loaded machine)")
    assert difference <= 1e-5
    rows_one, rows_two = _csv(one), _csv(two)
    assert [r["id"] for r in rows_one] == [r["id"] for r in rows_two]
    assert max(abs(float(a["score"]) - float(b["score"])) for a, b in zip(rows_one, rows_two)) <= 1e-5
    assert [r["predicted_label"] for r in rows_one] == [r["predicted_label"] for r in rows_two]

    # The worker proposed dropping everything, but both act on the chief's set (what the chief wrote).
    assert 0 < len(chief["dropped"]) < len(rows_two)
    assert worker["dropped"] == chief["dropped"] == [i for i, r in enumerate(rows_two) if r["dropped"] == "1"]
    # Only the chief wrote files; the shared output holds exactly what one process writes.
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir()) == \
        ["influence.csv", "scores.npy"]
