"""Inverse-Hessian-vector products s = (H + damping*I)^-1 v, solved once per influence run.

- ``exact``: form H densely and solve; refused above ``EXACT_MAX_PARAMETERS``.
- ``cg``: conjugate gradient on Hessian-vector products; stops on a relative-residual tolerance,
  fails early when its pace cannot reach it, and can be steered by a preconditioner (a softmax
  head's has one, see ``preconditioner.py``) without changing what it converges to.
- ``lissa``: Koh & Liang's stochastic recursion h <- v + h - (H_j + damping*I) h / scale, whose
  fixed point is scale * (H + damping*I)^-1 v; H_j is the Hessian on a random minibatch. A result
  whose residual exceeds ``lissa_tolerance`` is a failure (retried with more damping when allowed),
  never returned silently.

A Hessian plus damping that is not positive definite (CG meets curvature <= 0, exact finds an
eigenvalue <= 0, LiSSA blows up) is an error, never a silently wrong answer - unless the caller
allows ``damping_retries``: then the solve is repeated with ten times the damping, and the report
says which damping the solution is for. Every solver's result is checked with one more
Hessian-vector product: the reported residual is ||(H + damping*I) s - v|| / ||v||.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Protocol

import numpy as np
import tensorflow as tf

from keras_itl import registry
from keras_itl.errors import UserError
from keras_itl.options import option
from keras_itl.registry import HESSIANS, SOLVERS

EXACT_MAX_PARAMETERS = 5000  # a dense 5000x5000 Hessian is 200 MB in float64; larger scopes use cg

HessianProduct = Callable[[tf.Tensor], tf.Tensor]


class Preconditioning(Protocol):
    """What cg can be steered by: a name for the report and, per damping, v -> ~(H + damping*I)^-1 v."""

    name: str

    def inverse(self, damping: float) -> HessianProduct: ...


class SolverError(UserError):
    """The linear system could not be solved reliably; the message says why and what to change."""


@dataclass
class SolverReport:
    """Diagnostics of one inverse-Hessian-vector solve."""

    solver: str
    damping: float
    iterations: int
    residual: float
    converged: bool
    seconds: float
    min_eigenvalue: float | None = None
    requested_damping: float | None = None  # set when retries raised the damping above the requested one
    preconditioner: str | None = None  # cg's preconditioner, when one steered it
    reused: bool = False  # loaded from a saved solution instead of solved
    hessian: str | None = None  # the curvature solved with (registry.HESSIANS); None in solutions saved before it

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SolverOptions:
    """Knobs of the three solvers (each uses only its own), and the curvature they all solve with (``hessian``)."""

    solver: str = option("solver")
    hessian: str = option("hessian")
    damping: float = option("damping")
    cg_tolerance: float = 1e-4
    cg_max_iterations: int = option("cg_max_iterations")
    lissa_scale: float = option("lissa_scale")
    lissa_depth: int = option("lissa_depth")
    lissa_repeats: int = 1
    lissa_batch_size: int | None = option("lissa_batch_size")
    lissa_tolerance: float = 1e-2
    seed: int = registry.SEED  # LiSSA's sampling; a run sets its own
    damping_retries: int = option("damping_retries")

    def __post_init__(self) -> None:
        if self.solver not in SOLVERS:
            raise UserError(f"unknown solver {self.solver!r}; choose one of: {', '.join(SOLVERS)}")
        if self.hessian not in HESSIANS:
            raise UserError(f"unknown hessian {self.hessian!r}; choose one of: {', '.join(HESSIANS)}")
        if self.damping < 0:
            raise UserError(f"damping must be >= 0, got {self.damping}")
        if self.cg_tolerance <= 0 or self.cg_max_iterations <= 0:
            raise UserError("cg tolerance and max iterations must be positive")
        if self.lissa_scale <= 0 or self.lissa_depth <= 0 or self.lissa_repeats <= 0 or self.lissa_tolerance <= 0:
            raise UserError("lissa scale, depth, repeats and tolerance must be positive")
        if self.lissa_batch_size is not None and self.lissa_batch_size <= 0:
            raise UserError(f"lissa batch size must be positive, got {self.lissa_batch_size}")
        if self.damping_retries < 0:
            raise UserError(f"damping retries must be >= 0, got {self.damping_retries}")


def _relative_residual(damped_product: HessianProduct, solution: tf.Tensor, target: tf.Tensor) -> float:
    return float(tf.norm(damped_product(solution) - target) / tf.maximum(tf.norm(target), 1e-30))


def solve_exact(hessian: np.ndarray, target: tf.Tensor, damping: float) -> tuple[tf.Tensor, float]:
    """(solution, smallest eigenvalue of H + damping*I) from a dense Hessian."""
    damped = hessian + damping * np.eye(len(hessian))
    smallest = float(np.linalg.eigvalsh(damped)[0])
    if smallest <= 0:
        raise SolverError(f"H + damping*I is not positive definite (smallest eigenvalue {smallest:.3g}); "
                          f"raise --damping above {damping - smallest:.3g}")
    solution = np.linalg.solve(damped, target.numpy().astype(np.float64))
    return tf.constant(solution, tf.float32), smallest


STALL_WINDOW = 50  # iterations over which cg's progress is judged (at least; a quarter of the budget when larger)
STALL_SLACK = 4.0  # cg may speed up later: give up only when the projection overshoots the budget this much


def _stalled(history: list[float], tolerance: float, remaining: int) -> str | None:
    """Why cg should give up now, judged by its best residual over a window of its last iterations; None while
    there is hope. (cg's residual may rise for a while before it falls: only the best so far counts.)"""
    window = max(STALL_WINDOW, (len(history) + remaining) // 4)
    if len(history) <= window:
        return None
    best, earlier = min(history), min(history[:-window])
    if best >= earlier:
        return f"no progress in the last {window} iterations"
    needed = math.ceil(window * math.log(best / tolerance) / math.log(earlier / best))
    if needed > STALL_SLACK * remaining:
        return f"at its pace it needs ~{needed} more iterations, {remaining} are left"
    return None


def _ratio(numerator: tf.Tensor, denominator: tf.Tensor) -> tf.Tensor:
    """numerator / denominator divided in float64, then rounded to the vectors' float32: the scalars cg computed
    in Python before these functions, so its iterates are unchanged bit for bit."""
    return tf.cast(tf.cast(numerator, tf.float64) / tf.cast(denominator, tf.float64), numerator.dtype)


# One cg iteration's vector arithmetic, each half in one graph: over millions of parameters, eager dispatch of the
# same dozen operations cost ~15 ms more per iteration (ResNet50's last block: ~40 against ~27 ms).
@tf.function(reduce_retracing=True)
def _cg_step(solution, residual, direction, product, residual_dot):
    """(solution, residual) moved along ``direction``, with the curvature d.Hd and the new residual's norm."""
    curvature = tf.reduce_sum(direction * product)
    step = _ratio(residual_dot, curvature)
    residual = residual - step * product
    return solution + step * direction, residual, curvature, tf.norm(residual)


@tf.function(reduce_retracing=True)
def _cg_direction(preconditioned, residual, direction, residual_dot):
    """(next search direction, new residual . preconditioned residual)."""
    new_residual_dot = tf.reduce_sum(residual * preconditioned)
    return preconditioned + _ratio(new_residual_dot, residual_dot) * direction, new_residual_dot


def solve_cg(damped_product: HessianProduct, target: tf.Tensor, tolerance: float, max_iterations: int,
             progress: Callable[[int, float], None] | None = None,
             preconditioner: HessianProduct | None = None) -> tuple[tf.Tensor, int, float]:
    """(solution, iterations, relative residual) of (preconditioned) conjugate gradient from zero.

    It stops when ||(H + damping*I) s - v|| / ||v|| < ``tolerance`` whatever the preconditioner
    (which only changes the search directions), and fails early - instead of running out its
    ``max_iterations`` - when its pace over its last iterations (STALL_WINDOW, or a quarter of the
    budget) cannot reach the tolerance in the iterations left (STALL_SLACK times over), so that a
    retry at more damping starts sooner.
    """
    def precondition(vector: tf.Tensor) -> tf.Tensor:
        return vector if preconditioner is None else preconditioner(vector)

    solution = tf.zeros_like(target)
    residual = target
    preconditioned = precondition(residual)
    direction = preconditioned
    target_norm = max(float(tf.norm(target)), 1e-30)
    residual_dot = tf.reduce_sum(residual * preconditioned)
    history = [1.0]
    for iteration in range(1, max_iterations + 1):
        product = damped_product(direction)
        solution, residual, curvature, residual_norm = _cg_step(solution, residual, direction, product, residual_dot)
        if float(curvature) <= 0:
            raise SolverError(f"cg met curvature {float(curvature):.3g} <= 0 at iteration {iteration}: H + damping*I "
                              "is not positive definite here; raise --damping")
        relative = float(residual_norm) / target_norm
        if progress is not None:
            progress(iteration, relative)
        if relative < tolerance:
            return solution, iteration, relative
        history.append(relative)
        stalled = _stalled(history, tolerance, max_iterations - iteration)
        if stalled is not None:
            raise SolverError(f"cg is stalling at relative residual {relative:.3g} after {iteration} iterations "
                              f"(tolerance {tolerance:g}): {stalled}; raise --damping")
        direction, residual_dot = _cg_direction(precondition(residual), residual, direction, residual_dot)
    raise SolverError(f"cg did not converge in {max_iterations} iterations (relative residual {relative:.3g} > "
                      f"tolerance {tolerance:g}); raise --cg-max-iterations or --damping")


def solve_lissa(sampled_product: Callable[[tf.Tensor, np.random.Generator], tf.Tensor], target: tf.Tensor,
                options: SolverOptions, progress: Callable[[int, float], None] | None = None) -> tf.Tensor:
    """Average over repeats of the LiSSA recursion, each ``depth`` steps on sampled minibatch Hessians."""
    rng = np.random.default_rng(options.seed)
    target_norm = max(float(tf.norm(target)), 1e-30)
    estimates = []
    for repeat in range(options.lissa_repeats):
        estimate = target
        for depth in range(1, options.lissa_depth + 1):
            damped = sampled_product(estimate, rng) + options.damping * estimate
            estimate = target + estimate - damped / options.lissa_scale
            size = float(tf.norm(estimate)) / target_norm
            if not math.isfinite(size) or size > 1e12:
                raise SolverError(f"lissa diverged at step {depth} (|h|/|v| = {size:.3g}); raise --lissa-scale "
                                  "above the largest Hessian eigenvalue, or raise --damping")
            if progress is not None:
                progress(repeat * options.lissa_depth + depth, size)
        estimates.append(estimate / options.lissa_scale)
    return tf.add_n(estimates) / len(estimates)


RETRY_DAMPING_FACTOR = 10.0
MIN_RETRY_DAMPING = 1e-3  # a retry from zero damping starts here


def solve(options: SolverOptions, target: tf.Tensor, hessian_product: HessianProduct,
          sampled_product: Callable[[tf.Tensor, np.random.Generator], tf.Tensor],
          dense_hessian: Callable[[], np.ndarray], num_parameters: int,
          progress: Callable[[int, float], None] | None = None,
          notify: Callable[[str], None] | None = None,
          preconditioner: Preconditioning | None = None) -> tuple[tf.Tensor, SolverReport]:
    """s = (H + damping*I)^-1 target with the chosen solver, plus its diagnostics.

    ``preconditioner`` (cg only) gives, for a damping, an approximation of (H + damping*I)^-1
    that steers the search directions; the result still meets the same residual tolerance.

    A failed solve is retried up to ``options.damping_retries`` times, each with ten times the
    damping (``notify`` hears why); the last failure is raised.
    """
    if options.solver == "exact" and num_parameters > EXACT_MAX_PARAMETERS:  # no damping changes this
        raise SolverError(f"the exact solver forms a dense Hessian and is limited to {EXACT_MAX_PARAMETERS} "
                          f"parameters; this scope has {num_parameters}: use --solver cg")
    attempt, retries = options, options.damping_retries
    while True:
        try:
            solution, report = _solve_once(attempt, target, hessian_product, sampled_product, dense_hessian,
                                           progress, preconditioner)
            break
        except SolverError as error:
            if retries == 0:
                raise
            retries -= 1
            attempt = replace(attempt, damping=max(attempt.damping * RETRY_DAMPING_FACTOR, MIN_RETRY_DAMPING))
            if notify is not None:
                notify(f"{error}; retrying with damping {attempt.damping:g}")
    if attempt.damping != options.damping:
        report.requested_damping = options.damping
    return solution, report


def _solve_once(options: SolverOptions, target: tf.Tensor, hessian_product: HessianProduct,
                sampled_product: Callable[[tf.Tensor, np.random.Generator], tf.Tensor],
                dense_hessian: Callable[[], np.ndarray], progress: Callable[[int, float], None] | None,
                preconditioner: Preconditioning | None) -> tuple[tf.Tensor, SolverReport]:
    started = time.perf_counter()

    def damped_product(vector: tf.Tensor) -> tf.Tensor:
        return hessian_product(vector) + options.damping * vector

    smallest = None
    iterations = 1
    if options.solver == "exact":
        solution, smallest = solve_exact(dense_hessian(), target, options.damping)
    elif options.solver == "cg":
        inverse = preconditioner.inverse(options.damping) if preconditioner else None
        solution, iterations, _ = solve_cg(damped_product, target, options.cg_tolerance, options.cg_max_iterations,
                                           progress, inverse)
    else:
        solution = solve_lissa(sampled_product, target, options, progress)
        iterations = options.lissa_depth * options.lissa_repeats
    residual = _relative_residual(damped_product, solution, target)
    converged = residual < max(options.cg_tolerance * 10, 1e-3)
    if options.solver == "lissa" and residual > options.lissa_tolerance:
        raise SolverError(f"lissa did not converge: relative residual {residual:.3g} > {options.lissa_tolerance:g} "
                          f"after {iterations} steps; raise --lissa-depth, --lissa-batch-size or --damping, or use "
                          "--solver cg")
    report = SolverReport(solver=options.solver, hessian=options.hessian, damping=options.damping,
                          iterations=iterations, residual=residual, converged=converged,
                          seconds=time.perf_counter() - started, min_eigenvalue=smallest,
                          preconditioner=preconditioner.name if preconditioner and options.solver == "cg" else None)
    return solution, report
