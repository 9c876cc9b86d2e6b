"""The instance method's own ranking: each instance's predicted change in validation loss if it alone
were removed (Koh & Liang 2017; Wang et al. 2019). Negative means harmful.

Its policies: ``sign`` drops every instance predicted harmful, ``fraction:P`` the P most harmful,
``auto`` judges candidate drop sets by refits (see ``keras_itl.selection.drops.select_drops``).
"""
from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from keras_itl.selection.ranker import Ranker, Ranking, RankingInputs, register

if TYPE_CHECKING:
    from keras_itl.influence import InfluenceResult


def rank(inputs: RankingInputs) -> Ranking:
    """Influence against the ``influence`` validation part (with ``cross_fit``, against both parts).

    With ``cross_fit`` influence is also computed against the ``selection`` part, to be judged on the
    ``influence`` part: the two rankings are the folds ``auto`` pools its evidence over, and the ranking
    the drops are taken from is influence on both parts together (influence is linear in the validation
    gradient, so it is their size-weighted mean).
    """
    from keras_itl.influence import InfluenceConfig, compute_influence, frozen_features

    parts = inputs.parts
    config = InfluenceConfig(scope=inputs.scope, batch_size=inputs.batch_size, solver=inputs.solver,
                             cache_dir=inputs.cache_dir)
    # Head-scope influence runs on the activations already computed; other scopes cut elsewhere.
    features = inputs.head if inputs.scope == "head" else None
    if inputs.cross_fit and features is None:
        features = frozen_features(inputs.model, inputs.scope, {"train": inputs.train, "val": parts["influence"],
                                                                 "selection": parts["selection"]},
                                   batch_size=inputs.batch_size, cache_dir=inputs.cache_dir)
    influence = compute_influence(inputs.model, inputs.train, parts["influence"], config, features=features,
                                  strategy=inputs.strategy, verbose=inputs.verbose)
    folds = []
    if inputs.cross_fit:
        swapped = replace(features, splits={**features.splits, "val": features.splits["selection"]})
        other = compute_influence(inputs.model, inputs.train, parts["selection"], config, features=swapped,
                                  strategy=inputs.strategy, verbose=inputs.verbose)
        folds = [(influence.table.predicted_delta_val_loss, "selection"),
                 (other.table.predicted_delta_val_loss, "influence")]
        influence = pooled_influence(influence, other, len(parts["influence"]), len(parts["selection"]))
    deltas = influence.table.predicted_delta_val_loss
    return Ranking(deltas, None, -deltas, details=influence, folds=folds)


def pooled_influence(first: InfluenceResult, second: InfluenceResult, first_size: int,
                     second_size: int) -> InfluenceResult:
    """Influence on two validation parts together, from influence on each (weighted by their sizes)."""
    share = first_size / (first_size + second_size)

    def mean(a: np.ndarray | float, b: np.ndarray | float) -> np.ndarray | float:
        return share * a + (1 - share) * b

    table = replace(first.table, scores=mean(first.table.scores, second.table.scores),
                    predicted_delta_val_loss=mean(first.table.predicted_delta_val_loss,
                                                  second.table.predicted_delta_val_loss))
    timings = {**first.timings, **{f"cross_fit_{key}": value for key, value in second.timings.items()
                                   if key != "features"}}  # both folds ran on the same features
    return replace(first, table=table, val_loss=mean(first.val_loss, second.val_loss), timings=timings)


def reason(policy, rank: int, score: float) -> str:
    """Why ``sign`` or ``fraction:P`` drops an instance."""
    if policy.kind == "sign":
        return f"predicted_delta_val_loss {score:.4g} < 0 (sign)"
    return f"among the {policy.fraction * 100:g}% most harmful (rank {rank}, predicted_delta_val_loss {score:.4g})"


register(Ranker(
    name="influence", kinds=("sign", "fraction", "auto"), fraction_kinds=("fraction",), only_harmful=True,
    rank=rank, reason=reason,
    help=("sign: every instance predicted harmful; fraction:P: the P most harmful; auto: judge candidate drop "
          "sets on validation data that did not rank them and keep the best"),
))
