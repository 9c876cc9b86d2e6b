"""Which target training instances to drop before fine-tuning, and why.

The influence stage estimates, for every training instance, ``predicted_delta_val_loss``: how the
validation loss would change if that instance alone were removed. Negative means removing it is
predicted to lower the validation loss, i.e. the instance is harmful. This module turns those
estimates into a drop set under a policy (``sign``, ``fraction:P`` or ``auto``) and under caps and
per-class floors that keep a first-order estimate from gutting the training set or emptying a class.

The baselines a practitioner would try first are policies too, walked through the same caps and
floors: ``loss:P`` (the highest warm-up training losses), ``cleanlab`` (confident learning's
flagged label issues) and ``random:P`` (the control). Each ranks the instances by its own score
(``keras_itl.selection.rankers`` holds one module per ranker); here a ranking is just "lower goes first".

Every dropped id gets a reason a person can read, and every cap or floor that stopped a drop is
noted, so a user can see exactly which of their instances were dropped and what held others back.
Pure NumPy: the refits that ``auto`` compares are the caller's, passed in as ``measure``.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction

import numpy as np

from keras_itl import registry
from keras_itl.errors import UserError
from keras_itl.selection.auto import Candidate, choose, pooled
from keras_itl.selection.policy import Policy, parse_policy


@dataclass(frozen=True)
class Fold:
    """One cross-fitting fold for ``auto``: a ranking scored against one part of the validation data, and
    the per-example losses, on another part, of a refit on a keep mask (see ``select_drops``)."""

    predicted_delta: np.ndarray
    measure: Callable[[np.ndarray], np.ndarray]
    eligible: np.ndarray | None = None


@dataclass
class SelectionResult:
    """The drop set (harmful first) with a reason per dropped id, class counts and the limits that bit.

    ``chosen`` is the policy, or for ``auto`` the winning candidate's name; ``candidates`` holds every
    distinct drop set ``auto`` measured (empty for the other policies).
    """

    policy: str
    drop_ids: list[str]
    reasons: dict[str, str]
    dropped_per_class: dict[str, int]
    kept_per_class: dict[str, int]
    notes: list[str]
    candidates: list[Candidate]
    chosen: str

    def to_dict(self) -> dict:
        """Plain lists, dicts, strings and numbers, ready for ``json.dumps``."""
        return asdict(self)

    def keep_mask(self, ids: Sequence[str] | np.ndarray) -> np.ndarray:
        """Boolean array over ``ids``: True where the id is kept, False where it is dropped."""
        return ~np.isin(np.asarray(ids).astype(str), np.asarray(self.drop_ids, dtype=str))


@dataclass(frozen=True)
class _Limits:
    """The caps and floors every policy's proposal is walked through."""

    max_drop_fraction: float
    budget: int  # at most this many drops in total
    floors: list[int]  # class c keeps at least floors[c] examples
    class_sizes: list[int]
    pinned: np.ndarray  # bool over the input order: True where a person's decision keeps the instance

    def walk(self, name: str, proposal: np.ndarray, labels: np.ndarray,
             class_names: list[str]) -> tuple[list[int], list[str]]:
        """The indices of ``proposal`` (harmful first) that may be dropped, and a note per limit that bit.

        Greedy: a pinned instance, or one whose drop would take its class below its floor, is skipped and
        the walk goes on; once the budget is spent the rest are kept. Pins and floors are checked first
        because they block an instance whatever the budget.
        """
        room = [size - floor for size, floor in zip(self.class_sizes, self.floors)]
        dropped: list[int] = []
        floor_blocked = [0] * len(room)
        cap_blocked = pin_blocked = 0
        for i in proposal:
            c = labels[i]
            if self.pinned[i]:
                pin_blocked += 1
            elif room[c] == 0:
                floor_blocked[c] += 1
            elif len(dropped) == self.budget:
                cap_blocked += 1
            else:
                dropped.append(int(i))
                room[c] -= 1
        notes = [f"class {class_names[c]!r} kept at its floor of {self.floors[c]}: "
                 f"{_harmful(blocked)} not dropped"
                 for c, blocked in enumerate(floor_blocked) if blocked]
        if pin_blocked:
            notes.append(f"{_harmful(pin_blocked)} of the {name} set not dropped: a person's decision keeps them")
        if cap_blocked:
            notes.append(f"max_drop_fraction {self.max_drop_fraction:g} capped the {name} set at "
                         f"{self.budget} drops: {_harmful(cap_blocked)} not dropped")
        return dropped, notes


@dataclass(frozen=True)
class _Walk:
    """A ranking (``order``, first dropped first; ``allowed`` what may be dropped at all) walked through the
    caps and floors: what each policy would drop from it."""

    order: np.ndarray
    allowed: np.ndarray
    limits: _Limits
    labels: np.ndarray
    class_names: list[str]

    def option(self, name: str, policy: Policy | None) -> _Option:
        proposal, notes = _propose(policy, self.order, self.allowed)
        dropped, limit_notes = self.limits.walk(name, proposal, self.labels, self.class_names)
        return _Option(name, policy, dropped, notes + limit_notes)


@dataclass(frozen=True)
class _Option:
    """A candidate drop set after caps and floors: what a policy (None for 'none') would drop."""

    name: str
    policy: Policy | None
    dropped: list[int]  # indices in harmful order
    notes: list[str]


def select_drops(
    ids: Sequence[str] | np.ndarray,
    labels: Sequence[int] | np.ndarray,
    predicted_delta: Sequence[float] | np.ndarray,
    *,
    policy: Policy | str = registry.POLICY,
    class_names: list[str],
    max_drop_fraction: float = registry.MAX_DROP_FRACTION,
    min_class_keep_fraction: float = registry.MIN_CLASS_KEEP_FRACTION,
    min_per_class: int = 1,
    auto_fractions: tuple[float, ...] = (0.05, 0.10, 0.20),
    auto_margin: float = registry.AUTO_MARGIN,
    auto_min_z: float = registry.AUTO_MIN_Z,
    measure: Callable[[np.ndarray], float | np.ndarray] | None = None,
    eligible: Sequence[bool] | np.ndarray | None = None,
    cross_fit: Sequence[Fold] = (),
    pinned: Sequence[str] = (),
) -> SelectionResult:
    """Choose the ids to drop from a ranking: ``predicted_delta``, lower goes first.

    For the influence policies ``predicted_delta`` is the predicted change in val loss on removal; for
    the baselines it is their own score, negated where higher means more suspect (e.g. minus the
    training loss). ``eligible`` says which instances the policy may drop at all: by default the
    negative ones for the influence policies (an instance predicted to help is never dropped) and
    every instance for ``loss`` and ``random``; ``cleanlab`` needs it (the flagged label issues).

    Instances are ranked ascending (ties by id). ``sign`` and ``cleanlab`` propose every eligible one;
    ``fraction:P``, ``loss:P`` and ``random:P`` the round-half-up(P * n) first eligible ones.
    Each proposal is walked greedily: at most floor(max_drop_fraction * n) drops, and class c keeps at
    least min(n_c, max(min_per_class, ceil(min_class_keep_fraction * n_c))) examples. An id in ``pinned`` (a
    person decided to keep it, keras_itl.decisions) is never dropped: the walk passes over it, as over a
    class at its floor.

    ``auto`` walks "none", "sign" and "fraction:F" for every F in ``auto_fractions`` the same way,
    calls ``measure(keep_mask)`` once per distinct drop set (``keep_mask`` is a bool array over the
    input order, True = kept; it returns the val loss after refitting on the kept instances - one
    number, or one per validation example) and keeps the fewest drops among the candidates within
    ``auto_margin`` (relative) of the lowest loss, so a difference in the third decimal does not
    decide; ties to the lower loss. With ``auto_min_z`` > 0 (``measure`` must then give per-example
    losses) a drop set is a candidate only if its paired win over "none" - the mean of the
    per-example loss differences - exceeds ``auto_min_z`` standard errors of that mean: a win within
    the noise of a small validation part does not earn a drop. Among those candidates, the ones the
    lowest-loss candidate does not beat by more than ``auto_min_z`` standard errors are
    indistinguishable on this data, and the one that drops the most is kept (``auto_margin`` is then
    unused). Other policies ignore ``measure``.

    With ``cross_fit`` folds (each a ranking of its own, scored against other validation data than the
    data its ``measure`` judges on), ``auto`` chooses the *policy* on the evidence of every fold at once:
    each candidate policy is walked on each fold's ranking, measured by that fold's ``measure``, and its
    per-example losses over all folds are pooled into one paired test. The chosen policy is then applied to
    ``predicted_delta`` (``measure`` is unused). Pooling doubles the examples behind each test for two
    folds without judging a drop set on the data that ranked it.
    """
    policy = parse_policy(policy) if isinstance(policy, str) else policy
    ids, labels, delta = _checked_arrays(ids, labels, predicted_delta, class_names)
    limits = _limits(labels, len(class_names), max_drop_fraction, min_class_keep_fraction, min_per_class,
                     np.isin(ids, np.asarray(list(pinned), dtype=str)))
    if not 0 <= auto_margin < 1:
        raise UserError(f"auto_margin must be in [0, 1), got {auto_margin}")
    if not auto_min_z >= 0:
        raise UserError(f"auto_min_z must be >= 0, got {auto_min_z}")
    walk = _Walk(np.lexsort((ids, delta)), _eligible(policy, delta, eligible), limits, labels, class_names)
    order, option = walk.order, walk.option

    if policy.kind == "auto":
        if measure is None and not cross_fit:
            raise UserError("auto needs a refit to measure candidates: pass measure, or choose sign or fraction:P")
        policies = [Policy("sign")] + [Policy("fraction", float(f)) for f in dict.fromkeys(auto_fractions)]
        options = [option("none", None)] + [option(str(p), p) for p in policies]
        if cross_fit:
            walks = [_fold_walk(fold, ids, labels, class_names, limits, policy) for fold in cross_fit]
            trials = [[fold_walk.option(opt.name, opt.policy).dropped for fold_walk in walks] for opt in options]
            key, losses = pooled([fold.measure for fold in cross_fit], trials, len(ids))
        else:  # one "fold": the main ranking, judged by ``measure``
            key, losses = pooled([measure], [[opt.dropped] for opt in options], len(ids))
        winner, loss, candidates, auto_notes = choose(options, ids, key, losses, auto_margin, auto_min_z)
        if cross_fit:
            auto_notes.append(f"auto judged each candidate policy on {len(cross_fit)} cross-fitted folds, "
                              f"{candidates[0].examples} per-example validation losses pooled")
        suffix = f"; auto chose {winner.name}, measured val_loss {loss:.4g}"
    else:
        winner, candidates, auto_notes, suffix = option(str(policy), policy), [], [], ""

    rank = np.empty(len(ids), dtype=np.int64)
    rank[order] = np.arange(1, len(ids) + 1)
    reason = winner.policy.ranker.reason if winner.policy else None
    reasons = {str(ids[i]): reason(winner.policy, int(rank[i]), float(delta[i])) + suffix for i in winner.dropped}
    dropped_counts = np.bincount(labels[winner.dropped], minlength=len(class_names))
    return SelectionResult(
        policy=str(policy),
        drop_ids=[str(ids[i]) for i in winner.dropped],
        reasons=reasons,
        dropped_per_class={name: int(dropped_counts[c]) for c, name in enumerate(class_names)},
        kept_per_class={name: limits.class_sizes[c] - int(dropped_counts[c]) for c, name in enumerate(class_names)},
        notes=winner.notes + auto_notes,
        candidates=candidates,
        chosen=winner.name,
    )


def _checked_arrays(ids: Sequence[str] | np.ndarray, labels: Sequence[int] | np.ndarray,
                    predicted_delta: Sequence[float] | np.ndarray,
                    class_names: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ids as str, labels as int and deltas as float64 arrays, or a UserError saying what is wrong."""
    ids = np.asarray(ids).astype(str)
    labels = np.asarray(labels)
    delta = np.asarray(predicted_delta, dtype=np.float64)
    if ids.ndim != 1 or labels.shape != ids.shape or delta.shape != ids.shape:
        raise UserError(f"ids, labels and predicted_delta must be 1-D and the same length, "
                        f"got shapes {ids.shape}, {labels.shape} and {delta.shape}")
    if len(set(class_names)) != len(class_names):
        raise UserError(f"class names must be distinct, got {class_names}")
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise UserError(f"labels must be integer class indices, got dtype {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= len(class_names)):
        raise UserError(f"labels must be class indices in 0..{len(class_names) - 1} "
                        f"(one per class name), got {labels.min()}..{labels.max()}")
    unique, counts = np.unique(ids, return_counts=True)
    if len(unique) != len(ids):
        raise UserError(f"instance ids must be unique; repeated: {', '.join(map(repr, unique[counts > 1][:3]))}")
    bad = np.flatnonzero(~np.isfinite(delta))
    if bad.size:
        raise UserError(f"predicted_delta has {bad.size} NaN or infinite values (first for id {ids[bad[0]]!r}); "
                        f"recompute influence, e.g. with more damping")
    return ids, labels.astype(np.int64), delta


def _scaled(fraction: float, count: int) -> Fraction:
    """fraction * count as the fraction is written in decimal, so 0.29 * 100 is 29, not 28.999999999999996."""
    return Fraction(repr(float(fraction))) * count


def _limits(labels: np.ndarray, num_classes: int, max_drop_fraction: float,
            min_class_keep_fraction: float, min_per_class: int, pinned: np.ndarray) -> _Limits:
    """The drop budget, per-class floors and pins for these labels, after checking the settings."""
    if not 0 <= max_drop_fraction < 1:
        raise UserError(f"max_drop_fraction must be in [0, 1), got {max_drop_fraction}")
    if not 0 <= min_class_keep_fraction <= 1:
        raise UserError(f"min_class_keep_fraction must be in [0, 1], got {min_class_keep_fraction}")
    if not isinstance(min_per_class, int | np.integer) or min_per_class < 0:
        raise UserError(f"min_per_class must be a whole number >= 0, got {min_per_class}")
    sizes = [int(n) for n in np.bincount(labels, minlength=num_classes)]
    floors = [min(n, max(int(min_per_class), math.ceil(_scaled(min_class_keep_fraction, n)))) for n in sizes]
    return _Limits(float(max_drop_fraction), math.floor(_scaled(max_drop_fraction, len(labels))), floors, sizes,
                   pinned)


def _eligible(policy: Policy, delta: np.ndarray, eligible: Sequence[bool] | np.ndarray | None) -> np.ndarray:
    """The bool mask of instances ``policy`` may drop (see ``select_drops``)."""
    if eligible is None:
        if policy.ranker.needs_eligible:
            raise UserError(f"the {policy.kind} policy needs its ranking's eligible instances: pass eligible")
        return delta < 0 if policy.ranker.only_harmful else np.ones(len(delta), dtype=bool)
    eligible = np.asarray(eligible)
    if eligible.shape != delta.shape or eligible.dtype != bool:
        raise UserError(f"eligible must be a bool array of the ids' length, got {eligible.dtype} {eligible.shape}")
    return eligible


def _propose(policy: Policy | None, order: np.ndarray, eligible: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """The indices ``policy`` would drop before caps and floors (first in ``order`` first), and a note if it fell
    short."""
    candidates = order[eligible[order]]
    if policy is None:
        return candidates[:0], []
    if policy.fraction is None:  # sign, cleanlab: every eligible instance
        return candidates, []
    wanted = math.floor(_scaled(policy.fraction, len(order)) + Fraction(1, 2))
    if len(candidates) >= wanted:
        return candidates[:wanted], []
    return candidates, [(f"{policy} asked for {wanted} instances but there are only {_harmful(len(candidates))}; "
                         f"instances predicted to help are never dropped")]


def _harmful(count: int) -> str:
    """'1 harmful instance', '4 harmful instances'."""
    return f"{count} harmful instance{'' if count == 1 else 's'}"


def _fold_walk(fold: Fold, ids: np.ndarray, labels: np.ndarray, class_names: list[str], limits: _Limits,
               policy: Policy) -> _Walk:
    """A cross-fitting fold's ranking, walked as the main ranking is (ascending, ties by id; the same caps)."""
    delta = np.asarray(fold.predicted_delta, dtype=np.float64)
    if delta.shape != labels.shape or not np.isfinite(delta).all():
        raise UserError(f"a cross-fitting fold's predicted_delta must be {len(labels)} finite values")
    return _Walk(np.lexsort((ids, delta)), _eligible(policy, delta, fold.eligible), limits, labels, class_names)
