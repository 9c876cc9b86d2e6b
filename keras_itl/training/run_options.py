"""Refuse a ``--resume`` that would mix two runs.

A run directory records the options its run was started with (``run-options.json``, written by the
chief before the first checkpoint). Resuming with any option that shapes the data or the
optimisation changed - a new seed re-splits the data, a new learning rate changes the updates -
would produce a model no single configuration describes, so it is refused with the option named. An
option the record lacks (added to keras-itl after the run started) counts as its default, which is
what that run ran with.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from keras_itl.errors import UserError
from keras_itl.options import OPTIONS, flag_of

OPTIONS_FILE = "run-options.json"
# Where the data lives does not change what the run computes.
NOT_COMPARED = frozenset({"data_dir"})
def changed_option(what: str, field: str, now, before) -> UserError:
    """The one-line refusal to resume ``what`` because ``field`` changed from ``before`` to ``now``."""
    def show(value) -> str:
        return "unset" if value is None else str(value)

    return UserError(f"cannot resume {what}: {flag_of(field)} is {show(now)} but the checkpointed run used "
                     f"{show(before)}; rerun with the original value or train into another --output")


def _flatten(options: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in options.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        elif f"{prefix}{key}" not in NOT_COMPARED:
            flat[f"{prefix}{key}"] = value
    return flat


def _default(field: str):
    """What a run recorded before option ``field`` existed ran with: the option's declared default (else None)."""
    declaration = OPTIONS.get(field.rsplit(".", 1)[-1])
    return declaration.default if declaration is not None else None


def _has_checkpoints(output_dir: Path) -> bool:
    return any((output_dir / "checkpoints").glob("*/ckpt-*.index"))


def guard_run_options(output_dir: str | os.PathLike, options: dict, *, resume: bool, chief: bool = True) -> None:
    """Check ``options`` against the run in ``output_dir`` (when resuming) and record them (chief only).

    Raises a one-line UserError naming the first option that differs from the checkpointed run, or
    when a fresh run would overwrite a checkpointed one.
    """
    output_dir = Path(output_dir)
    path = output_dir / OPTIONS_FILE
    current = json.loads(json.dumps(options, default=str))  # as it reads back from JSON
    # The options of a run that never reached a checkpoint may still change.
    if resume and path.exists() and _has_checkpoints(output_dir):
        recorded = _flatten(json.loads(path.read_text()))
        for field, value in _flatten(current).items():
            before = recorded.get(field, _default(field))
            if before != value:
                raise changed_option(str(output_dir), field, value, before)
        return
    if not resume and chief and _has_checkpoints(output_dir):
        raise UserError(f"{output_dir} already holds a checkpointed run; pass --resume to continue it "
                        "or choose another output")
    if chief:
        output_dir.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps(current, indent=2))
        partial.replace(path)
