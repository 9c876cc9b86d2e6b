"""``cleanlab``: drop the label issues confident learning finds, lowest label quality first.

The probabilities are out-of-fold predictions of head refits on the warm-up's backbone features, so
no instance is judged by a model that saw its label.
"""
from __future__ import annotations

import numpy as np

from keras_itl.selection.ranker import Ranker, Ranking, RankingInputs, register

FOLDS = 5


def rank(inputs: RankingInputs) -> Ranking:
    """cleanlab's label-quality order; only its flagged issues are eligible."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    from keras_itl.selection.head_refit import out_of_fold_probabilities

    labels = inputs.train.labels
    probs = out_of_fold_probabilities(inputs.train_features, labels, inputs.num_classes, folds=FOLDS,
                                      seed=inputs.seed)
    probs = np.clip(probs, 1e-12, None)
    probs /= probs.sum(axis=1, keepdims=True)
    flagged = find_label_issues(labels, probs, n_jobs=1)
    quality = get_label_quality_scores(labels, probs)
    return Ranking(quality, np.asarray(flagged, dtype=bool), -quality)


register(Ranker(
    name="cleanlab", rank=rank, needs_eligible=True, help="cleanlab: confident learning's label issues",
    reason=lambda policy, rank, score: (f"label issue found by confident learning "
                                        f"(rank {rank}, label quality {score:.4g})"),
))
