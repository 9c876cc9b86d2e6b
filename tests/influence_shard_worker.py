"""One process of the sharded-influence test: score a fixed small-cnn on digits under make_strategy().

Run as ``python -m tests.influence_shard_worker OUTPUT_DIR [TRAIN_EXAMPLES]`` (with TF_CONFIG for a
multi-worker run). The chief writes ``influence.csv`` and the full-precision ``scores.npy``; every
worker prints one JSON line: its timings, and the drop mask it received from the chief (the chief
proposes the harmful instances, every other worker proposes dropping everything).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from keras_itl.training import is_chief, make_strategy

strategy = make_strategy()  # a multi-worker strategy must precede every other TF op

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_itl.backbones import build_model  # noqa: E402
from keras_itl.datasets.loading import load_dataset  # noqa: E402
from keras_itl.influence import InfluenceConfig, WorkerShard, compute_influence  # noqa: E402


def main(output: Path, train_examples: int) -> None:
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
    print(json.dumps({"worker": "chief" if chief else "worker", "dropped": np.flatnonzero(dropped).tolist(),
                      **result.timings}), flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 100)
