"""lib.plots: the figures draw what they are given, in the Okabe-Ito palette."""

import matplotlib.colors as mcolors
import matplotlib.pyplot as plt
import pytest
import torch

from lib import plots

RUN_A = [{"epoch": 1, "val_acc": 0.2, "train_acc": 0.3}, {"epoch": 2, "val_acc": 0.4, "train_acc": 0.5}]
RUN_B = [{"epoch": 1, "val_acc": 0.1, "train_acc": 0.2}, {"epoch": 2, "val_acc": 0.3, "train_acc": 0.6},
         {"epoch": 3, "val_acc": 0.35, "train_acc": 0.7}]


def same_colour(a, b) -> bool:
    return mcolors.to_hex(a).lower() == mcolors.to_hex(b).lower()


def test_curves_one_line_per_run_in_okabe_ito():
    fig = plots.curves({"a": RUN_A, "b": RUN_B}, title="two runs")
    ax = fig.axes[0]
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == ["a", "b"]
    assert list(lines[1].get_ydata()) == pytest.approx([10, 30, 35])  # accuracies in percent
    assert same_colour(lines[0].get_color(), plots.OKABE_ITO[0]) and same_colour(lines[1].get_color(),
                                                                                  plots.OKABE_ITO[1])
    assert ax.get_ylabel() == "validation accuracy (%)" and ax.get_title() == "two runs"
    plt.close(fig)


def test_curves_other_metric_and_errors():
    fig = plots.curves({"a": RUN_A}, metric="train_acc")
    assert list(fig.axes[0].get_lines()[0].get_ydata()) == pytest.approx([30, 50])
    plt.close(fig)
    with pytest.raises(ValueError, match="run 'a' has no 'val_loss' per epoch"):
        plots.curves({"a": RUN_A}, metric="val_loss")
    with pytest.raises(ValueError, match="at least one run"):
        plots.curves({})


def test_training_curves_without_validation():
    history = [{"epoch": e, "train_loss": 1 / e, "train_acc": 0.1 * e, "val_loss": None, "val_acc": None}
               for e in (1, 2)]
    fig = plots.training_curves(history)
    assert [len(ax.get_lines()) for ax in fig.axes] == [1, 1]  # training only
    assert same_colour(fig.axes[0].get_lines()[0].get_color(), plots.TRAINING)
    plt.close(fig)


def test_confusion_heatmap_and_palette():
    cm = torch.tensor([[3, 1], [0, 4]])
    fig = plots.confusion_heatmap(cm, ["cat", "dog"])
    image = fig.axes[0].get_images()[0].get_array()
    assert image[0, 0] == pytest.approx(0.75) and image[1, 1] == pytest.approx(1.0)  # rows sum to 1
    plt.close(fig)
    assert not hasattr(plots, "confusion_matrix")  # the counts are lib.metrics.confusion_matrix
    assert len(set(plots.OKABE_ITO)) == 7 and plots.WRONG in plots.OKABE_ITO
