"""What a run reports about its selection: the drop set and why, the validation design, the files a person
reads (influence.csv/json, histogram, harmful-image grid; selection.json for the baselines) and how well
the dropped set and the ranking find deliberately flipped labels."""
from __future__ import annotations

import json
import os
from pathlib import Path

import keras
import numpy as np
from sklearn.metrics import roc_auc_score

from keras_itl.datasets import Split
from keras_itl.evaluation import evaluate_model
from keras_itl.influence import InfluenceResult
from keras_itl.plots import plot_image_grid, plot_influence_histogram
from keras_itl.selection.drops import SelectionResult
from keras_itl.selection.instances import RankedInstances
from keras_itl.selection.policy import parse_policy
from keras_itl.selection.validation_parts import DESIGN

GRID_SIZE = 32


def noise_detection(dropped_ids: list[str], flipped_ids: list[str]) -> dict:
    """Precision and recall of the dropped set against ids whose labels were deliberately flipped."""
    dropped, flipped = set(dropped_ids), set(flipped_ids)
    hits = len(dropped & flipped)
    return {"flipped": len(flipped), "dropped": len(dropped), "dropped_and_flipped": hits,
            "precision": hits / len(dropped) if dropped else None,
            "recall": hits / len(flipped) if flipped else None}


def ranking_auc(suspicion: np.ndarray, ids: np.ndarray, flipped_ids: list[str]) -> float | None:
    """ROC AUC of ``suspicion`` at telling the flipped ids from the rest (None when only one kind exists)."""
    flipped = np.isin(np.asarray(ids).astype(str), np.asarray(flipped_ids, dtype=str))
    if flipped.all() or not flipped.any():
        return None
    return float(roc_auc_score(flipped, suspicion))


def describe_selection(selection: SelectionResult, num_train: int) -> str:
    """One line: how many instances were dropped, by which rule, and per class."""
    per_class = ", ".join(f"{name}: {count}" for name, count in selection.dropped_per_class.items() if count)
    return (f"selection ({selection.policy} -> {selection.chosen}): dropped {len(selection.drop_ids)} of {num_train}"
            f" training instances{f' ({per_class})' if per_class else ''}")


def write_influence_report(result: InfluenceResult, selection: SelectionResult, train: Split,
                           class_names: list[str], directory: str | os.PathLike,
                           flipped_ids: list[str] | None = None, extra: dict | None = None) -> dict[str, str]:
    """Write influence.csv, influence.json, influence_histogram.png and harmful_grid.png; return their paths.

    ``extra`` adds (or replaces) top-level keys of influence.json, e.g. the validation design of a run.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    table = result.table
    dropped = ~selection.keep_mask(table.ids)
    paths = {name: directory / name for name in
             ("influence.csv", "influence.json", "influence_histogram.png", "harmful_grid.png")}
    table.write_csv(paths["influence.csv"], class_names, dropped)
    summary = {**result.summary(), "selection": selection.to_dict()}
    if flipped_ids:
        summary["label_noise_detection"] = noise_detection(selection.drop_ids, flipped_ids)
    summary.update(extra or {})
    paths["influence.json"].write_text(json.dumps(summary, indent=2))
    plot_influence_histogram(table.predicted_delta_val_loss, dropped, paths["influence_histogram.png"])
    worst = table.harmful_order()[:GRID_SIZE]
    titles = [f"given {class_names[table.labels[i]]}\npred {class_names[table.predicted_labels[i]]}"
              f"{' (dropped)' if dropped[i] else ''}" for i in worst]
    plot_image_grid(train.images[worst], titles, paths["harmful_grid.png"])
    return {name: str(path) for name, path in paths.items()}


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

