"""What a ranker is, and the registry of rankers by name.

A ranker orders the target training instances from most to least worth dropping; a selection
policy (``sign``, ``fraction:P``, ``auto`` for influence; ``loss:P``, ``cleanlab``, ... for the
baselines) then walks that order through the same caps and floors, so every policy is compared
like with like. Each ranker is one module in ``keras_itl.selection.rankers`` that calls
``register``; the modules are found by listing that package, so adding a ranker is adding a file.

Ranker modules keep TensorFlow and other heavy imports inside their ``rank`` function: the CLI
lists the rankers while it declares its options.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from keras_itl.plugins import import_plugins

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

    from keras_itl.datasets import Split
    from keras_itl.influence import FrozenFeatures, SolverOptions


@dataclass(frozen=True)
class Ranking:
    """A ranker's answer.

    ``order_scores``: lower goes first (is dropped first). ``eligible``: which instances the policy may
    drop at all (None: every one, or for influence the ones predicted harmful). ``suspicion``: higher =
    more likely mislabelled or harmful, compared with deliberately flipped ids (ROC AUC).
    ``details``: what the ranker computed on the way that the run reports (the InfluenceResult);
    ``folds``: cross-fitting folds, (scores against one validation part, the part that judges them).
    """

    order_scores: np.ndarray
    eligible: np.ndarray | None
    suspicion: np.ndarray
    details: Any = None
    folds: list[tuple[np.ndarray, str]] = field(default_factory=list)


@dataclass
class RankingInputs:
    """Everything a ranker may rank from: the warmed-up model, the data and the run's influence options.

    ``head`` holds the frozen activations at the head's input for the ``train``, ``val`` (the
    ``influence`` validation part) and ``selection`` splits, already computed for judging drop sets.
    """

    model: keras.Model
    train: Split
    parts: dict[str, Split]
    head: FrozenFeatures
    num_classes: int
    seed: int
    scope: str
    solver: SolverOptions
    batch_size: int
    cache_dir: str | None = None
    strategy: tf.distribute.Strategy | None = None
    cross_fit: bool = False
    verbose: bool = False

    @property
    def train_features(self) -> np.ndarray:
        """The training instances' activations at the head's input."""
        return np.asarray(self.head.splits["train"].features)

    @cached_property
    def probabilities(self) -> np.ndarray:
        """The warmed-up model's predicted class probabilities on the training instances."""
        from keras_itl.evaluation import predict_probabilities

        return predict_probabilities(self.model, self.train)


@dataclass(frozen=True)
class Ranker:
    """One registered ranker and the policies written with it.

    ``kinds``: the policy kinds it serves (by default its name); ``fraction_kinds``: those written
    ``kind:P`` (they drop the first round(P * n) eligible instances; the others drop every eligible
    one). ``reason(policy, rank, score)``: why it drops the instance at 1-based ``rank`` whose order
    score is ``score``, in words a person reads. ``needs_eligible``: its ranking must say which
    instances are eligible. ``only_harmful``: by default only instances with a negative order score
    are eligible (influence: an instance predicted to help is never dropped).
    """

    name: str
    help: str
    rank: Callable[[RankingInputs], Ranking]
    reason: Callable[[Any, int, float], str]
    kinds: tuple[str, ...] = ()
    fraction_kinds: tuple[str, ...] = ()
    needs_eligible: bool = False
    only_harmful: bool = False

    def __post_init__(self) -> None:
        if not self.kinds:
            object.__setattr__(self, "kinds", (self.name,))


_RANKERS: dict[str, Ranker] = {}


def register(ranker: Ranker) -> Ranker:
    """Add ``ranker`` to the registry (its module calls this when imported); a second one of a name is an error."""
    taken = {kind for other in _RANKERS.values() if other.name != ranker.name for kind in other.kinds}
    if ranker.name in _RANKERS or taken & set(ranker.kinds):
        raise ValueError(f"a ranker named {ranker.name!r} or serving {sorted(taken & set(ranker.kinds))} "
                         "is already registered")
    _RANKERS[ranker.name] = ranker
    return ranker


def all_rankers() -> dict[str, Ranker]:
    """Every ranker by name, the ones ``keras_itl.selection.rankers`` holds and any registered since: influence
    (the method's own) first, then the baselines by name."""
    import_plugins("keras_itl.selection.rankers")
    return dict(sorted(_RANKERS.items(), key=lambda item: (item[0] != "influence", item[0])))


def ranker_for(kind: str) -> Ranker | None:
    """The ranker that serves policy ``kind``, or None."""
    return next((ranker for ranker in all_rankers().values() if kind in ranker.kinds), None)
