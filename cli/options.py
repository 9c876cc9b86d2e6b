"""Options and error handling shared by the keras-itl commands."""
from __future__ import annotations

import functools
from pathlib import Path

import click

from keras_itl import registry

SCOPE_HELP = f"Influence parameter scope: {registry.SCOPE_HELP}."


def user_errors(command):
    """Report library UserErrors as ``Error: <message>`` with exit code 1, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from keras_itl.errors import UserError

        try:
            return command(*args, **kwargs)
        except UserError as error:
            raise click.ClickException(str(error)) from None

    return wrapper


def positive(ctx, param, value):
    if value is not None and value <= 0:
        raise click.BadParameter("must be positive")
    return value


def _apply(options: list, command):
    """Decorate ``command`` with ``options`` so they appear in --help in the order listed."""
    for option in reversed(options):
        command = option(command)
    return command


def influence_options(command):
    """Options of the influence computation, shared by train --method instance and influence."""
    options = [
        click.option("--scope", default=registry.SCOPE, show_default=True, help=SCOPE_HELP),
        click.option("--solver", type=click.Choice(registry.SOLVERS), default=registry.SOLVER, show_default=True,
                     help="Inverse-Hessian-vector solver: conjugate gradient, dense exact (small scopes) or LiSSA."),
        click.option("--hessian", type=click.Choice(registry.HESSIANS), default=registry.HESSIAN, show_default=True,
                     help="Curvature to invert: the loss's exact Hessian, or the Gauss-Newton matrix (positive "
                          "semi-definite on any scope; equal to the exact Hessian on the head)."),
        click.option("--damping", type=float, default=registry.DAMPING, show_default=True,
                     help="Damping added to the Hessian (H + damping*I) so the solve is well posed for deep nets."),
        click.option("--damping-retries", type=click.IntRange(min=0), default=registry.DAMPING_RETRIES,
                     show_default=True,
                     help="When the solve fails (not positive definite, no convergence), retry this many times, "
                          "each with 10x the damping; the damping used is reported."),
        click.option("--cg-max-iterations", type=click.IntRange(min=1), default=registry.CG_MAX_ITERATIONS,
                     show_default=True,
                     help="--solver cg: iterations before the solve counts as failed."),
        click.option("--lissa-scale", type=float, default=registry.LISSA_SCALE, show_default=True, callback=positive,
                     help="--solver lissa: must exceed the largest eigenvalue of H + damping*I, or LiSSA diverges."),
        click.option("--lissa-depth", type=click.IntRange(min=1), default=registry.LISSA_DEPTH, show_default=True,
                     help="--solver lissa: recursion steps; too few and the residual check fails the solve."),
        click.option("--lissa-batch-size", type=click.IntRange(min=1), default=None,
                     help="--solver lissa: training instances sampled per step. [default: all of them]"),
        click.option("--max-drop-fraction", type=float, default=registry.MAX_DROP_FRACTION, show_default=True,
                     help="Never drop more than this fraction of the training instances."),
        click.option("--min-class-keep-fraction", type=float, default=registry.MIN_CLASS_KEEP_FRACTION,
                     show_default=True,
                     help="Per-class floor: every class keeps at least this fraction of its instances (and one)."),
    ]
    return _apply(options, command)


def decisions_option(command):
    """--decisions: a person's decisions.csv (from a run's report.html) applied to the training split first."""
    return click.option("--decisions", type=click.Path(exists=True, dir_okay=False), default=None,
                        help="A decisions.csv (id,action,label; exported from a run's report.html) applied to the "
                        "training split before anything else: drop removes the instance, relabel gives it the named "
                        "class, keep (and relabel) pins it so no policy drops it.")(command)


def dataset_options(command):
    """Options that decide how a target dataset is split (train and evaluate must agree on them)."""
    options = [
        click.option("--seed", type=int, default=None, help="Seed for splits, label noise, initialisation and "
                     f"data order. [default: {registry.SEED}, or the training run's]"),
        click.option("--val-fraction", type=float, default=None, help="Stratified fraction of the training data "
                     f"held out for validation. [default: {registry.VAL_FRACTION}, or the training run's]"),
        click.option("--data-dir", type=click.Path(file_okay=False), default=None,
                     help="TFDS data directory holding local copies of TFDS datasets (else $TFDS_DATA_DIR)."),
    ]
    return _apply(options, command)


def model_options(command):
    """--model and --target, with the dataset options, for commands that read a trained model."""
    options = [
        click.option("--model", "model_path", required=True, type=click.Path(exists=True),
                     help="A .keras model, or a keras-itl train output directory."),
        click.option("--target", default=None, help="Target dataset spec. [default: the training run's target]"),
    ]
    return dataset_options(_apply(options, command))


def run_dataset_options(model_path: str, target: str | None, seed: int | None, val_fraction: float | None,
                         data_dir: str | None) -> tuple[Path, str, dict]:
    """(model directory, target, load_dataset options), defaulting to the training run's own choices."""
    from keras_itl.errors import UserError
    from keras_itl.run_record import RUN_FILE, RunRecord

    model_dir = Path(model_path) if Path(model_path).is_dir() else Path(model_path).parent
    run = RunRecord.read(model_dir)
    target = target or (run.target if run else None)
    if not target:
        raise UserError(f"--target is required when the model has no {RUN_FILE} beside it")
    options = run.dataset_options() if run else {"seed": registry.SEED, "val_fraction": registry.VAL_FRACTION}
    given = {"seed": seed, "val_fraction": val_fraction, "data_dir": data_dir}
    options.update({key: value for key, value in given.items() if value is not None})
    return model_dir, target, options
