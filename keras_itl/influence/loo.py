"""Check influence predictions against reality: actually retrain without single instances.

As Koh & Liang did, each retraining is warm-started from the trained parameters. The scope's
parameters are refit by damped Newton steps (each one a conjugate-gradient solve on products
with the curvature the influence solve used: Gauss-Newton steps with ``--hessian gauss-newton``,
which on the convex head are Newton steps) on the objective the influence estimate linearises:

    (1/n) * sum_{j != i} loss_j(theta) + (damping/2) * ||theta - theta_trained||^2

with the damping the influence solve actually used. For ``head``/``top:K`` every refit runs on the
frozen part's cached activations.

A baseline refit with nothing removed goes through the same steps, so the measured change
``val_loss(refit without i) - val_loss(baseline refit)`` is not polluted by the trained weights
being slightly off the optimum.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import keras
import numpy as np
import tensorflow as tf
from scipy import stats

from keras_itl.datasets import Split
from keras_itl.errors import UserError
from keras_itl.influence.derivatives import LossDerivatives
from keras_itl.influence.features import Examples, FrozenFeatures
from keras_itl.influence.scope import Scope
from keras_itl.influence.scores import (
    InfluenceConfig,
    InfluenceResult,
    prepare_features,
)
from keras_itl.influence.solvers import HessianProduct, solve_cg


@dataclass
class LooReport:
    """Predicted against measured validation-loss changes for K removed instances."""

    ids: list[str]
    predicted: list[float]
    actual: list[float]
    pearson: float
    spearman: float
    newton_steps: int
    damping: float

    def to_dict(self) -> dict:
        return asdict(self)


def _assign(scope: Scope, vector: tf.Tensor) -> None:
    for variable, part in zip(scope.variables, scope.unflatten(vector)):
        variable.assign(part)


def _refit(derivatives: LossDerivatives, train: Examples, removed: Examples | None, anchor: tf.Tensor,
           damping: float, config: InfluenceConfig, steps: int, preconditioner: HessianProduct | None) -> None:
    """Damped Newton on the scope's parameters, starting (and anchored) at ``anchor``."""
    theta = anchor
    for _ in range(steps):
        gradient, _ = derivatives.mean_gradient(train)
        if removed is not None:
            gradient -= derivatives.mean_gradient(removed)[0] / len(train)
        gradient += damping * (theta - anchor)

        def damped_product(vector: tf.Tensor) -> tf.Tensor:
            return derivatives.hvp(train, vector, curvature=config.solver.hessian) + damping * vector

        step, _, _ = solve_cg(damped_product, gradient, config.solver.cg_tolerance, config.solver.cg_max_iterations,
                              preconditioner=preconditioner)
        theta = theta - step
        _assign(derivatives.scope, theta)


def check_leave_one_out(model: keras.Model, train: Split, val: Split, result: InfluenceResult, k: int,
                        config: InfluenceConfig = InfluenceConfig(), *, features: FrozenFeatures | None = None,
                        newton_steps: int = 3, verbose: bool = True) -> LooReport:
    """Retrain without each of the ``k`` instances of largest |predicted delta| and correlate the changes.

    The refits use the damping the influence solve actually used (after any retries) and run on
    ``features`` (the frozen part's activations; computed here when not given).
    """
    if not 2 <= k <= len(train):
        raise UserError(f"--check-loo needs 2 <= K <= {len(train)} training instances, got {k}")
    if features is None:
        features = prepare_features(model, train, val, replace(config, scope=result.scope))
    scope = features.scope
    derivatives = features.derivatives(config.batch_size)
    train_examples, val_examples = features.splits["train"], features.splits["val"]
    damping = result.solver.damping
    anchor = scope.flatten([v.value for v in scope.variables])
    head = features.head_preconditioner(train_examples, config.solver.seed)  # at the anchor: close enough to steer
    preconditioner = head.inverse(damping) if head is not None else None

    def val_loss_after(removed: Examples | None) -> float:
        _refit(derivatives, train_examples, removed, anchor, damping, config, newton_steps, preconditioner)
        loss = derivatives.mean_gradient(val_examples)[1]
        _assign(scope, anchor)
        return loss

    try:
        baseline = val_loss_after(None)
        chosen = np.argsort(-np.abs(result.table.predicted_delta_val_loss), kind="stable")[:k]
        actual = []
        for number, index in enumerate(chosen, start=1):
            actual.append(val_loss_after(train_examples.subset([index])) - baseline)
            if verbose:
                print(f"leave-one-out: {number}/{k} retrained", flush=True)
    finally:
        _assign(scope, anchor)
    predicted = result.table.predicted_delta_val_loss[chosen]
    return LooReport(ids=[str(train.ids[i]) for i in chosen], predicted=[float(p) for p in predicted],
                     actual=[float(a) for a in actual], pearson=float(stats.pearsonr(predicted, actual)[0]),
                     spearman=float(stats.spearmanr(predicted, actual)[0]), newton_steps=newton_steps,
                     damping=damping)
