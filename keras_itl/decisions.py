"""A person's review of the training instances, fed back into training: ``decisions.csv``.

The report's gallery (keras_itl.report) exports one row per instance a person decided on::

    id,action,label
    digits/train/00042,drop,
    digits/train/00138,relabel,7
    digits/train/00004,keep,

``drop`` removes the instance from the training split, ``relabel`` gives it the named class, and
``keep`` pins it: no selection policy may drop it. A relabelled instance is pinned too - a person
has looked at it and said what it is. The decisions are applied to the training split before
anything else runs (``keras-itl train --decisions``, ``keras-itl influence --decisions``) and recorded
in the dataset description (``run.json``'s ``dataset.decisions``), so the report of a run can show
and reapply them. Any line that names an unknown id, action or class is refused with a one-line
error naming the line.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from keras_itl.datasets import TargetDataset
from keras_itl.errors import UserError

HEADER = ("id", "action", "label")
ACTIONS = ("keep", "drop", "relabel")
MAX_FILE_BYTES = 64 * 2**20  # far beyond one row for each of a million instances; a bigger file is a mistake
MAX_FIELD_CHARS = 4096  # an id is a path at most; a longer field is not one


@dataclass(frozen=True)
class Decision:
    """One row: what to do with training instance ``id`` (``label`` only for ``relabel``); ``line`` in the file."""

    id: str
    action: str
    label: str | None = None
    line: int = 0


@dataclass(frozen=True)
class Decisions:
    """Every decision of one file, in file order; ``source`` names the file in error messages and records."""

    source: str
    rows: tuple[Decision, ...]

    def ids(self, action: str) -> list[str]:
        """The ids decided with ``action``, in file order."""
        return [row.id for row in self.rows if row.action == action]

    @property
    def pinned(self) -> list[str]:
        """The ids no selection policy may drop: kept and relabelled ones."""
        return [row.id for row in self.rows if row.action != "drop"]

    def to_dict(self) -> dict:
        """The record kept in ``run.json``: the file and the ids of each action (relabels with their class)."""
        return {"file": self.source, "keep": self.ids("keep"), "drop": self.ids("drop"),
                "relabel": {row.id: row.label for row in self.rows if row.action == "relabel"}}

    @classmethod
    def from_dict(cls, record: dict) -> Decisions:
        """The decisions a ``to_dict`` record describes (no line numbers: they were checked when first read)."""
        rows = [Decision(i, "keep") for i in record["keep"]] + [Decision(i, "drop") for i in record["drop"]]
        rows += [Decision(i, "relabel", label) for i, label in record["relabel"].items()]
        return cls(record["file"], tuple(rows))


def read_decisions(path: str | os.PathLike) -> Decisions:
    """Parse a decisions file; a one-line UserError for an unreadable, oversized or malformed one.

    Args:
        path: A decisions.csv (header ``id,action,label``, as a run's report.html exports it).

    Returns:
        Every decision in file order, with its line number; ``apply_decisions`` checks them against the data.

    Raises:
        UserError: for a file that cannot be read, is over MAX_FILE_BYTES, is not UTF-8 or has a malformed row.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise UserError(f"{path}: {size} bytes is more than a decisions file can hold ({MAX_FILE_BYTES})")
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as error:
        raise UserError(f"cannot read decisions file {path}: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text; a decisions file is a CSV of id,action,label") from None
    return parse_decisions(text, str(path))


def parse_decisions(text: str, source: str = "decisions.csv") -> Decisions:
    """The decisions in CSV ``text``: the header ``id,action,label``, then one row per decided instance.

    Blank lines are skipped; the label may be left out of keep and drop rows. Checks the form of
    every row and that no id is decided twice; which ids and classes exist is ``apply_decisions``'s
    to check, against the data.
    """
    if "\0" in text:
        raise UserError(f"{source}: holds a NUL byte; a decisions file is a CSV of id,action,label")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header_seen = False
    rows: list[Decision] = []
    lines: dict[str, int] = {}  # id -> the line that decided it
    try:
        for fields in reader:
            line = reader.line_num
            if not any(field.strip() for field in fields):
                continue
            if not header_seen:
                if tuple(field.strip().lower() for field in fields) != HEADER:
                    raise UserError(f"{source} line {line}: the first row must be the header id,action,label")
                header_seen = True
                continue
            row = _row(fields, source, line)
            if row.id in lines:
                raise UserError(f"{source} line {line}: id {row.id!r} was already decided on line {lines[row.id]}")
            lines[row.id] = line
            rows.append(row)
    except csv.Error as error:
        raise UserError(f"{source} line {reader.line_num}: not a CSV row ({error})") from None
    if not header_seen:
        raise UserError(f"{source}: empty; a decisions file starts with the header id,action,label")
    return Decisions(source, tuple(rows))


def _row(fields: list[str], source: str, line: int) -> Decision:
    """One data row, checked for form."""
    if not 2 <= len(fields) <= 3:
        raise UserError(f"{source} line {line}: expected id,action,label, got {len(fields)} fields")
    if any(len(field) > MAX_FIELD_CHARS for field in fields):
        raise UserError(f"{source} line {line}: a field is longer than {MAX_FIELD_CHARS} characters")
    example_id, action = fields[0].strip(), fields[1].strip().lower()
    label = fields[2].strip() if len(fields) == 3 else ""
    if not example_id:
        raise UserError(f"{source} line {line}: the id is empty")
    if action not in ACTIONS:
        raise UserError(f"{source} line {line}: unknown action {fields[1].strip()!r}; use {', '.join(ACTIONS)}")
    if action == "relabel" and not label:
        raise UserError(f"{source} line {line}: relabel needs the new class in the label column")
    if action != "relabel" and label:
        raise UserError(f"{source} line {line}: only relabel takes a label, {action} got {label!r}")
    return Decision(example_id, action, label or None, line)


def apply_decisions(data: TargetDataset, decisions: Decisions) -> TargetDataset:
    """``data`` with its training split decided: dropped ids removed, relabelled ids given their new class.

    Every id must be a training instance of ``data`` and every label one of its class names (a
    one-line UserError names the first line that is not). The decisions are recorded in
    ``info.decisions``; the training size in ``info.sizes`` is the decided split's.

    Args:
        data: The loaded target dataset (``load_dataset``); it is not changed.
        decisions: The decisions to apply (``read_decisions``).

    Returns:
        A copy of ``data`` whose training split is decided; val and test are the same splits as before.

    Raises:
        UserError: for an id that is not a training instance of ``data`` or a label that is not one of its classes.
    """
    train = data.split("train")
    position = {str(example_id): i for i, example_id in enumerate(train.ids)}
    classes = {name: c for c, name in enumerate(data.info.class_names)}
    for row in decisions.rows:
        where = f"{decisions.source} line {row.line}" if row.line else decisions.source
        if row.id not in position:
            raise UserError(f"{where}: unknown id {row.id!r}: not a training instance of {data.info.spec}")
        if row.label is not None and row.label not in classes:
            raise UserError(f"{where}: unknown label {row.label!r}; the classes of {data.info.spec} are "
                            f"{', '.join(data.info.class_names)}")
    labels = train.labels.copy()
    for row in decisions.rows:
        if row.action == "relabel":
            labels[position[row.id]] = classes[row.label]
    keep = np.ones(len(train), dtype=bool)
    keep[[position[i] for i in decisions.ids("drop")]] = False
    decided = train.with_labels(labels).subset(np.flatnonzero(keep))
    info = dataclasses.replace(data.info, sizes={**data.info.sizes, "train": len(decided)},
                               decisions=decisions.to_dict())
    return TargetDataset(info=info, splits={**data.splits, "train": decided})


def pinned_ids(data: TargetDataset) -> list[str]:
    """The training ids no selection policy may drop under the decisions applied to ``data`` (none if none were)."""
    return Decisions.from_dict(data.info.decisions).pinned if data.info.decisions else []
