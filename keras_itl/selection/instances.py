"""The select step of the instance method: rank the training instances with the policy's ranker.

Every policy - influence (``sign``, ``fraction:P``, ``auto``) and the baselines - starts from the same
warmed-up model and ends in the same caps, floors and refit, so ``keras-itl experiment`` compares like
with like. The warm-up model's backbone features are computed once per split; ``auto`` judges
candidate drop sets by head-only refits on them (milliseconds each) unless full refits are asked for.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import keras
import numpy as np
import tensorflow as tf

from keras_itl.datasets import Split
from keras_itl.influence import InfluenceResult, SolverOptions, frozen_features
from keras_itl.selection.head_refit import head_val_losses
from keras_itl.selection.policy import Policy
from keras_itl.selection.ranker import Ranking, RankingInputs


@dataclass
class RankedInstances:
    """The training instances ranked by one policy, with the cached features that judge drop sets."""

    train: Split
    ranking: Ranking
    train_features: np.ndarray
    judge_parts: dict[str, tuple[np.ndarray, np.ndarray]]  # validation part -> (its head features, its labels)
    num_classes: int
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def influence(self) -> InfluenceResult | None:
        """The influence result, when the ranking is influence."""
        return self.ranking.details if isinstance(self.ranking.details, InfluenceResult) else None

    @property
    def folds(self) -> list[tuple[np.ndarray, str]]:
        """Cross-fitting folds: (a ranking scored against one validation part, the other part that judges it)."""
        return self.ranking.folds

    def head_losses(self, keep: np.ndarray, part: str = "selection") -> np.ndarray:
        """Per-example losses on validation ``part`` of a head refit on the kept instances' features (the cheap
        judge)."""
        features, labels = self.judge_parts[part]
        return head_val_losses(self.train_features[keep], self.train.labels[keep], features, labels,
                               self.num_classes)


def rank_instances(model: keras.Model, train: Split, parts: dict[str, Split], policy: Policy, *,
                   num_classes: int, seed: int, scope: str, solver: SolverOptions, batch_size: int,
                   cache_dir: str | None = None, strategy: tf.distribute.Strategy | None = None,
                   cross_fit: bool = False, verbose: bool) -> RankedInstances:
    """Features of the warmed-up ``model`` and the ranking ``policy``'s ranker gives.

    The ``influence`` validation part is what rankers score against; the ``selection`` part's features
    are kept for judging candidate drop sets. ``cross_fit`` asks the influence ranker for two folds
    (see ``keras_itl.selection.rankers.influence``).
    """
    timings: dict[str, float] = {}
    started = time.perf_counter()
    head = frozen_features(model, "head", {"train": train, "val": parts["influence"], "selection": parts["selection"]},
                           batch_size=batch_size, cache_dir=cache_dir)
    inputs = RankingInputs(model=model, train=train, parts=parts, head=head, num_classes=num_classes, seed=seed,
                           scope=scope, solver=solver, batch_size=batch_size, cache_dir=cache_dir, strategy=strategy,
                           cross_fit=cross_fit, verbose=verbose)
    judge_parts = {"selection": (np.asarray(head.splits["selection"].features), parts["selection"].labels),
                   "influence": (np.asarray(head.splits["val"].features), parts["influence"].labels)}
    timings["features"] = time.perf_counter() - started
    started = time.perf_counter()
    ranking = policy.ranker.rank(inputs)
    timings["ranking"] = time.perf_counter() - started
    return RankedInstances(train=train, ranking=ranking, train_features=inputs.train_features,
                           judge_parts=judge_parts, num_classes=num_classes, timings=timings)
