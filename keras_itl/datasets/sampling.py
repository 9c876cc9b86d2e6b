"""Seeded, class-stratified choices of examples: hold-outs, subsamples, imbalance and label noise.

Pure NumPy on label arrays; every function returns indices (sorted, so a split keeps the source
order) or new labels, and takes its randomness from an explicit generator. ``stage_rng`` derives a
separate generator per stage from the user's seed, so changing one option (say the noise level)
does not reshuffle the choices of the other stages.
"""
from __future__ import annotations

import zlib

import numpy as np

from keras_itl.registry import NOISE_KINDS


def stage_rng(seed: int, stage: str) -> np.random.Generator:
    """A generator determined by (seed, stage name) alone."""
    return np.random.default_rng([seed, zlib.crc32(stage.encode())])


def allocate(total: int, counts: np.ndarray, caps: np.ndarray | None = None) -> np.ndarray:
    """Spread ``total`` picks over classes in proportion to ``counts``, at most ``caps[c]`` for class c.

    Every class that may receive a pick gets at least one when ``total`` allows it, so small
    budgets still cover all classes. Rounding is by largest remainder, so the quotas sum to
    ``min(total, caps.sum())`` exactly; ties go to the lower class index, keeping it deterministic.
    """
    counts = np.asarray(counts, dtype=np.float64)
    caps = np.asarray(counts if caps is None else caps, dtype=np.int64)
    total = int(min(total, caps.sum()))
    if total == 0:
        return np.zeros_like(caps)
    floor = np.minimum(caps, 1) if total >= np.count_nonzero(caps) else np.zeros_like(caps)
    ideal = total * counts / counts.sum()
    quotas = np.clip(np.floor(ideal).astype(np.int64), floor, caps)
    shortfall = ideal - quotas
    while quotas.sum() < total:
        c = int(np.argmax(np.where(quotas < caps, shortfall, -np.inf)))
        quotas[c] += 1
        shortfall[c] -= 1
    while quotas.sum() > total:
        c = int(np.argmin(np.where(quotas > floor, shortfall, np.inf)))
        quotas[c] -= 1
        shortfall[c] += 1
    return quotas


def pick_per_class(labels: np.ndarray, quotas: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of ``quotas[c]`` randomly chosen examples of each class c."""
    chosen = [
        rng.choice(np.flatnonzero(labels == c), size=int(quota), replace=False)
        for c, quota in enumerate(quotas)
        if quota > 0
    ]
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


def holdout_indices(labels: np.ndarray, fraction: float, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of a stratified ``fraction`` of the examples, to hold out as val or test.

    Each class keeps at least one example outside the hold-out, and every class with two or more
    examples is represented in it, even when ``fraction`` of the class rounds to zero.
    """
    counts = np.bincount(labels, minlength=num_classes)
    caps = np.maximum(counts - 1, 0)
    total = max(round(fraction * len(labels)), int(np.count_nonzero(caps)))
    return pick_per_class(labels, allocate(total, counts, caps), rng)


def subsample_indices(labels: np.ndarray, size: int, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of a stratified subsample of ``size`` examples (all of them if fewer)."""
    counts = np.bincount(labels, minlength=num_classes)
    return pick_per_class(labels, allocate(size, counts), rng)


def imbalance_indices(
    labels: np.ndarray, majority: int, share: float, num_classes: int, rng: np.random.Generator
) -> np.ndarray:
    """Sorted indices of a subsample in which class ``majority`` makes up ``share`` of the examples.

    All majority examples are kept when the other classes have enough examples to make up the
    rest; the others are then drawn stratified. Otherwise all others are kept and the majority
    class is subsampled instead. Every class keeps at least one example: with many classes (e.g.
    CIFAR-100 at 90%, which would leave 50 examples for 99 classes) the majority's share then comes
    out below ``share``, because it has too few examples to outweigh one example of each other class.
    """
    counts = np.bincount(labels, minlength=num_classes)
    others = counts.copy()
    others[majority] = 0
    needed_others = round(counts[majority] * (1 - share) / share)
    quotas = allocate(max(needed_others, int(np.count_nonzero(others))), others)
    if quotas.sum() == needed_others:
        quotas[majority] = counts[majority]
    else:
        quotas[majority] = min(counts[majority], max(1, round(quotas.sum() * share / (1 - share))))
    return pick_per_class(labels, quotas, rng)


def flip_labels(
    labels: np.ndarray, fraction: float, num_classes: int, rng: np.random.Generator, kind: str = "symmetric"
) -> tuple[np.ndarray, np.ndarray]:
    """Give exactly ``round(fraction * N)`` randomly chosen examples a different class.

    Returns the new labels and the sorted indices of the flipped examples. ``symmetric``: the new
    class is uniform over the other ``num_classes - 1`` classes. ``pair``: class c becomes c + 1 mod
    ``num_classes`` (structured noise, like a 7 labelled 1); the choice of examples is the same.
    """
    if kind not in NOISE_KINDS:
        raise ValueError(f"unknown noise kind {kind!r}")
    flipped = np.sort(rng.choice(len(labels), size=round(fraction * len(labels)), replace=False))
    noisy = labels.copy()
    shift = rng.integers(1, num_classes, size=len(flipped)) if kind == "symmetric" else 1
    noisy[flipped] = (labels[flipped] + shift) % num_classes
    return noisy, flipped
