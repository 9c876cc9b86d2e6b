"""The one training loop of keras-itl: a GradientTape step run under a tf.distribute strategy.

Every method (from scratch, each phase of model-based fine-tuning, source pretraining, later the
instance-based refits) goes through :func:`train_model`. The loop does not care how many replicas
there are: each replica sums its per-example losses and divides by the number of examples in the
*global* batch, so 1 and N replicas compute the same update. Data order depends only on
``(seed, epoch)``, which makes a resumed run reach the same weights as an uninterrupted one.
"""
from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field

import keras
import tensorflow as tf

from keras_itl import registry
from keras_itl.datasets import Split, make_batches
from keras_itl.errors import UserError
from keras_itl.evaluation import evaluate_model
from keras_itl.registry import LR_SCHEDULES, OPTIMIZERS
from keras_itl.training.compiled_step import CompiledStep, LossTerm, compiled_step
from keras_itl.training.pairing import PAIRED_SEED_OFFSET, Pairing
from keras_itl.training.run_state import RunState
from keras_itl.training.strategy import check_workers_agree, is_chief


@dataclass(frozen=True)
class TrainConfig:
    """Budget and optimiser settings of one training phase."""

    epochs: int = registry.EPOCHS
    batch_size: int = registry.BATCH_SIZE
    learning_rate: float = registry.LEARNING_RATE
    optimizer: str = registry.OPTIMIZER
    lr_schedule: str = registry.LR_SCHEDULE
    patience: int | None = registry.PATIENCE
    seed: int = registry.SEED

    def __post_init__(self) -> None:
        if self.epochs <= 0:
            raise UserError(f"epochs must be positive, got {self.epochs}")
        if self.batch_size <= 0:
            raise UserError(f"batch size must be positive, got {self.batch_size}")
        if not self.learning_rate > 0:
            raise UserError(f"learning rate must be positive, got {self.learning_rate}")
        if self.optimizer not in OPTIMIZERS:
            raise UserError(f"unknown optimizer {self.optimizer!r}; choose one of: {', '.join(OPTIMIZERS)}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise UserError(f"unknown lr schedule {self.lr_schedule!r}; choose one of: {', '.join(LR_SCHEDULES)}")
        if self.patience is not None and self.patience <= 0:
            raise UserError(f"patience must be positive, got {self.patience}")


@dataclass
class TrainResult:
    """What one phase did: per-epoch history and how it ended."""

    name: str
    history: list[dict] = field(default_factory=list)
    stopped_early: bool = False
    best_epoch: int | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


class TrainingDiverged(UserError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def _steps_per_epoch(num_examples: int, batch_size: int, replicas: int) -> int:
    """Batches per epoch; a last batch smaller than the replica count is left out.

    A replica handed an empty batch desynchronises the collective gradient reduction, so at most
    ``replicas - 1`` examples (a different few each epoch, as the order is reshuffled) sit out.
    """
    full, remainder = divmod(num_examples, batch_size)
    return full + (1 if remainder >= replicas else 0)


def _epoch_seed(seed: int, epoch: int) -> int:
    return seed * 1_000_003 + epoch


def _check_scope(model: keras.Model, strategy: tf.distribute.Strategy) -> None:
    variables = model.trainable_variables
    if variables and not strategy.extended.variable_created_in_scope(variables[0].value):
        raise ValueError("build or load the model inside strategy.scope() before training it")


def train_model(
    model: keras.Model,
    train: Split,
    val: Split | None,
    config: TrainConfig,
    *,
    strategy: tf.distribute.Strategy,
    run_dir: str | os.PathLike,
    name: str = "train",
    resume: bool = False,
    verbose: bool = True,
    loss_term: LossTerm | None = None,
    pairing: Pairing | None = None,
) -> TrainResult:
    """Train ``model`` in place on ``train``, one checkpoint per epoch under ``run_dir``.

    With a validation split the loop tracks validation loss, stops after ``patience`` epochs
    without improvement and ends with the best-validation weights. ``resume`` continues from
    the phase's latest checkpoint (a finished or early-stopped phase is not trained again).
    ``loss_term`` adds a method's own term to the training loss (the reported loss stays the cross-entropy).
    ``pairing`` draws a batch of its split beside every training batch and adds its term on both
    (keras_itl.training.pairing). Training labels of -1 are hidden: the loss, accuracy and the reported
    numbers cover the labelled examples (an epoch's ``labelled`` count says how many there were when some
    were hidden).
    """
    if len(train) == 0:
        raise UserError("the training split is empty")
    _check_scope(model, strategy)
    steps_per_epoch = _steps_per_epoch(len(train), config.batch_size, strategy.num_replicas_in_sync)
    if steps_per_epoch == 0:
        raise UserError(f"the training split has {len(train)} examples, fewer than the "
                        f"{strategy.num_replicas_in_sync} replicas training on it")
    compiled = compiled_step(model, strategy, optimizer=config.optimizer, learning_rate=config.learning_rate,
                             schedule=config.lr_schedule, decay_steps=config.epochs * steps_per_epoch,
                             loss_term=loss_term, pairing=pairing)
    state = RunState(model, compiled.optimizer, run_dir, name, settings=asdict(config), chief=is_chief(strategy),
                     term_state=pairing.state if pairing is not None else None)
    try:
        return _train(model, train, val, config, strategy, compiled, state, steps_per_epoch, resume, verbose,
                      pairing)
    finally:
        state.close()


def _train(model: keras.Model, train: Split, val: Split | None, config: TrainConfig,
           strategy: tf.distribute.Strategy, compiled: CompiledStep, state: RunState,
           steps_per_epoch: int, resume: bool, verbose: bool, pairing: Pairing | None) -> TrainResult:
    name = state.name
    image_size, channels = model.input_shape[1], model.input_shape[3]
    if resume:
        state.restore()
    elif state.has_checkpoint():
        raise UserError(f"{state.root} already holds a checkpointed run; pass --resume to continue it or choose "
                        "another output")
    check_workers_agree(strategy, int(state.epoch.numpy()), f"{name}: the epoch resumed from")
    writer = tf.summary.create_file_writer(str(state.root / "logs" / name)) if state.chief else None
    started = time.perf_counter()
    while int(state.epoch.numpy()) < config.epochs and not bool(state.stopped.numpy()):
        epoch = int(state.epoch.numpy())
        batches = make_batches(train, config.batch_size, image_size=image_size, channels=channels,
                               shuffle_seed=_epoch_seed(config.seed, epoch), drop_ids=True).take(steps_per_epoch)
        if pairing is not None:
            paired = make_batches(pairing.split, config.batch_size, image_size=image_size, channels=channels,
                                  shuffle_seed=_epoch_seed(config.seed, epoch) + PAIRED_SEED_OFFSET, drop_ids=True)
            batches = tf.data.Dataset.zip((batches, paired.repeat().take(steps_per_epoch)))
        distributed = strategy.experimental_distribute_dataset(batches)
        record = _run_epoch(compiled.step(distributed), distributed, state, epoch,
                            len(train), steps_per_epoch, config, verbose)
        improved = False
        if val is not None and len(val):
            metrics = evaluate_model(model, val, batch_size=max(config.batch_size, 128))
            record.update(val_loss=metrics.loss, val_accuracy=metrics.accuracy)
            improved = metrics.loss < float(state.best_val_loss.numpy())
            if improved:
                state.best_val_loss.assign(metrics.loss)
                state.bad_epochs.assign(0)
            else:
                state.bad_epochs.assign_add(1)
            if config.patience is not None and int(state.bad_epochs.numpy()) >= config.patience:
                state.stopped.assign(True)
        record["learning_rate"] = float(keras.ops.convert_to_numpy(compiled.optimizer.learning_rate))
        if writer is not None:
            with writer.as_default(step=epoch + 1):
                for key, value in record.items():
                    if key != "epoch":
                        tf.summary.scalar(key, value)
        if verbose:
            print(_epoch_line(name, record, config.epochs), flush=True)
        state.end_epoch(record, improved)
    result = TrainResult(name=name, history=state.history, seconds=time.perf_counter() - started,
                         stopped_early=len(state.history) < config.epochs)
    if val is not None and state.restore_best():
        result.best_epoch = int(state.best_epoch.numpy())
    return result


def _run_epoch(step, dataset, state: RunState, epoch: int, num_examples: int, steps: int,
               config: TrainConfig, verbose: bool) -> dict:
    # A live bar only on a terminal; logs get the one line per epoch that train_model prints.
    live = verbose and sys.stdout.isatty()
    progress = keras.utils.Progbar(steps, stateful_metrics=["loss", "accuracy"], verbose=1 if live else 0)
    total_loss = total_correct = total_labelled = 0.0
    seen = 0
    started = time.perf_counter()
    for index, batch in enumerate(dataset):
        loss_sum, correct, labelled = step(batch)
        batch_size = min(config.batch_size, num_examples - seen)
        seen += batch_size
        total_loss += float(loss_sum)
        total_correct += float(correct)
        total_labelled += float(labelled)
        if not math.isfinite(total_loss):
            kept = state.last_checkpoint or "none (the first epoch had not finished)"
            raise TrainingDiverged(
                f"{state.name}: loss became {total_loss} at epoch {epoch + 1} step {index + 1}; "
                f"training stopped, last good checkpoint kept: {kept}; try a lower --lr"
            )
        counted = max(total_labelled, 1.0)
        progress.update(index + 1, [("loss", total_loss / counted), ("accuracy", total_correct / counted)])
    counted = max(total_labelled, 1.0)
    record = {"epoch": epoch + 1, "loss": total_loss / counted, "accuracy": total_correct / counted,
              "seconds": time.perf_counter() - started}
    return record if total_labelled == seen else {**record, "labelled": int(total_labelled)}


def _epoch_line(name: str, record: dict, epochs: int) -> str:
    parts = [f"{name} epoch {record['epoch']}/{epochs}"]
    if record.get("labelled", 1):
        parts += [f"loss {record['loss']:.4f}", f"acc {record['accuracy']:.4f}"]
    else:
        parts.append("no labelled training examples")
    if "val_loss" in record:
        parts += [f"val_loss {record['val_loss']:.4f}", f"val_acc {record['val_accuracy']:.4f}"]
    return " - ".join(parts)
