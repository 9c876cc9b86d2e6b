"""Per-instance influence on the validation loss (Koh & Liang 2017), for any Keras classifier.

For training instance i of n, with s = (H + damping*I)^-1 g_val solved once:

    score_i = g_i . s          (computed for a whole batch as a forward-mode directional derivative)
    predicted_delta_val_loss_i = score_i / n

``predicted_delta_val_loss`` is the first-order change in the mean validation loss if instance i
alone is removed from training (weight 1/n): NEGATIVE means removing it is predicted to LOWER the
validation loss, i.e. the instance is harmful. Per-example gradients are never formed, so memory
holds only a few numbers per training instance.
"""
from __future__ import annotations

import csv
import os
import time
from dataclasses import asdict, dataclass, field

import keras
import numpy as np
import tensorflow as tf

from keras_itl.datasets import Split
from keras_itl.errors import UserError
from keras_itl.influence.derivatives import LossDerivatives
from keras_itl.influence.scope import select_scope
from keras_itl.influence.solvers import SolverOptions, SolverReport, solve

CSV_COLUMNS = ("id", "label", "predicted_label", "loss", "score", "predicted_delta_val_loss", "dropped")


@dataclass
class InfluenceTable:
    """One row per training instance, in training-split order."""

    ids: np.ndarray
    labels: np.ndarray
    predicted_labels: np.ndarray
    losses: np.ndarray
    scores: np.ndarray
    predicted_delta_val_loss: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    def harmful_order(self) -> np.ndarray:
        """Indices from the most harmful (most negative predicted delta) to the most helpful."""
        return np.lexsort((self.ids.astype(str), self.predicted_delta_val_loss))

    def write_csv(self, path: str | os.PathLike, class_names: list[str] | None = None,
                  dropped: np.ndarray | None = None) -> None:
        """Write ``influence.csv``: one row per id; labels as class names when given; 1 in ``dropped`` where dropped."""
        def name(index: int) -> str:
            return class_names[index] if class_names else str(index)

        flags = np.zeros(len(self), bool) if dropped is None else dropped
        with open(path, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(CSV_COLUMNS)
            for row in zip(self.ids, self.labels, self.predicted_labels, self.losses, self.scores,
                           self.predicted_delta_val_loss, flags):
                writer.writerow([row[0], name(int(row[1])), name(int(row[2])), f"{row[3]:.6g}", f"{row[4]:.6g}",
                                 f"{row[5]:.6g}", int(row[6])])


@dataclass
class InfluenceResult:
    """The table plus everything needed to judge it: scope, solver diagnostics, timings."""

    table: InfluenceTable
    scope: str
    num_parameters: int
    val_loss: float
    solver: SolverReport
    timings: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict:
        """JSON-serialisable diagnostics (without the per-instance table)."""
        deltas = self.table.predicted_delta_val_loss
        return {"scope": self.scope, "num_parameters": self.num_parameters, "val_loss": self.val_loss,
                "num_train": len(self.table), "num_harmful": int(np.sum(deltas < 0)),
                "solver": self.solver.to_dict(), "timings": self.timings}


@dataclass(frozen=True)
class InfluenceConfig:
    """Scope, solver and batching of an influence run."""

    scope: str = "head"
    solver: SolverOptions = SolverOptions()
    batch_size: int = 64
    hessian_max_examples: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _progress(label: str, verbose: bool):
    if not verbose:
        return None

    def report(step: int, value: float) -> None:
        if step == 1 or step % 10 == 0:
            print(f"influence: {label} step {step}, {value:.3g}", flush=True)

    return report


def compute_influence(model: keras.Model, train: Split, val: Split, config: InfluenceConfig = InfluenceConfig(),
                      *, verbose: bool = True) -> InfluenceResult:
    """Score every training instance by its predicted effect on the mean validation loss."""
    if len(val) == 0:
        raise UserError("the validation split is empty: influence needs validation data (raise --val-fraction)")
    if len(train) == 0:
        raise UserError("the training split is empty")
    scope = select_scope(model, config.scope)
    derivatives = LossDerivatives(model, scope, config.batch_size)
    timings: dict[str, float] = {}

    started = time.perf_counter()
    val_gradient, val_loss = derivatives.mean_gradient(derivatives.batches(val), len(val))
    timings["val_gradient"] = time.perf_counter() - started

    hessian_split = train
    if config.hessian_max_examples and config.hessian_max_examples < len(train):
        rng = np.random.default_rng(config.solver.seed)
        hessian_split = train.subset(np.sort(rng.choice(len(train), config.hessian_max_examples, replace=False)))
    hessian_batches = derivatives.batches(hessian_split)

    def hessian_product(vector: tf.Tensor) -> tf.Tensor:
        return derivatives.hvp(hessian_batches, len(hessian_split), vector)

    def sampled_product(vector: tf.Tensor, rng: np.random.Generator) -> tf.Tensor:
        size = config.solver.lissa_batch_size
        if not size or size >= len(hessian_split):
            return hessian_product(vector)
        sample = hessian_split.subset(np.sort(rng.choice(len(hessian_split), size, replace=False)))
        return derivatives.hvp(derivatives.batches(sample), size, vector)

    started = time.perf_counter()
    solution, report = solve(config.solver, val_gradient, hessian_product, sampled_product,
                             lambda: derivatives.hessian(hessian_batches, len(hessian_split)),
                             scope.num_parameters, _progress(config.solver.solver, verbose),
                             notify=(lambda message: print(f"influence: {message}", flush=True)) if verbose else None)
    timings["solve"] = time.perf_counter() - started
    if verbose:
        print(f"influence: {report.solver} solve on {scope.num_parameters} parameters ({scope.name} scope): "
              f"{report.iterations} iterations, damping {report.damping:g}, relative residual {report.residual:.2g}, "
              f"{report.seconds:.1f}s",
              flush=True)

    started = time.perf_counter()
    losses, scores, predicted = [], [], []
    for batch_losses, batch_scores, batch_predicted in derivatives.directional_derivatives(
            derivatives.batches(train), solution):
        losses.append(batch_losses)
        scores.append(batch_scores)
        predicted.append(batch_predicted)
    timings["scores"] = time.perf_counter() - started
    score_array = np.concatenate(scores).astype(np.float64)
    table = InfluenceTable(ids=np.asarray(train.ids), labels=np.asarray(train.labels),
                           predicted_labels=np.concatenate(predicted), losses=np.concatenate(losses).astype(np.float64),
                           scores=score_array, predicted_delta_val_loss=score_array / len(train))
    return InfluenceResult(table=table, scope=scope.name, num_parameters=scope.num_parameters, val_loss=val_loss,
                           solver=report, timings=timings)
