"""Per-instance influence on the validation loss (Koh & Liang 2017), for any Keras classifier.

For training instance i of n, with s = (H + damping*I)^-1 g_val solved once:

    score_i = g_i . s          (computed for a whole batch as a forward-mode directional derivative)
    predicted_delta_val_loss_i = score_i / n

``predicted_delta_val_loss`` is the first-order change in the mean validation loss if instance i
alone is removed from training (weight 1/n): NEGATIVE means removing it is predicted to LOWER the
validation loss, i.e. the instance is harmful. Per-example gradients are never formed, so memory
holds only a few numbers per training instance (plus, for ``head``/``top:K``, the frozen part's
activations, computed once and shared by every pass).
"""
from __future__ import annotations

import csv
import os
import time
from dataclasses import asdict, dataclass, field

import keras
import numpy as np
import tensorflow as tf

from keras_itl import registry
from keras_itl.datasets import Split
from keras_itl.errors import UserError
from keras_itl.influence.derivatives import CURVATURES, LossDerivatives
from keras_itl.influence.features import (
    DEFAULT_MEMORY_LIMIT_MB,
    FrozenFeatures,
    frozen_features,
)
from keras_itl.influence.sharding import WorkerShard
from keras_itl.influence.solvers import SolverOptions, SolverReport, solve
from keras_itl.influence.store import load_solution, save_solution, solution_key

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
    """The table plus everything needed to judge it: scope, where the model was cut, solver diagnostics, timings."""

    table: InfluenceTable
    scope: str
    num_parameters: int
    val_loss: float
    solver: SolverReport
    timings: dict[str, float] = field(default_factory=dict)
    frozen: dict = field(default_factory=dict)

    def summary(self) -> dict:
        """JSON-serialisable diagnostics (without the per-instance table)."""
        deltas = self.table.predicted_delta_val_loss
        return {"scope": self.scope, "num_parameters": self.num_parameters, "val_loss": self.val_loss,
                "num_train": len(self.table), "num_harmful": int(np.sum(deltas < 0)),
                "solver": self.solver.to_dict(), "curvature": CURVATURES.get(self.solver.hessian or "exact"),
                "frozen_part": self.frozen, "timings": self.timings}


@dataclass(frozen=True)
class InfluenceConfig:
    """Scope, solver and batching of an influence run, and where cached activations may go.

    The frozen part's activations stay in memory up to ``memory_limit_mb`` (all splits together);
    beyond that they are memory-mapped under ``cache_dir`` (default: the system's temporary directory).
    ``scope``, ``batch_size`` and the solver's options are ``keras-itl influence``'s flags (see its ``--help``).

    Attributes:
        scope: Parameters influence is computed over: ``head`` (the final Dense layer), ``top:K`` or ``all``.
        solver: The inverse-Hessian-vector solve (SolverOptions: solver, curvature, damping, retries, ...).
        batch_size: Examples per batch of the gradient, Hessian-vector and scoring passes.
        hessian_max_examples: Hessian products over a seeded sample of this many training examples; None: all.
        cache_dir: Where activations too big for memory are memory-mapped; None: the temporary directory.
        memory_limit_mb: Megabytes of frozen-part activations held in memory before memory-mapping them.
    """

    scope: str = registry.SCOPE
    solver: SolverOptions = SolverOptions()
    batch_size: int = registry.INFLUENCE_BATCH_SIZE
    hessian_max_examples: int | None = None
    cache_dir: str | None = None
    memory_limit_mb: float = DEFAULT_MEMORY_LIMIT_MB

    def to_dict(self) -> dict:
        return asdict(self)


def _progress(label: str, verbose: bool):
    if not verbose:
        return None

    def report(step: int, value: float) -> None:
        if step == 1 or step % 10 == 0:
            print(f"influence: {label} step {step}, {value:.3g}", flush=True)

    return report


def prepare_features(model: keras.Model, train: Split, val: Split, config: InfluenceConfig,
                     verbose: bool = False) -> FrozenFeatures:
    """The frozen part's activations for train and val under ``config`` (computed once; see features.py)."""
    if len(val) == 0:
        raise UserError("the validation split is empty: influence needs validation data (raise --val-fraction)")
    if len(train) == 0:
        raise UserError("the training split is empty")
    features = frozen_features(model, config.scope, {"train": train, "val": val}, batch_size=config.batch_size,
                               cache_dir=config.cache_dir, memory_limit_mb=config.memory_limit_mb)
    if verbose and features.cut.frozen is not None:
        described = features.describe()
        print(f"influence: frozen part up to '{described['after_layer']}' computed once for {len(train) + len(val)} "
              f"examples ({described['megabytes']:.1f} MB in {described['storage']}, {features.seconds:.1f}s)",
              flush=True)
    return features


def _solve(features: FrozenFeatures, derivatives: LossDerivatives, val_gradient: tf.Tensor,
           config: InfluenceConfig, shard: WorkerShard, verbose: bool) -> tuple[tf.Tensor, SolverReport]:
    """s = (H + damping*I)^-1 g_val over the training examples (or a sample of them), each product summed over
    shards."""
    hessian_examples = features.splits["train"]
    curvature = config.solver.hessian
    if config.hessian_max_examples and config.hessian_max_examples < len(hessian_examples):
        rng = np.random.default_rng(config.solver.seed)
        chosen = np.sort(rng.choice(len(hessian_examples), config.hessian_max_examples, replace=False))
        hessian_examples = hessian_examples.subset(chosen)

    def hessian_product(vector: tf.Tensor) -> tf.Tensor:
        return derivatives.hvp(hessian_examples, vector, shard, curvature)

    def sampled_product(vector: tf.Tensor, rng: np.random.Generator) -> tf.Tensor:
        size = config.solver.lissa_batch_size
        if not size or size >= len(hessian_examples):
            return hessian_product(vector)
        return derivatives.hvp(hessian_examples.subset(np.sort(rng.choice(len(hessian_examples), size,
                                                                          replace=False))), vector, shard,
                               curvature)

    preconditioner = None
    if config.solver.solver == "cg":
        preconditioner = features.head_preconditioner(hessian_examples, config.solver.seed)
    return solve(config.solver, val_gradient, hessian_product, sampled_product,
                 lambda: derivatives.hessian(hessian_examples, shard, curvature), features.scope.num_parameters,
                 _progress(config.solver.solver, verbose),
                 notify=(lambda message: print(f"influence: {message}", flush=True)) if verbose else None,
                 preconditioner=preconditioner)


def compute_influence(model: keras.Model, train: Split, val: Split, config: InfluenceConfig = InfluenceConfig(),
                      *, features: FrozenFeatures | None = None, solution_path: str | os.PathLike | None = None,
                      strategy: tf.distribute.Strategy | None = None, verbose: bool = True) -> InfluenceResult:
    """Score every training instance by its predicted effect on the mean validation loss.

    ``features`` are the frozen part's activations from ``prepare_features`` (computed here when
    not given). With ``solution_path``, a saved s solved for this very model, scope, solver
    settings and data is reused instead of solving again, and a new solve is saved there.
    Under a multi-worker ``strategy`` each worker computes its shard of the validation gradient,
    of every Hessian-vector product and of the scores (see sharding.py); every worker returns the
    same full table. Such a run neither reuses nor saves a solution (every worker must take part in the solve).

    Args:
        model: The trained softmax classifier whose training instances are scored.
        train: The training split scored; its examples also form the Hessian (or its sample).
        val: The validation split whose mean loss the scores predict the change of.
        config: Scope, solver and batching; the default is head scope with the default solver.
        features: Activations from ``prepare_features`` for ``config.scope``; None computes them here.
        solution_path: File where the solved s is reused from and saved to; None solves afresh and saves nothing.
        strategy: Distribution strategy; None (or a single worker) computes everything in this process.
        verbose: Print progress and the solve's diagnostics.

    Returns:
        The per-instance table (in training-split order) with the scope, parameter count, validation loss,
        solver report, timings and a description of the frozen part.

    Raises:
        UserError: for an empty split, a bad scope or a zero validation gradient; SolverError (a UserError)
            when the solve fails after its damping retries.
        ValueError: when ``features`` were computed for another scope than ``config.scope``.
    """
    if features is None:
        features = prepare_features(model, train, val, config, verbose)
    elif features.scope.name != config.scope:
        raise ValueError(f"features were computed for scope {features.scope.name!r}, not {config.scope!r}")
    scope = features.scope
    derivatives = features.derivatives(config.batch_size)
    shard = WorkerShard(strategy)
    timings: dict[str, float] = {"features": features.seconds}

    started = time.perf_counter()
    val_gradient, val_loss = derivatives.mean_gradient(features.splits["val"], shard)
    timings["val_gradient"] = time.perf_counter() - started
    if float(tf.norm(val_gradient)) == 0.0:
        raise UserError(f"the validation loss has zero gradient over the {scope.name} scope (validation loss "
                        f"{val_loss:.3g}): every influence would be 0; use a wider --scope or other validation data")

    started = time.perf_counter()
    key = stored = None
    if solution_path is not None and not shard.sharded:  # workers must all solve, or none
        key = solution_key(model, scope.name, config.solver, config.hessian_max_examples, train, val)
        stored = load_solution(solution_path, key)
    if stored is not None:
        solution, report = stored
    else:
        solution, report = _solve(features, derivatives, val_gradient, config, shard, verbose)
        if key is not None:
            save_solution(solution_path, solution, report, key)
    timings["solve"] = time.perf_counter() - started
    if verbose:
        how = "reused the saved" if report.reused else f"{report.iterations} iterations of the"
        print(f"influence: {how} {report.solver} solve on {scope.num_parameters} parameters ({scope.name} scope): "
              f"damping {report.damping:g}, relative residual {report.residual:.2g}, {timings['solve']:.1f}s",
              flush=True)

    started = time.perf_counter()
    losses, scores, predicted = [], [], []
    for batch_losses, batch_scores, batch_predicted in derivatives.directional_derivatives(
            shard.take(features.splits["train"]), solution):
        losses.append(batch_losses)
        scores.append(batch_scores)
        predicted.append(batch_predicted)
    # One gather for all three columns (float64 holds the float32 values and class indices exactly).
    columns = shard.gather(np.stack([np.concatenate(part).astype(np.float64) for part in (losses, scores, predicted)],
                                    axis=1), len(train))
    timings["scores"] = time.perf_counter() - started
    score_array = columns[:, 1]
    table = InfluenceTable(ids=np.asarray(train.ids), labels=np.asarray(train.labels),
                           predicted_labels=columns[:, 2].astype(np.int64), losses=columns[:, 0],
                           scores=score_array, predicted_delta_val_loss=score_array / len(train))
    return InfluenceResult(table=table, scope=scope.name, num_parameters=scope.num_parameters, val_loss=val_loss,
                           solver=report, timings=timings, frozen=features.describe())
