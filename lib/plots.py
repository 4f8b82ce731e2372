"""Figures the chapters share: training curves, image grids and confusion matrices.

Introduced in chapter 0; the confusion matrix is read in chapters 4 and 5.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch


def training_curves(history: list[dict], title: str | None = None):
    """Loss and accuracy per epoch, training against validation. Returns the figure."""
    epochs = [row["epoch"] for row in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.4), constrained_layout=True)
    ax_loss.plot(epochs, [r["train_loss"] for r in history], "o-", label="training")
    ax_loss.plot(epochs, [r["val_loss"] for r in history], "s-", label="validation")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="Loss")
    ax_acc.plot(epochs, [100 * r["train_acc"] for r in history], "o-", label="training")
    ax_acc.plot(epochs, [100 * r["val_acc"] for r in history], "s-", label="validation")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
        ax.xaxis.get_major_locator().set_params(integer=True)
    if title:
        fig.suptitle(title)
    return fig


def _to_display(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """(C, H, W) uint8 or float image -> (H, W, C) or (H, W) array for imshow."""
    array = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if array.ndim == 3 and array.shape[0] in (1, 3):
        array = array.transpose(1, 2, 0)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.dtype != np.uint8:
        low, high = array.min(), array.max()
        array = (array - low) / (high - low + 1e-12)
    return array


def _class_name(k: int, class_names) -> str:
    return class_names[k] if class_names is not None else str(k)


def image_grid(images, labels=None, class_names=None, predictions=None, ncols: int = 8, size: float = 1.3,
               title: str | None = None):
    """Show images in a grid with their class names; with `predictions`, each title reads
    'predicted (true)' and wrong ones are red. Returns the figure."""
    n = len(images)
    nrows = max(1, -(-n // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * size, nrows * (size + 0.25)), squeeze=False,
                             constrained_layout=True)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        shown = _to_display(images[i])
        ax.imshow(shown, cmap="gray" if shown.ndim == 2 else None, interpolation="nearest")
        if predictions is not None and labels is not None:
            p, t = int(predictions[i]), int(labels[i])
            ax.set_title(f"{_class_name(p, class_names)}\n({_class_name(t, class_names)})", fontsize=8,
                         color="tab:red" if p != t else "black")
        elif labels is not None:
            ax.set_title(_class_name(int(labels[i]), class_names), fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def confusion_matrix(cm, class_names=None, normalize: bool = True, title: str | None = None):
    """Heat map of a confusion matrix (rows: true class, columns: predicted). With `normalize`, each
    row is shown as fractions of that class, so that rare and common classes compare. Returns the figure."""
    counts = np.asarray(cm.cpu() if isinstance(cm, torch.Tensor) else cm, dtype=float)
    shown = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1) if normalize else counts
    k = len(counts)
    names = class_names if class_names is not None else [str(i) for i in range(k)]
    side = max(4.0, 0.45 * k + 1.5)
    fig, ax = plt.subplots(figsize=(side + 1, side), constrained_layout=True)
    im = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of the true class" if normalize else "count")
    ax.set_xticks(range(k), names, rotation=60, ha="right")
    ax.set_yticks(range(k), names)
    ax.set(xlabel="predicted class", ylabel="true class", title=title or "Confusion matrix")
    if k <= 15:
        for i in range(k):
            for j in range(k):
                value = f"{shown[i, j]:.2f}" if normalize else f"{int(counts[i, j])}"
                ax.text(j, i, value, ha="center", va="center", fontsize=7,
                        color="white" if shown[i, j] > 0.6 * shown.max() else "black")
    return fig
