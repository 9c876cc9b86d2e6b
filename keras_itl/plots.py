"""PNG figures a person reads: training curves and confusion matrices."""
from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_training_curves(histories: dict[str, list[dict]], path: str | os.PathLike) -> None:
    """Loss and validation accuracy per epoch, one line per named phase, phases laid end to end."""
    figure, (loss_axis, acc_axis) = plt.subplots(1, 2, figsize=(10, 4))
    offset = 0
    for label, history in histories.items():
        epochs = [offset + record["epoch"] for record in history]
        loss_axis.plot(epochs, [r["loss"] for r in history], marker="o", label=f"{label} train")
        if history and "val_loss" in history[0]:
            loss_axis.plot(epochs, [r["val_loss"] for r in history], marker="x", linestyle="--", label=f"{label} val")
            acc_axis.plot(epochs, [r["val_accuracy"] for r in history], marker="x", label=label)
        offset += len(history)
    loss_axis.set(xlabel="epoch", ylabel="loss", title="loss")
    acc_axis.set(xlabel="epoch", ylabel="accuracy", title="validation accuracy")
    for axis in (loss_axis, acc_axis):
        axis.grid(alpha=0.3)
        if axis.lines:
            axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_confusion(confusion: list[list[int]], class_names: list[str], path: str | os.PathLike,
                   title: str = "confusion matrix") -> None:
    """Counts of true (rows) against predicted (columns) classes, with counts written in small matrices."""
    matrix = np.asarray(confusion)
    size = max(4.0, 0.45 * len(class_names) + 2)
    figure, axis = plt.subplots(figsize=(size, size))
    image = axis.imshow(matrix, cmap="Blues")
    ticks = np.arange(len(class_names))
    axis.set_xticks(ticks, class_names, rotation=90 if len(class_names) > 10 else 0)
    axis.set_yticks(ticks, class_names)
    axis.set(xlabel="predicted", ylabel="true", title=title)
    if len(class_names) <= 20:
        threshold = matrix.max() / 2 if matrix.size else 0
        for (row, col), count in np.ndenumerate(matrix):
            axis.text(col, row, str(count), ha="center", va="center", fontsize=8,
                      color="white" if count > threshold else "black")
    figure.colorbar(image, ax=axis, fraction=0.046)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
