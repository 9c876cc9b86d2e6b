"""One process of the sharded-influence test: score a fixed small-cnn on digits under make_strategy().

Run as ``python -m tests.influence_shard_worker OUTPUT_DIR`` (with TF_CONFIG for a multi-worker
run). The chief writes ``influence.csv``; every worker prints one JSON line with its scoring time.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from keras_itl.training import is_chief, make_strategy

strategy = make_strategy()  # a multi-worker strategy must precede every other TF op

import keras  # noqa: E402

from keras_itl.backbones import build_model  # noqa: E402
from keras_itl.datasets.loading import load_dataset  # noqa: E402
from keras_itl.influence import InfluenceConfig, compute_influence  # noqa: E402

TRAIN_EXAMPLES = 100


def main(output: Path) -> None:
    data = load_dataset("digits", max_train_examples=TRAIN_EXAMPLES, seed=0)
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = build_model("small-cnn", data.info.num_classes, image_size=8, channels=1)
    result = compute_influence(model, data.split("train"), data.split("val"),
                               InfluenceConfig(scope="head", batch_size=32), strategy=strategy, verbose=False)
    if is_chief(strategy):
        output.mkdir(parents=True, exist_ok=True)
        result.table.write_csv(output / "influence.csv")
    print(json.dumps({"worker": "chief" if is_chief(strategy) else "worker", **result.timings}), flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
