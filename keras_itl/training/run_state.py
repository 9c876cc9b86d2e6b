"""What a training phase persists so that an interrupted run resumes to the same result.

Per phase: a checkpoint every epoch (model, optimizer, epoch counter, early-stopping state),
the best-validation weights, and the epoch history as JSON. Non-chief workers of a multi-worker
run write to a scratch directory of their own, as tf.distribute requires.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import keras
import tensorflow as tf


class RunState:
    """Epoch counter, early-stopping state, checkpoints and history of one training phase."""

    def __init__(self, model: keras.Model, optimizer: keras.optimizers.Optimizer,
                 directory: str | os.PathLike, name: str, *, chief: bool = True):
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.best_val_loss = tf.Variable(math.inf, dtype=tf.float64, trainable=False)
        self.bad_epochs = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.stopped = tf.Variable(False, trainable=False)  # early stopping triggered
        self.history: list[dict] = []
        self.name = name
        self.root = Path(directory) if chief else Path(tempfile.mkdtemp(prefix=f"keras-itl-worker-{name}-"))
        checkpoint = tf.train.Checkpoint(
            model=model, optimizer=optimizer, epoch=self.epoch,
            best_val_loss=self.best_val_loss, bad_epochs=self.bad_epochs, stopped=self.stopped,
        )
        self._best = tf.train.Checkpoint(model=model)
        self._manager = tf.train.CheckpointManager(checkpoint, self.root / "checkpoints" / name, max_to_keep=2)
        self._best_manager = tf.train.CheckpointManager(
            self._best, self.root / "checkpoints" / f"{name}-best", max_to_keep=1)

    @property
    def history_path(self) -> Path:
        return self.root / f"history-{self.name}.json"

    @property
    def last_checkpoint(self) -> str | None:
        return self._manager.latest_checkpoint

    def has_checkpoint(self) -> bool:
        return self.last_checkpoint is not None

    def restore(self) -> bool:
        """Load the latest checkpoint and history; False when there is nothing to resume."""
        if not self.has_checkpoint():
            return False
        self._manager.checkpoint.restore(self.last_checkpoint).expect_partial()
        if self.history_path.exists():
            self.history = json.loads(self.history_path.read_text())[: int(self.epoch.numpy())]
        return True

    def end_epoch(self, record: dict, improved: bool) -> None:
        """Record a completed epoch and persist it (best weights first, then the resumable state)."""
        self.history.append(record)
        self.epoch.assign_add(1)
        if improved:
            self._best_manager.save(checkpoint_number=int(self.epoch.numpy()))
        self.save()

    def save(self) -> None:
        self._manager.save(checkpoint_number=int(self.epoch.numpy()))
        self.history_path.write_text(json.dumps(self.history, indent=2))

    def restore_best(self) -> bool:
        """Load the best-validation weights into the model, when any were saved."""
        if self._best_manager.latest_checkpoint is None:
            return False
        self._best.restore(self._best_manager.latest_checkpoint).expect_partial()
        return True
