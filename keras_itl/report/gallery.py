"""The gallery of an instance run's page: every training instance the run ranked, with what a person needs
to judge it - the image, the given and predicted label, influence and loss, whether the run dropped it
and why, a deliberately flipped label - as the columns the page's script filters, sorts and pages.

Influence and the loss come from ``influence.csv`` (the warm-up model the instances were ranked
under); the baseline policies write no such table, so their loss is the final model's. The
predicted label and its probability are always the final model's.
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from keras_itl.datasets import Split
from keras_itl.decisions import Decisions
from keras_itl.plots import plot_influence_vs_loss
from keras_itl.report.images import data_url, thumbnail
from keras_itl.run_record import RunRecord

INFLUENCE_TABLE = "influence.csv"


@dataclass
class Gallery:
    """The page's instance columns (one entry per training instance, in training-split order) and its plot."""

    classes: list[str]
    rows: dict[str, list]
    loss_label: str
    has_influence: bool
    prior: list[list[str]]  # the decisions this run was trained with, as id, action, label rows
    scatter: str | None  # influence against loss, a PNG data URL (influence runs only)

    def page_data(self, storage_key: str) -> dict:
        """What the page's script reads (``#gallery-data``); ``storage_key`` keeps a page's unsaved decisions."""
        return {"classes": self.classes, "rows": self.rows, "lossLabel": self.loss_label,
                "hasInfluence": self.has_influence, "prior": self.prior, "storageKey": storage_key}


def build_gallery(run_dir: Path, record: RunRecord, train: Split, probabilities: np.ndarray) -> Gallery:
    """The gallery of an instance run in ``run_dir``: ``train`` is its training split (decisions applied),
    ``probabilities`` the final model's on it."""
    report = record.influence
    selection = report["selection"]
    ids = [str(i) for i in train.ids]
    table = _influence_table(run_dir / INFLUENCE_TABLE) if report.get("policy_family") == "influence" else None
    if table is not None:
        deltas = [table[i][0] for i in ids]
        losses = [table[i][1] for i in ids]
        loss_label = "warm-up loss"
    else:
        deltas = [None] * len(ids)
        picked = probabilities[np.arange(len(ids)), train.labels]
        losses = (-np.log(np.clip(picked, 1e-7, 1.0))).tolist()
        loss_label = "final-model loss"
    decided = Decisions.from_dict(record.dataset["decisions"]) if record.dataset.get("decisions") else None
    pinned = set(decided.pinned) if decided else set()
    dropped = set(selection["drop_ids"])
    flipped = set(record.dataset.get("flipped_ids", []))
    rows = {
        "id": ids,
        "label": train.labels.tolist(),
        "pred": probabilities.argmax(axis=1).tolist(),
        "prob": [round(float(p), 4) for p in probabilities.max(axis=1)],
        "influence": [_finite(d) for d in deltas],
        "loss": [_finite(v) for v in losses],
        "dropped": [int(i in dropped) for i in ids],
        "why": [_why(i, delta, i in dropped, i in pinned, selection) for i, delta in zip(ids, deltas)],
        "flipped": [int(i in flipped) for i in ids],
        "pinned": [int(i in pinned) for i in ids],
        "image": [thumbnail(image) for image in train.images],
    }
    prior = [[row.id, row.action, row.label or ""] for row in decided.rows] if decided else []
    return Gallery(classes=record.class_names, rows=rows, loss_label=loss_label, has_influence=table is not None,
                   prior=prior, scatter=_scatter(rows) if table is not None else None)


def _influence_table(path: Path) -> dict[str, tuple[float, float]]:
    """id -> (predicted_delta_val_loss, warm-up loss) from influence.csv."""
    with open(path, newline="") as handle:
        return {row["id"]: (float(row["predicted_delta_val_loss"]), float(row["loss"]))
                for row in csv.DictReader(handle)}


def _finite(value: float | None) -> float | None:
    """``value`` to four significant digits for the page, None for a missing or non-finite one."""
    return None if value is None or not math.isfinite(value) else float(f"{value:.4g}")


def _why(example_id: str, delta: float | None, dropped: bool, pinned: bool, selection: dict) -> str:
    """Why the run dropped or kept the instance, in words."""
    if dropped:
        return selection["reasons"].get(example_id, f"selected by {selection['policy']}")
    if pinned:
        return "a person's decision keeps it"
    if delta is None:
        return f"not selected by {selection['policy']}"
    if delta >= 0:
        return "predicted to help (influence >= 0)"
    return f"predicted harmful, but not in the drop set {selection['policy']} chose ({selection['chosen']})"


def _scatter(rows: dict[str, list]) -> str:
    """Influence against warm-up loss as a PNG data URL."""
    buffer = io.BytesIO()
    plot_influence_vs_loss(np.array(rows["loss"], dtype=float), np.array(rows["influence"], dtype=float),
                           np.array(rows["dropped"], dtype=bool), np.array(rows["flipped"], dtype=bool), buffer)
    return data_url(buffer.getvalue())
