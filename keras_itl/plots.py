"""PNG figures a person reads: training curves and confusion matrices."""
from __future__ import annotations

import os
from typing import BinaryIO

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _save(figure, path: str | os.PathLike) -> None:
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


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
    _save(figure, path)


MAX_CONFUSION_INCHES = 16.0  # 1,600 pixels at the 100 dpi of every figure here


def plot_confusion(confusion: list[list[int]], class_names: list[str], path: str | os.PathLike,
                   title: str = "confusion matrix") -> None:
    """Counts of true (rows) against predicted (columns) classes, with counts written in small matrices.

    The figure grows with the class count up to MAX_CONFUSION_INCHES a side, the tick labels shrinking
    to fit beyond that: uncapped, a 100-class matrix was a 4,700-pixel square PNG that took seconds to
    render and is no easier to read than a 1,600-pixel one.
    """
    matrix = np.asarray(confusion)
    size = min(MAX_CONFUSION_INCHES, max(4.0, 0.45 * len(class_names) + 2))
    figure, axis = plt.subplots(figsize=(size, size))
    image = axis.imshow(matrix, cmap="Blues")
    ticks = np.arange(len(class_names))
    # about 0.8 of each tick's share of the axis (~0.8 of the figure), in points, at most the default 10
    label_size = min(10.0, 0.8 * 0.8 * size * 72 / max(len(class_names), 1))
    axis.set_xticks(ticks, class_names, rotation=90 if len(class_names) > 10 else 0, fontsize=label_size)
    axis.set_yticks(ticks, class_names, fontsize=label_size)
    axis.set(xlabel="predicted", ylabel="true", title=title)
    if len(class_names) <= 20:
        threshold = matrix.max() / 2 if matrix.size else 0
        for (row, col), count in np.ndenumerate(matrix):
            axis.text(col, row, str(count), ha="center", va="center", fontsize=8,
                      color="white" if count > threshold else "black")
    figure.colorbar(image, ax=axis, fraction=0.046)
    _save(figure, path)


def plot_influence_histogram(deltas: np.ndarray, dropped: np.ndarray, path: str | os.PathLike) -> None:
    """Histogram of predicted validation-loss changes, dropped instances in their own colour, cut marked."""
    figure, axis = plt.subplots(figsize=(8, 4))
    bins = np.histogram_bin_edges(deltas, bins=min(60, max(10, len(deltas) // 5)))
    axis.hist(deltas[~dropped], bins=bins, color="tab:blue", label=f"kept ({int((~dropped).sum())})")
    axis.hist(deltas[dropped], bins=bins, color="tab:red", label=f"dropped ({int(dropped.sum())})")
    if dropped.any():
        cut = float(deltas[dropped].max())
        axis.axvline(cut, color="black", linestyle="--", label=f"cut {cut:.2e}")
    axis.axvline(0.0, color="grey", linewidth=0.8)
    axis.set(xlabel="predicted change in validation loss if removed (negative = removal helps)",
             ylabel="training instances", title="influence of target training instances")
    axis.legend()
    _save(figure, path)


def plot_image_grid(images: np.ndarray, titles: list[str], path: str | os.PathLike, columns: int = 8) -> None:
    """Images (uint8, HxWx1 or HxWx3) in a grid, each with a short title above it.

    The grid is one picture on one axes: laying out a subplot per image took about a second a figure.
    Pixels show on the fixed 0-255 scale (no per-image contrast stretch), as the model sees them.
    """
    rows = max(1, -(-len(images) // columns))
    figure, axis = plt.subplots(figsize=(columns * 1.6, rows * 1.9))
    axis.axis("off")
    if not len(images):
        axis.text(0.5, 0.5, "nothing to show", ha="center", va="center")
        _save(figure, path)
        return
    height, width, channels = images.shape[1:]
    # each cell is 1.6 x 1.9 inches like the figure's share, the image 1.2 inches wide at its bottom, a title above
    cell_width, cell_height = round(width * 1.6 / 1.2), round(height * 1.9 / 1.2)
    canvas = np.full((rows * cell_height, columns * cell_width, channels), 255, dtype=np.uint8)
    for index, (image, title) in enumerate(zip(images, titles)):
        top = (index // columns) * cell_height + cell_height - height
        left = (index % columns) * cell_width + (cell_width - width) // 2
        canvas[top:top + height, left:left + width] = image
        axis.text(left + width / 2, top - 0.5, title, fontsize=7, ha="center", va="bottom")
    axis.imshow(canvas[..., 0] if channels == 1 else canvas, cmap="gray" if channels == 1 else None, vmin=0, vmax=255)
    _save(figure, path)


def plot_loo_scatter(predicted: list[float], actual: list[float], pearson: float, spearman: float,
                     path: str | os.PathLike) -> None:
    """Predicted against retrained validation-loss changes, with the y = x line."""
    figure, axis = plt.subplots(figsize=(5, 5))
    axis.scatter(actual, predicted, s=18)
    low, high = min(min(predicted), min(actual)), max(max(predicted), max(actual))
    axis.plot([low, high], [low, high], color="grey", linestyle="--", linewidth=0.8)
    axis.set(xlabel="actual change in validation loss (retrained)", ylabel="predicted change (influence)",
             title=f"leave-one-out check: Pearson {pearson:.3f}, Spearman {spearman:.3f}")
    axis.grid(alpha=0.3)
    _save(figure, path)


def plot_validation_accuracy(curves: dict[str, list[float]], path: str | os.PathLike) -> None:
    """Validation accuracy per training epoch, one line per method, all starting at epoch 1."""
    figure, axis = plt.subplots(figsize=(7, 4))
    for label, accuracies in curves.items():
        axis.plot(range(1, len(accuracies) + 1), accuracies, marker="o", label=label)
    axis.set(xlabel="epoch (all phases of the final model's training)", ylabel="validation accuracy",
             title="validation accuracy per epoch")
    axis.grid(alpha=0.3)
    if axis.lines:
        axis.legend()
    _save(figure, path)


def plot_influence_vs_loss(losses: np.ndarray, deltas: np.ndarray, dropped: np.ndarray, flipped: np.ndarray,
                           path: str | os.PathLike | BinaryIO) -> None:
    """Each training instance's predicted change in validation loss against its training loss: dropped ones in
    their own colour, deliberately flipped labels ringed (a mislabelled instance tends to sit at high loss)."""
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for chosen, colour, label in ((~dropped, "tab:blue", "kept"), (dropped, "tab:red", "dropped")):
        axis.scatter(losses[chosen], deltas[chosen], s=10, color=colour, label=f"{label} ({int(chosen.sum())})")
    if flipped.any():
        axis.scatter(losses[flipped], deltas[flipped], s=40, facecolors="none", edgecolors="black", linewidths=0.8,
                     label=f"flipped label ({int(flipped.sum())})")
    axis.axhline(0.0, color="grey", linewidth=0.8)
    axis.set(xlabel="training loss (warm-up model)", ylabel="predicted change in validation loss if removed",
             title="influence against training loss")
    axis.grid(alpha=0.3)
    axis.legend()
    _save(figure, path)
