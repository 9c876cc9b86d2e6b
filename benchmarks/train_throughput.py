"""Examples per second of keras-itl's training loop against Keras' model.fit, side by side.

Same model (small-cnn), same synthetic data, same optimiser, batch size and epochs; the first
epoch (tracing) is left out of both. Target: ratio (ours / fit) >= 0.9.

    python benchmarks/train_throughput.py [--examples 4096] [--epochs 4] [--batch-size 64]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_itl.backbones import build_model  # noqa: E402
from keras_itl.datasets import Split, make_batches  # noqa: E402
from keras_itl.training import TrainConfig, make_strategy, train_model  # noqa: E402


class _EpochTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.started)


def _data(n: int, size: int) -> Split:
    rng = np.random.default_rng(0)
    return Split(images=rng.integers(0, 256, (n, size, size, 1), dtype=np.uint8),
                 labels=rng.integers(0, 10, n).astype(np.int64),
                 ids=np.array([f"bench/{i}" for i in range(n)], dtype=object))


def _steady_rate(total_seconds: float, first_epoch_seconds: float, epochs: int, n: int) -> float:
    """Examples/s after the first (tracing) epoch."""
    return n * (epochs - 1) / (total_seconds - first_epoch_seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=4096)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=28)
    args = parser.parse_args()
    data = _data(args.examples, args.image_size)
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr_schedule="constant", patience=None)

    keras.utils.set_random_seed(0)
    reference = build_model("small-cnn", 10, image_size=args.image_size, channels=1)
    reference.compile(optimizer=keras.optimizers.Adam(config.learning_rate), loss="sparse_categorical_crossentropy")
    timer = _EpochTimer()
    batches = make_batches(data, args.batch_size, shuffle_seed=0, drop_ids=True)
    reference.fit(batches, epochs=args.epochs, callbacks=[timer], verbose=0)
    fit_rate = _steady_rate(sum(timer.seconds), timer.seconds[0], args.epochs, args.examples)

    strategy = make_strategy()
    keras.utils.set_random_seed(0)
    with strategy.scope():
        ours = build_model("small-cnn", 10, image_size=args.image_size, channels=1)
    with tempfile.TemporaryDirectory() as run_dir:
        result = train_model(ours, data, None, config, strategy=strategy, run_dir=run_dir, verbose=False)
    # Whole loop time, so checkpointing and history writing count against us.
    loop_rate = _steady_rate(result.seconds, result.history[0]["seconds"], args.epochs, args.examples)

    print(f"model.fit:      {fit_rate:8.1f} examples/s")
    print(f"keras-itl loop: {loop_rate:8.1f} examples/s ({strategy.num_replicas_in_sync} replica(s), "
          f"{type(strategy).__name__})")
    print(f"ratio ours/fit: {loop_rate / fit_rate:.3f} (target >= 0.9)")


if __name__ == "__main__":
    main()
