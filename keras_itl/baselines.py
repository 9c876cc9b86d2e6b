"""The rankings of the baseline selection policies a practitioner would try before influence.

- ``loss``: the training loss under the warm-up model, highest first (the self-confidence ranking
  confident learning starts from);
- ``cleanlab``: confident learning (``cleanlab.filter.find_label_issues``) on out-of-fold predicted
  probabilities, ranked by cleanlab's label-quality score;
- ``random``: a seeded random order, the control.

Each comes back as a ``Ranking`` that ``keras_itl.selection.select_drops`` walks through the same
caps and floors as influence, plus a suspicion score (higher = more likely mislabelled or harmful)
that the experiment compares with the deliberately flipped ids (ROC AUC).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import roc_auc_score

from keras_itl.datasets.sampling import stage_rng
from keras_itl.head_refit import cross_entropy, out_of_fold_probabilities


@dataclass(frozen=True)
class Ranking:
    """What a policy needs: ``order_scores`` (lower goes first), which instances it may drop, and suspicion."""

    order_scores: np.ndarray
    eligible: np.ndarray | None  # None: the policy's default (see select_drops)
    suspicion: np.ndarray


def loss_ranking(probs: np.ndarray, labels: np.ndarray) -> Ranking:
    """Highest warm-up training loss first."""
    losses = cross_entropy(probs, labels)
    return Ranking(-losses, None, losses)


def random_ranking(num_examples: int, seed: int) -> Ranking:
    """A seeded random order: the control every other ranking must beat."""
    scores = stage_rng(seed, "random-policy").random(num_examples)
    return Ranking(scores, None, -scores)


def cleanlab_ranking(features: np.ndarray, labels: np.ndarray, num_classes: int, seed: int,
                     folds: int = 5) -> Ranking:
    """Confident learning's label issues on out-of-fold probabilities of head refits, lowest quality first."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    probs = out_of_fold_probabilities(features, labels, num_classes, folds=folds, seed=seed)
    probs = np.clip(probs, 1e-12, None)
    probs /= probs.sum(axis=1, keepdims=True)
    flagged = find_label_issues(labels, probs, n_jobs=1)
    quality = get_label_quality_scores(labels, probs)
    return Ranking(quality, np.asarray(flagged, dtype=bool), -quality)


def ranking_auc(suspicion: np.ndarray, ids: np.ndarray, flipped_ids: list[str]) -> float | None:
    """ROC AUC of ``suspicion`` at telling the flipped ids from the rest (None when only one kind exists)."""
    flipped = np.isin(np.asarray(ids).astype(str), np.asarray(flipped_ids, dtype=str))
    if flipped.all() or not flipped.any():
        return None
    return float(roc_auc_score(flipped, suspicion))
