"""The files a person reads after an influence run: CSV, JSON summary, histogram, harmful-image grid."""
from __future__ import annotations

import json
import os
from pathlib import Path

from keras_itl.datasets import Split
from keras_itl.influence import InfluenceResult
from keras_itl.influence.loo import LooReport
from keras_itl.plots import plot_image_grid, plot_influence_histogram, plot_loo_scatter
from keras_itl.selection import SelectionResult

GRID_SIZE = 32


def noise_detection(dropped_ids: list[str], flipped_ids: list[str]) -> dict:
    """Precision and recall of the dropped set against ids whose labels were deliberately flipped."""
    dropped, flipped = set(dropped_ids), set(flipped_ids)
    hits = len(dropped & flipped)
    return {"flipped": len(flipped), "dropped": len(dropped), "dropped_and_flipped": hits,
            "precision": hits / len(dropped) if dropped else None,
            "recall": hits / len(flipped) if flipped else None}


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


def write_loo_report(report: LooReport, directory: str | os.PathLike) -> dict[str, str]:
    """Write loo.json and loo_scatter.png for a leave-one-out check."""
    directory = Path(directory)
    paths = {"loo.json": directory / "loo.json", "loo_scatter.png": directory / "loo_scatter.png"}
    paths["loo.json"].write_text(json.dumps(report.to_dict(), indent=2))
    plot_loo_scatter(report.predicted, report.actual, report.pearson, report.spearman, paths["loo_scatter.png"])
    return {name: str(path) for name, path in paths.items()}


def describe_selection(selection: SelectionResult, num_train: int) -> str:
    """One line: how many instances were dropped, by which rule, and per class."""
    per_class = ", ".join(f"{name}: {count}" for name, count in selection.dropped_per_class.items() if count)
    return (f"selection ({selection.policy} -> {selection.chosen}): dropped {len(selection.drop_ids)} of {num_train}"
            f" training instances{f' ({per_class})' if per_class else ''}")


