"""Write and print evaluation results: a metrics JSON, a confusion-matrix PNG, a readable summary."""
from __future__ import annotations

import json
import os
from pathlib import Path

from keras_itl.evaluation import Metrics
from keras_itl.plots import plot_confusion


def write_evaluation(metrics: Metrics, class_names: list[str], directory: str | os.PathLike,
                     split: str) -> dict[str, Path]:
    """Save ``metrics-<split>.json`` and ``confusion-<split>.png`` under ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {"metrics": directory / f"metrics-{split}.json", "confusion": directory / f"confusion-{split}.png"}
    paths["metrics"].write_text(json.dumps({"split": split, **metrics.to_dict()}, indent=2))
    plot_confusion(metrics.confusion, class_names, paths["confusion"], title=f"confusion matrix ({split})")
    return paths


def format_metrics(metrics: Metrics, split: str) -> str:
    """A short multi-line report: loss, accuracy, error rate, then accuracy per class."""
    lines = [
        f"{split}: {metrics.num_examples} examples - loss {metrics.loss:.4f} - accuracy {metrics.accuracy:.2%}"
        f" - error rate {metrics.error_rate:.2%}",
        "per-class accuracy:",
    ]
    lines += [f"  {name}: {'n/a' if acc is None else f'{acc:.2%}'}" for name, acc in metrics.per_class_accuracy.items()]
    return "\n".join(lines)
