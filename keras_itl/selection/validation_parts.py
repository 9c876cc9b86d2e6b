"""Validation data used once per decision: disjoint parts for influence, for selection and for the report.

The instance method makes five decisions on validation data: it early-stops the warm-up, computes the
influence gradient g_val, early-stops each refit, chooses among candidate drop sets and reports the val
loss. Made on one split, the drop set would be optimised against the data it is judged on, so the
validation split is divided, stratified and seeded, into three disjoint parts:

- ``influence``: gives g_val (everything that produces the scores);
- ``selection``: judges the candidate drop sets and early-stops the final refit (everything that
  picks the drop set and the final model);
- together, the two early-stop the warm-up and choose its fine-tuning rate: a model-level choice,
  made on twice the data either part has, that picks no instance;
- ``report``: chooses nothing; the reported validation loss and accuracy come from it.

``auto`` with its head-refit judge cross-fits the first two parts: it also ranks by influence on the
``selection`` part and judges that ranking on the ``influence`` part, and pools the two folds' paired
evidence to choose how many instances to drop - no drop set is judged on the data that ranked it.

The test split is not touched.
"""
from __future__ import annotations

import numpy as np

from keras_itl.datasets import Split
from keras_itl.datasets.sampling import holdout_indices, stage_rng
from keras_itl.errors import UserError

PART_NAMES = ("influence", "selection", "report")
REPORT_SHARE = 0.2  # of the validation split
SELECTION_SHARE = 0.4  # of the validation split; influence gets the rest

DESIGN = ("the validation split is divided (stratified, seeded) into disjoint parts: 'influence' gives the "
          "influence gradient g_val; 'selection' judges the candidate drop sets and "
          "early-stops the final refit (auto's head judge cross-fits the two: each part's influence ranking is "
          "judged on the other, the evidence pooled); 'report' chose nothing and gives the reported validation "
          "numbers; 'influence' and 'selection' together early-stop the warm-up and choose its fine-tuning rate")


def split_validation(val: Split, num_classes: int, seed: int) -> dict[str, Split]:
    """The ``influence``, ``selection`` and ``report`` parts of ``val`` (disjoint, together all of it)."""
    rest_rows, report_rows = _hold_out(val.labels, np.arange(len(val)), REPORT_SHARE, num_classes,
                                       stage_rng(seed, "val-report"))
    influence_rows, selection_rows = _hold_out(val.labels, rest_rows, SELECTION_SHARE / (1 - REPORT_SHARE),
                                               num_classes, stage_rng(seed, "val-selection"))
    return {"influence": val.subset(influence_rows), "selection": val.subset(selection_rows),
            "report": val.subset(report_rows)}


def warm_up_part(parts: dict[str, Split]) -> Split:
    """The ``influence`` and ``selection`` parts together: what early-stops the warm-up and picks its rate."""
    first, second = parts["influence"], parts["selection"]
    return Split(np.concatenate([first.images, second.images]), np.concatenate([first.labels, second.labels]),
                 np.concatenate([first.ids, second.ids]))


def _hold_out(labels: np.ndarray, rows: np.ndarray, fraction: float, num_classes: int,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(rest, held) rows: a stratified ``fraction`` of ``rows`` held out; a UserError if either side is empty.

    With one example per class (many classes, a small validation split) stratification holds out
    nothing; a random ``fraction`` (at least one row) is held out instead.
    """
    held = rows[holdout_indices(labels[rows], fraction, num_classes, rng)]
    if len(held) == 0 and len(rows) >= 2:
        held = np.sort(rng.choice(rows, max(1, round(fraction * len(rows))), replace=False))
    rest = np.setdiff1d(rows, held)
    if len(held) == 0 or len(rest) == 0:
        raise UserError(f"the validation split ({len(labels)} examples) is too small to divide into "
                        f"{', '.join(PART_NAMES)} parts: raise --val-fraction")
    return rest, held
