"""Figures the chapters share: training curves (of one run or several), image grids and confusion
heat maps.

Introduced in chapter 0; several runs' curves are compared from chapter 3 on, and the confusion
heat map is read in chapters 4 and 5. Every figure draws its colours from OKABE_ITO, a palette that
readers with any common form of colour blindness can tell apart.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

# Okabe and Ito's colour-blind-safe palette (Okabe & Ito 2008, "Color Universal Design"), black
# left out: orange, sky blue, bluish green, yellow, blue, vermillion, reddish purple.
OKABE_ITO = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7")
TRAINING, VALIDATION, WRONG = OKABE_ITO[4], OKABE_ITO[0], OKABE_ITO[5]  # blue, orange, vermillion

METRIC_LABELS = {"val_acc": "validation accuracy (%)", "train_acc": "training accuracy (%)",
                 "val_loss": "validation loss", "train_loss": "training loss", "lr": "learning rate",
                 "images_per_second": "images per second", "seconds": "seconds per epoch"}


def _values(history: list[dict], key: str) -> tuple[list[int], list[float]]:
    """Epochs and values of `key`, skipping epochs without one (no validation split: None)."""
    scale = 100 if key.endswith("_acc") else 1
    pairs = [(row["epoch"], scale * row[key]) for row in history if row.get(key) is not None]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def training_curves(history: list[dict], title: str | None = None):
    """Loss and accuracy per epoch, training against validation (validation left out when a run
    had none). Returns the figure. Chapter 0."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.4), constrained_layout=True)
    for ax, kind, name in ((ax_loss, "loss", "Loss"), (ax_acc, "acc", "Accuracy")):
        for split, label, marker, colour in (("train", "training", "o-", TRAINING),
                                             ("val", "validation", "s-", VALIDATION)):
            epochs, values = _values(history, f"{split}_{kind}")
            if values:
                ax.plot(epochs, values, marker, color=colour, label=label)
        ax.set(xlabel="epoch", ylabel="cross-entropy loss" if kind == "loss" else "accuracy (%)", title=name)
        ax.grid(alpha=0.3)
        ax.legend()
        ax.xaxis.get_major_locator().set_params(integer=True)
    if title:
        fig.suptitle(title)
    return fig


def curves(runs: dict[str, list[dict]], metric: str = "val_acc", title: str | None = None):
    """One metric per epoch for several runs in one figure: `runs` maps a label to a history (the
    rows `fit` returns, or read back from a metrics file), `metric` is a key of those rows
    (accuracies are shown in percent). Colours and markers follow OKABE_ITO, in the order given.
    Returns the figure. Chapter 3 compares two runs with it; chapter 5 several."""
    if not runs:
        raise ValueError("curves needs at least one run: a dict of label -> history")
    fig, ax = plt.subplots(figsize=(6.4, 3.6), constrained_layout=True)
    markers = "os^Dvp*"
    for i, (label, history) in enumerate(runs.items()):
        if history and metric not in history[0]:
            raise ValueError(f"run {label!r} has no {metric!r} per epoch; its rows have: {', '.join(history[0])}")
        epochs, values = _values(history, metric)
        ax.plot(epochs, values, f"{markers[i % len(markers)]}-", color=OKABE_ITO[i % len(OKABE_ITO)], ms=4,
                label=label)
    ax.set(xlabel="epoch", ylabel=METRIC_LABELS.get(metric, metric), title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.xaxis.get_major_locator().set_params(integer=True)
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
    'predicted (true)' and wrong ones are in OKABE_ITO's vermillion. Returns the figure. Chapter 0."""
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
                         color=WRONG if p != t else "black")
        elif labels is not None:
            ax.set_title(_class_name(int(labels[i]), class_names), fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def confusion_heatmap(cm, class_names=None, normalize: bool = True, title: str | None = None):
    """Heat map of a confusion matrix (counts from `lib.metrics.confusion_matrix`; rows: true class,
    columns: predicted). With `normalize`, each row is shown as fractions of that class, so that
    rare and common classes compare. One hue from light to dark (matplotlib's Blues), which reads
    the same in every form of colour blindness. Returns the figure. Chapters 4 and 5."""
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
