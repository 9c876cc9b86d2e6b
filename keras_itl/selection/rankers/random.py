"""``random:P``: drop a seeded random P, the control every other ranking must beat."""
from __future__ import annotations

from keras_itl.selection.ranker import Ranker, Ranking, RankingInputs, register


def rank(inputs: RankingInputs) -> Ranking:
    """A random order, the same for the same seed."""
    from keras_itl.datasets.sampling import stage_rng

    scores = stage_rng(inputs.seed, "random-policy").random(len(inputs.train))
    return Ranking(scores, None, -scores)


register(Ranker(
    name="random", fraction_kinds=("random",), rank=rank, help="random:P a random P (the control)",
    reason=lambda policy, rank, score: f"in the random {policy.fraction * 100:g}% (the control)",
))
