"""Options and error handling shared by the keras-itl commands."""
from __future__ import annotations

import functools
from pathlib import Path

import click

from keras_itl import registry
from keras_itl.options import OPTIONS, SELECTION_LIMITS, SOLVER_OPTIONS


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


def non_negative(ctx, param, value):
    if value is not None and value < 0:
        raise click.BadParameter("must be >= 0")
    return value


_KINDS = {"int": int, "float": float, "text": str, "dir": click.Path(file_okay=False),
          "file": click.Path(dir_okay=False), "existing-file": click.Path(exists=True, dir_okay=False)}
_CHECKS = {"positive": positive, "non-negative": non_negative}


def declared_option(name: str, **changes):
    """The click option of a declared user option (keras_itl.options), with ``changes`` to its declaration."""
    from dataclasses import replace

    declaration = replace(OPTIONS[name], **changes)
    kind = declaration.kind
    if callable(kind):
        kind = kind()
    metavar = declaration.metavar() if callable(declaration.metavar) else declaration.metavar
    return click.option(
        declaration.flag, declaration.name, type=click.Choice(kind) if isinstance(kind, tuple) else _KINDS[kind],
        default=declaration.default, required=declaration.required, metavar=metavar,
        show_default=declaration.default is not None and not declaration.default_text,
        callback=_CHECKS.get(declaration.check), help=declaration.help_text())


def declared_options(*names: str):
    """Decorate a command with the declared options ``names``, in this order in --help."""
    def decorate(command):
        return _apply([declared_option(name) for name in names], command)

    return decorate


def influence_options(command):
    """Options of the influence computation, shared by train --method instance and influence."""
    return declared_options("scope", *SOLVER_OPTIONS, *SELECTION_LIMITS)(command)


def decisions_option(command):
    """--decisions: a person's decisions.csv (from a run's report.html) applied to the training split first."""
    return declared_option("decisions")(command)


def dataset_options(command):
    """Options that decide how a target dataset is split, for commands that read a trained model (the
    training run's own values are their defaults)."""
    options = [
        declared_option("seed", default=None, default_text=f"{registry.SEED}, or the training run's"),
        declared_option("val_fraction", default=None, default_text=f"{registry.VAL_FRACTION}, or the training run's"),
        declared_option("data_dir"),
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
