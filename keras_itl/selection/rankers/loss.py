"""``loss:P``: drop the P highest training losses under the warm-up model.

The self-confidence ranking confident learning starts from: a flipped label is usually one the
model fits badly.
"""
from __future__ import annotations

from keras_itl.selection.ranker import Ranker, Ranking, RankingInputs, register


def rank(inputs: RankingInputs) -> Ranking:
    """Highest warm-up training loss first."""
    from keras_itl.selection.head_refit import cross_entropy

    losses = cross_entropy(inputs.probabilities, inputs.train.labels)
    return Ranking(-losses, None, losses)


register(Ranker(
    name="loss", fraction_kinds=("loss",), rank=rank,
    help="loss:P drops the P highest warm-up training losses",
    reason=lambda policy, rank, score: (f"among the {policy.fraction * 100:g}% highest warm-up training losses "
                                        f"(rank {rank}, loss {-score:.4g})"),
))
