"""What a training phase persists so that an interrupted run resumes to the same result.

One checkpoint per epoch holds everything the phase depends on: model, optimizer (and a paired term's
own variables), epoch counter, early-stopping state, the best-validation weights, the epoch history
and the phase's settings.
Keeping the history and best weights inside the checkpoint commits them together: a crash can
never leave a history that disagrees with the weights. ``history-<phase>.json`` is only a
human-readable copy.

Multi-worker runs follow Keras' BackupAndRestore: every worker resumes from the chief's
checkpoints (the run directory, shared storage on a cluster), while non-chief workers save theirs
- tf.distribute needs every worker to save - to a scratch directory removed when the phase ends.
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import keras
import tensorflow as tf

from keras_itl.errors import UserError
from keras_itl.training.run_options import changed_option


def checkpoints_newest_first(directory: Path) -> list[Path]:
    """Checkpoint prefixes (``.../ckpt-N``) found in ``directory``, highest epoch first."""
    numbered = [(int(m.group(1)), path.with_suffix("")) for path in directory.glob("ckpt-*.index")
                if (m := re.fullmatch(r"ckpt-(\d+)", path.stem))]
    return [prefix for _, prefix in sorted(numbered, reverse=True)]


class RunState:
    """Epoch counter, early-stopping state, best weights, history and checkpoints of one phase."""

    def __init__(self, model: keras.Model, optimizer: keras.optimizers.Optimizer,
                 directory: str | os.PathLike, name: str, *, settings: dict, chief: bool = True,
                 term_state: keras.layers.Layer | None = None):
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.best_val_loss = tf.Variable(math.inf, dtype=tf.float64, trainable=False)
        self.best_epoch = tf.Variable(0, dtype=tf.int64, trainable=False)  # 0: no validation improvement yet
        self.bad_epochs = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.stopped = tf.Variable(False, trainable=False)  # early stopping triggered
        self._history = tf.Variable("[]", dtype=tf.string, trainable=False)
        self._settings = tf.Variable(json.dumps(settings, sort_keys=True), dtype=tf.string, trainable=False)
        self._expected_settings = settings
        self._model = model
        self._best_weights = [tf.Variable(w, trainable=False) for w in model.get_weights()]
        self.history: list[dict] = []
        self.name = name
        self.chief = chief
        self.root = Path(directory)  # the chief's run directory: every worker resumes from it
        self.write_root = self.root if chief else Path(tempfile.mkdtemp(prefix=f"keras-itl-worker-{name}-"))
        self._checkpoint = tf.train.Checkpoint(
            model=model, optimizer=optimizer, epoch=self.epoch, best_val_loss=self.best_val_loss,
            best_epoch=self.best_epoch, bad_epochs=self.bad_epochs, stopped=self.stopped,
            history=self._history, settings=self._settings, best_weights=self._best_weights,
            **({"term_state": term_state} if term_state is not None else {}),  # a paired term's own variables
        )
        self._manager = tf.train.CheckpointManager(self._checkpoint, self.write_root / "checkpoints" / name,
                                                   max_to_keep=2)

    @property
    def checkpoint_dir(self) -> Path:
        """Where this phase resumes from (the chief's checkpoints)."""
        return self.root / "checkpoints" / self.name

    @property
    def history_path(self) -> Path:
        return self.root / f"history-{self.name}.json"

    @property
    def last_checkpoint(self) -> str | None:
        return self._manager.latest_checkpoint

    def has_checkpoint(self) -> bool:
        return bool(checkpoints_newest_first(self.checkpoint_dir))

    def restore(self) -> bool:
        """Load the newest intact checkpoint; False when there is nothing to resume.

        An unreadable checkpoint (truncated or corrupt file) is skipped with a warning naming it;
        a checkpoint of different settings is refused with the option that differs.
        """
        candidates = checkpoints_newest_first(self.checkpoint_dir)
        if not candidates:
            return False
        for prefix in candidates:
            try:
                self._checkpoint.restore(str(prefix)).expect_partial()
            except Exception as error:  # noqa: BLE001 - TF's checkpoint readers raise many types on bad files
                detail = (str(error).strip().splitlines() or [""])[0]
                print(f"warning: checkpoint {prefix} is unreadable ({type(error).__name__}: {detail}); "
                      "trying the previous one", file=sys.stderr, flush=True)
                continue
            self._check_settings(prefix)
            self.history = json.loads(self._history.numpy().decode())
            return True
        raise UserError(f"no intact checkpoint to resume in {self.checkpoint_dir}: "
                        f"{', '.join(p.name for p in candidates)} are all unreadable")

    def _check_settings(self, prefix: Path) -> None:
        saved = self._settings.numpy().decode()
        if not saved:
            raise UserError(f"{prefix} was written by an older keras-itl without its settings; "
                            "it cannot be resumed safely: train into another --output")
        saved_settings = json.loads(saved)
        for key, value in self._expected_settings.items():
            if saved_settings.get(key) != value:
                raise changed_option(self.name, key, value, saved_settings.get(key))

    def end_epoch(self, record: dict, improved: bool) -> None:
        """Record a completed epoch and commit it: weights, best weights and history in one checkpoint."""
        self.history.append(record)
        self.epoch.assign_add(1)
        if improved:
            self.best_epoch.assign(self.epoch)
            for best, weight in zip(self._best_weights, self._model.get_weights()):
                best.assign(weight)
        self._history.assign(json.dumps(self.history))
        self._manager.save(checkpoint_number=int(self.epoch.numpy()))
        if self.chief:
            self.history_path.write_text(json.dumps(self.history, indent=2))

    def restore_best(self) -> bool:
        """Load the best-validation weights into the model, when an epoch improved on validation."""
        if int(self.best_epoch.numpy()) == 0:
            return False
        self._model.set_weights([best.numpy() for best in self._best_weights])
        return True

    def close(self) -> None:
        """Remove a non-chief worker's scratch checkpoints (the chief's are the ones to resume from)."""
        if not self.chief:
            shutil.rmtree(self.write_root, ignore_errors=True)
