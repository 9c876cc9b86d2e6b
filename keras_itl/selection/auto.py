"""How ``auto`` chooses among candidate drop sets: per-example validation losses of refits, compared in
paired tests, so a win within the noise of a small validation part does not earn a drop."""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from statistics import NormalDist
from typing import TYPE_CHECKING

import numpy as np

from keras_itl.errors import UserError

if TYPE_CHECKING:
    from keras_itl.selection.drops import _Option


@dataclass
class Candidate:
    """One drop set that ``auto`` refit and measured.

    ``win_z`` is its mean per-example loss win over keeping everything, in standard errors of that
    mean (None when ``auto`` did not test wins: ``auto_min_z`` 0).
    """

    name: str
    drop_ids: list[str]
    val_loss: float
    win_z: float | None = None
    examples: int = 1  # how many per-example losses the measurement gave (pooled over folds when cross-fitted)



def pooled(measures: list[Callable[[np.ndarray], float | np.ndarray]], trials: list[list[list[int]]], size: int
            ) -> tuple[Callable[[int], tuple], Callable[[int], np.ndarray]]:
    """The key (its drop set on every fold) and the losses of option k (``trials[k]``: its drop set per fold),
    concatenated over the folds."""
    def key(k: int) -> tuple:
        return tuple(tuple(dropped) for dropped in trials[k])

    def losses(k: int) -> np.ndarray:
        return np.concatenate([np.atleast_1d(np.asarray(measure(_keep_mask(size, dropped)), dtype=np.float64))
                               for measure, dropped in zip(measures, trials[k])])

    return key, losses


def _keep_mask(size: int, dropped: list[int]) -> np.ndarray:
    """True for every index but the ``dropped`` ones."""
    keep = np.ones(size, dtype=bool)
    keep[dropped] = False
    return keep


def choose(options: list[_Option], ids: np.ndarray, key: Callable[[int], tuple],
            measure: Callable[[int], float | np.ndarray],
            margin: float, min_z: float) -> tuple[_Option, float, list[Candidate], list[str]]:
    """The option ``auto`` keeps, its loss, every candidate and notes on the choice.

    With ``min_z`` > 0, only "none" and the drop sets whose paired win over it exceeds the family gate
    (``family_gate``: ``min_z`` raised for the number of drop sets tested) take part; of those the
    lowest-loss one does not beat by more than ``min_z`` standard errors, the one dropping the most wins
    (once dropping is shown to help, a harmful instance kept costs more than a harmless one dropped).
    With ``min_z`` 0, the fewest drops within ``margin`` (relative) of the lowest loss. Ties in drops go
    to the lower loss, then the earlier option.

    ``measure(k)`` gives option k's losses and ``key(k)`` what makes two options the same measurement
    (their drop sets). Each distinct one is measured once, under the name of the first option that
    produced it; the other names are noted as its aliases.
    """
    groups: dict[tuple, list[int]] = {}
    for k in range(len(options)):
        groups.setdefault(key(k), []).append(k)
    distinct = [options[group[0]] for group in groups.values()]  # the first is "none": options start with it
    measured = []
    for group in groups.values():
        losses = np.atleast_1d(np.asarray(measure(group[0]), dtype=np.float64))
        if np.isnan(losses).any():
            raise UserError(f"the refit for selection candidate {options[group[0]].name} gave a NaN validation loss")
        measured.append(losses)
    wins = [_win_z(measured[0], losses) if min_z > 0 else None for losses in measured]
    candidates = [Candidate(opt.name, [str(ids[i]) for i in opt.dropped], float(losses.mean()), z, len(losses))
                  for opt, losses, z in zip(distinct, measured, wins)]
    tests = len(measured) - 1  # distinct drop sets, each tested against keeping everything
    gate = family_gate(min_z, tests)
    allowed = [k for k, z in enumerate(wins) if k == 0 or z is None or z > gate]
    lowest_k = min(allowed, key=lambda k: candidates[k].val_loss)
    lowest = candidates[lowest_k].val_loss
    if min_z > 0:  # sets the lowest does not beat beyond the noise: the one dropping the most (recall first)
        close = [k for k in allowed if _win_z(measured[k], measured[lowest_k]) <= min_z]
        best = max(close, key=lambda k: (len(candidates[k].drop_ids), -candidates[k].val_loss, -k))
    else:  # the fewest drops within the relative margin
        close = [k for k in allowed if candidates[k].val_loss <= lowest + margin * abs(lowest)]
        best = min(close, key=lambda k: (len(candidates[k].drop_ids), candidates[k].val_loss))
    winner = distinct[best]
    notes = [f"{', '.join(options[k].name for k in group[1:])} gave the same drop set as {options[group[0]].name}; "
             f"measured once as {options[group[0]].name}" for group in groups.values() if len(group) > 1]
    notes += [f"auto refused {c.name}: its val_loss {c.val_loss:.4g} beats keeping everything by only "
              f"{c.win_z:.2f} standard errors (needs more than {_gate_text(min_z, gate, tests)})"
              for k, c in enumerate(candidates) if k not in allowed and c.val_loss < candidates[0].val_loss]
    if candidates[best].val_loss > lowest:
        within = f"within {min_z:g} standard errors" if min_z > 0 else f"within the margin {margin:g}"
        notes.append(f"auto chose {winner.name} ({len(winner.dropped)} drops): its val_loss "
                     f"{candidates[best].val_loss:.4g} is {within} of the lowest {lowest:.4g}")
    if winner.policy is None:
        notes.append(f"auto kept every instance: no drop set measured a val_loss lower than keeping everything's "
                     f"{candidates[best].val_loss:.4g} by more than the margin and the noise")
    return winner, candidates[best].val_loss, candidates, notes


def family_gate(min_z: float, tests: int) -> float:
    """The z each of ``tests`` drop sets must exceed so that, when dropping cannot help, the chance that any
    of them passes by luck is the one-sided chance of a single test passing ``min_z`` (Bonferroni).

    Args:
        min_z: the threshold one drop set alone would face, in standard errors.
        tests: how many distinct drop sets are tested against keeping everything.

    Returns:
        ``min_z`` for one test (or none); higher for more, e.g. 2.53 for ``min_z`` 2 and four tests.
    """
    tail = NormalDist().cdf(-min_z)
    if tests <= 1 or not 0 < tail < 1:
        return min_z
    return -NormalDist().inv_cdf(tail / tests)


def _gate_text(min_z: float, gate: float, tests: int) -> str:
    """The gate as a refusal note states it."""
    return f"{min_z:g}" if gate == min_z else f"{gate:.2f}: {min_z:g} for one of {tests} sets tested at once"


def _win_z(kept_all: np.ndarray, dropped: np.ndarray) -> float:
    """How many standard errors the mean per-example loss win of ``dropped`` over ``kept_all`` is.

    Paired: the same validation examples are scored under both refits, so the spread of their
    differences is the noise of the mean win. Identical losses give 0; a win with no spread, +inf.
    """
    if dropped.shape != kept_all.shape or len(dropped) < 2:
        raise UserError("auto_min_z needs the per-example validation losses of every candidate (at least two)")
    differences = kept_all - dropped
    win = float(differences.mean())
    spread = float(differences.std(ddof=1))
    if spread == 0:
        return 0.0 if win == 0 else math.copysign(math.inf, win)
    return win / (spread / math.sqrt(len(differences)))
