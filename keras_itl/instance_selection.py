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
from dataclasses import dataclass, field
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
    selection_features: np.ndarray
    selection_labels: np.ndarray
    num_classes: int
    influence: InfluenceResult | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def head_losses(self, keep: np.ndarray) -> np.ndarray:
        """Per-example selection-part losses of a head refit on the kept instances' features (the cheap judge)."""
        return head_val_losses(self.train_features[keep], self.train.labels[keep], self.selection_features,
                               self.selection_labels, self.num_classes)


def rank_instances(model: keras.Model, train: Split, parts: dict[str, Split], policy: Policy, *,
                   num_classes: int, seed: int, scope: str, solver: SolverOptions, batch_size: int,
                   cache_dir: str | None = None, strategy: tf.distribute.Strategy | None = None,
                   verbose: bool) -> RankedInstances:
    """Features of the warmed-up ``model`` and the ranking ``policy`` asks for.

    Influence is computed against the ``influence`` validation part only; the ``selection`` part's
    features are kept for judging candidate drop sets.
    """
    timings: dict[str, float] = {}
    started = time.perf_counter()
    head = frozen_features(model, "head", {"train": train, "val": parts["influence"], "selection": parts["selection"]},
                           batch_size=batch_size, cache_dir=cache_dir)
    train_features = np.asarray(head.splits["train"].features)
    selection_features = np.asarray(head.splits["selection"].features)
    timings["features"] = time.perf_counter() - started
    started = time.perf_counter()
    influence = None
    if policy.family == "influence":
        # Head-scope influence runs on the very activations just computed; other scopes cut elsewhere.
        influence = compute_influence(model, train, parts["influence"],
                                      InfluenceConfig(scope=scope, batch_size=batch_size, solver=solver,
                                                      cache_dir=cache_dir),
                                      features=head if scope == "head" else None, strategy=strategy,
                                      verbose=verbose)
        deltas = influence.table.predicted_delta_val_loss
        ranking = Ranking(deltas, None, -deltas)
    elif policy.family == "loss":
        ranking = loss_ranking(predict_probabilities(model, train), train.labels)
    elif policy.family == "cleanlab":
        ranking = cleanlab_ranking(train_features, train.labels, num_classes, seed)
    else:
        ranking = random_ranking(len(train), seed)
    timings["ranking"] = time.perf_counter() - started
    return RankedInstances(train=train, ranking=ranking, train_features=train_features,
                           selection_features=selection_features, selection_labels=parts["selection"].labels,
                           num_classes=num_classes, influence=influence, timings=timings)


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

