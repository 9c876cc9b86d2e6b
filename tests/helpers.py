"""Small synthetic datasets shared by the tests: learnable, tiny, deterministic."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace

import numpy as np
import pytest

from keras_itl.datasets import Split

HEAVY_ARCHS = ("densenet121", "resnet50")  # minutes of graph tracing per training call on a 2-core CPU


def bright_quadrant_split(n: int, *, size: int = 12, channels: int = 1, num_classes: int = 4,
                          seed: int = 0, prefix: str = "toy") -> Split:
    """Images whose class is the quadrant holding a bright blob, on uniform noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, n).astype(np.int64)
    images = rng.integers(0, 60, (n, size, size, channels)).astype(np.uint8)
    half = size // 2
    for i, label in enumerate(labels):
        row, col = divmod(int(label) % 4, 2)
        images[i, row * half:(row + 1) * half, col * half:(col + 1) * half, :] += 150
    ids = np.array([f"{prefix}/{i:04d}" for i in range(n)], dtype=object)
    return Split(images=images, labels=labels, ids=ids)


def ranking_inputs(labels: np.ndarray, *, probabilities: np.ndarray | None = None, features: np.ndarray | None = None,
                   num_classes: int = 3, seed: int = 0) -> SimpleNamespace:
    """What a ranker reads from ``RankingInputs`` (labels, warm-up probabilities, head features, seed), without a
    model: tiny black images carry the labels and ids."""
    labels = np.asarray(labels, dtype=np.int64)
    train = Split(images=np.zeros((len(labels), 2, 2, 1), np.uint8), labels=labels,
                  ids=np.array([f"i{k:02d}" for k in range(len(labels))], dtype=object))
    return SimpleNamespace(train=train, probabilities=probabilities, train_features=features,
                           num_classes=num_classes, seed=seed)


@contextmanager
def crash_after_epoch(monkeypatch: pytest.MonkeyPatch, epoch: int) -> Iterator[None]:
    """Training inside the block crashes (KeyboardInterrupt, which the block expects) right after checkpointing
    ``epoch``; afterwards training checkpoints as usual."""
    from keras_itl.training import run_state

    original = run_state.RunState.end_epoch

    def crashing(self, record, improved):
        original(self, record, improved)
        if int(self.epoch.numpy()) == epoch:
            raise KeyboardInterrupt

    monkeypatch.setattr(run_state.RunState, "end_epoch", crashing)
    try:
        with pytest.raises(KeyboardInterrupt):
            yield
    finally:
        monkeypatch.setattr(run_state.RunState, "end_epoch", original)
