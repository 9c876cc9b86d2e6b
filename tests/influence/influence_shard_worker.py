"""Sharded-influence scoring of a fixed small-cnn on digits: one process of the sharded-influence test.

Run as ``python -m tests.influence.influence_shard_worker OUTPUT_DIR [TRAIN_EXAMPLES]`` with a multi-worker TF_CONFIG
(the strategy is made first: a multi-worker strategy must precede every other TF op); the test scores the
unsharded reference in its own process with ``score`` and a one-replica strategy. The chief writes
``influence.csv`` and the full-precision ``scores.npy``; every worker prints one JSON line: its timings, and
the drop mask it received from the chief (the chief proposes the harmful instances, every other worker
proposes dropping everything).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_itl.backbones import build_model
from keras_itl.datasets.loading import load_dataset
from keras_itl.influence import InfluenceConfig, WorkerShard, compute_influence
from keras_itl.training import is_chief, make_strategy


def score(output: Path, strategy: tf.distribute.Strategy, train_examples: int = 100) -> dict:
    """Score under ``strategy``, write the chief's files to ``output``; this process's report."""
    data = load_dataset("digits", max_train_examples=train_examples, seed=0)
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = build_model("small-cnn", data.info.num_classes, image_size=8, channels=1)
    result = compute_influence(model, data.split("train"), data.split("val"),
                               InfluenceConfig(scope="head", batch_size=32), strategy=strategy, verbose=False)
    chief = is_chief(strategy)
    proposed = result.table.predicted_delta_val_loss < 0 if chief else np.ones(len(result.table), bool)
    dropped = WorkerShard(strategy).from_chief(proposed)
    if chief:
        output.mkdir(parents=True, exist_ok=True)
        result.table.write_csv(output / "influence.csv", dropped=dropped)
        np.save(output / "scores.npy", result.table.scores)
    return {"worker": "chief" if chief else "worker", "dropped": np.flatnonzero(dropped).tolist(), **result.timings}


if __name__ == "__main__":
    worker_strategy = make_strategy()  # first: no TF op may run before a multi-worker strategy is made
    report = score(Path(sys.argv[1]), worker_strategy, int(sys.argv[2]) if len(sys.argv) > 2 else 100)
    print(json.dumps(report), flush=True)
