"""The select step of the instance method: rank the training instances under a policy, judge drop sets.

Every policy - influence (``sign``, ``fraction:P``, ``auto``) and the baselines (``loss:P``,
``cleanlab``, ``random:P``) - starts from the same warmed-up model and ends in the same caps,
floors and refit, so ``keras-itl experiment`` compares like with like. The warm-up model's backbone
features are computed once per split; ``auto`` judges candidate drop sets by head-only refits on
them (milliseconds each) unless full refits are asked for.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_itl.baselines import (
    Ranking,
    cleanlab_ranking,
    loss_ranking,
    random_ranking,
    ranking_auc,
)
from keras_itl.datasets import Split
from keras_itl.evaluation import evaluate_model, predict_probabilities
from keras_itl.head_refit import head_val_losses
from keras_itl.influence import (
    InfluenceConfig,
    InfluenceResult,
    SolverOptions,
    compute_influence,
    frozen_features,
)
from keras_itl.influence.report import noise_detection, write_influence_report
from keras_itl.selection import Policy, SelectionResult, parse_policy
from keras_itl.validation_parts import DESIGN


@dataclass
class RankedInstances:
    """The training instances ranked by one policy, with the cached features that judge drop sets."""

    train: Split
    ranking: Ranking
    train_features: np.ndarray
    judge_parts: dict[str, tuple[np.ndarray, np.ndarray]]  # validation part -> (its head features, its labels)
    num_classes: int
    influence: InfluenceResult | None = None
    timings: dict[str, float] = field(default_factory=dict)
    # cross-fitting: (the ranking scored against one validation part, the other part that judges it)
    folds: list[tuple[np.ndarray, str]] = field(default_factory=list)

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
    """Features of the warmed-up ``model`` and the ranking ``policy`` asks for.

    Influence is computed against the ``influence`` validation part; the ``selection`` part's features
    are kept for judging candidate drop sets. With ``cross_fit`` (influence policies) influence is also
    computed against the ``selection`` part, to be judged on the ``influence`` part: the two rankings are
    the folds ``auto`` pools its evidence over, and the ranking the drops are taken from is influence on
    both parts together (influence is linear in the validation gradient, so it is their size-weighted mean).
    """
    timings: dict[str, float] = {}
    started = time.perf_counter()
    head = frozen_features(model, "head", {"train": train, "val": parts["influence"], "selection": parts["selection"]},
                           batch_size=batch_size, cache_dir=cache_dir)
    train_features = np.asarray(head.splits["train"].features)
    judge_parts = {"selection": (np.asarray(head.splits["selection"].features), parts["selection"].labels),
                   "influence": (np.asarray(head.splits["val"].features), parts["influence"].labels)}
    timings["features"] = time.perf_counter() - started
    started = time.perf_counter()
    influence, folds = None, []
    if policy.family == "influence":
        config = InfluenceConfig(scope=scope, batch_size=batch_size, solver=solver, cache_dir=cache_dir)
        # Head-scope influence runs on the very activations just computed; other scopes cut elsewhere.
        features = head if scope == "head" else None
        if cross_fit and features is None:
            features = frozen_features(model, scope, {"train": train, "val": parts["influence"],
                                                      "selection": parts["selection"]},
                                       batch_size=batch_size, cache_dir=cache_dir)
        influence = compute_influence(model, train, parts["influence"], config, features=features, strategy=strategy,
                                      verbose=verbose)
        if cross_fit:
            swapped = replace(features, splits={**features.splits, "val": features.splits["selection"]})
            other = compute_influence(model, train, parts["selection"], config, features=swapped, strategy=strategy,
                                      verbose=verbose)
            folds = [(influence.table.predicted_delta_val_loss, "selection"),
                     (other.table.predicted_delta_val_loss, "influence")]
            influence = _pooled_influence(influence, other, len(parts["influence"]), len(parts["selection"]))
        deltas = influence.table.predicted_delta_val_loss
        ranking = Ranking(deltas, None, -deltas)
    elif policy.family == "loss":
        ranking = loss_ranking(predict_probabilities(model, train), train.labels)
    elif policy.family == "cleanlab":
        ranking = cleanlab_ranking(train_features, train.labels, num_classes, seed)
    else:
        ranking = random_ranking(len(train), seed)
    timings["ranking"] = time.perf_counter() - started
    return RankedInstances(train=train, ranking=ranking, train_features=train_features, judge_parts=judge_parts,
                           num_classes=num_classes, influence=influence, timings=timings, folds=folds)


def _pooled_influence(first: InfluenceResult, second: InfluenceResult, first_size: int,
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


def selection_report(ranked: RankedInstances, selection: SelectionResult, parts: dict[str, Split],
                     final_model: keras.Model, flipped_ids: list[str], judge: str) -> dict:
    """What the run reports about its selection: the drop set, validation design and numbers, noise detection."""
    report_metrics = evaluate_model(final_model, parts["report"])
    report = {
        "policy_family": parse_policy(selection.policy).family,
        "auto_judge": judge,
        "selection": selection.to_dict(),
        "validation": {"design": DESIGN,
                       "sizes": {name: len(part) for name, part in parts.items()},
                       "report_loss": report_metrics.loss, "report_accuracy": report_metrics.accuracy},
        "timings": dict(ranked.timings),
    }
    if ranked.influence is not None:
        summary = ranked.influence.summary()
        report = {**summary, **report, "timings": {**summary["timings"], **ranked.timings}}
    if flipped_ids:
        report["label_noise_detection"] = {
            **noise_detection(selection.drop_ids, flipped_ids),
            "roc_auc": ranking_auc(ranked.ranking.suspicion, ranked.train.ids, flipped_ids)}
    return report


def write_selection_files(ranked: RankedInstances, selection: SelectionResult, report: dict,
                          class_names: list[str], directory: str | os.PathLike) -> dict[str, str]:
    """influence.csv/json and plots for influence policies; selection.json for the baselines."""
    if ranked.influence is not None:
        return write_influence_report(ranked.influence, selection, ranked.train, class_names, directory,
                                      extra=report)
    path = Path(directory) / "selection.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    return {"selection.json": str(path)}

