"""``margin:P``: drop the P instances whose given label the warm-up model trusts least against another class.

The margin is the probability of the given label minus the highest probability of any other class
(Northcutt et al.'s normalized margin): negative when the model prefers another class. Unlike the loss,
it is low only when a rival class is confident, not when the model is unsure between all classes.
"""
from __future__ import annotations

import numpy as np

from keras_itl.selection.ranker import Ranker, Ranking, RankingInputs, register


def margins(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """p(given label) - max over the other classes of p(class), per instance."""
    rows = np.arange(len(labels))
    given = probabilities[rows, labels]
    others = probabilities.copy()
    others[rows, labels] = -np.inf
    return given - others.max(axis=1)


def rank(inputs: RankingInputs) -> Ranking:
    """Smallest margin first."""
    margin = margins(np.asarray(inputs.probabilities, dtype=np.float64), inputs.train.labels)
    return Ranking(margin, None, -margin)


register(Ranker(
    name="margin", fraction_kinds=("margin",), rank=rank,
    help="margin:P the P smallest margins between the given label's probability and the best other class",
    reason=lambda policy, rank, score: (f"among the {policy.fraction * 100:g}% smallest label margins "
                                        f"(rank {rank}, margin {score:.4g})"),
))
