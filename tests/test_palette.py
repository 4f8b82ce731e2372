"""Figures readable by colour-blind readers: lib.plots' palette, and the figures drawn in it.

The readers' view is simulated with colorspacious (Machado, Oliveira and Fernandes 2009, full
dichromacy) and distances are measured in CAM02-UCS, where about 1 is a just-noticeable difference.
"""

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
from colorspacious import cspace_convert, deltaE
from matplotlib.colors import to_hex, to_rgb

from lib import plots

DEFICIENCIES = ("deuteranomaly", "protanomaly", "tritanomaly")  # at severity 100: the three dichromacies
MIN_DISTANCE = 10.0  # Okabe-Ito keeps about 11 or more between any two colours; matplotlib's tab10 falls to 1.6


def simulate(colours, deficiency: str) -> np.ndarray:
    """sRGB colours as a reader with `deficiency` (at full severity) sees them."""
    rgb = np.array([to_rgb(colour) for colour in colours])
    space = {"name": "sRGB1+CVD", "cvd_type": deficiency, "severity": 100}
    return np.clip(cspace_convert(rgb, space, "sRGB1"), 0, 1)


def closest_pair(colours, deficiency: str) -> tuple[float, str, str]:
    seen = simulate(colours, deficiency)
    return min((float(deltaE(seen[i], seen[j], input_space="sRGB1")), colours[i], colours[j])
               for i in range(len(colours)) for j in range(i + 1, len(colours)))


def palette() -> set[str]:
    return {to_hex(colour) for colour in plots.OKABE_ITO}


def history(epochs: int = 3) -> list[dict]:
    return [{"epoch": e, "train_loss": 2.0 / e, "val_loss": 2.1 / e, "train_acc": 0.2 * e, "val_acc": 0.19 * e}
            for e in range(1, epochs + 1)]


@pytest.mark.parametrize("deficiency", DEFICIENCIES)
def test_palette_colours_stay_apart_for_colour_blind_readers(deficiency):
    distance, first, second = closest_pair(list(plots.OKABE_ITO), deficiency)
    assert distance >= MIN_DISTANCE, f"{first} and {second} look alike under {deficiency} (distance {distance:.1f})"


def test_the_check_tells_a_palette_that_is_not_safe():
    tab10 = [to_hex(colour) for colour in matplotlib.colormaps["tab10"].colors]
    assert min(closest_pair(tab10, deficiency)[0] for deficiency in DEFICIENCIES) < MIN_DISTANCE


def test_training_curves_draw_in_the_palette():
    fig = plots.training_curves(history())
    colours = {to_hex(line.get_color()) for ax in fig.axes for line in ax.lines}
    plt.close(fig)
    assert colours and colours <= palette(), f"colours outside the palette: {colours - palette()}"
    assert len(colours) == 2  # training and validation told apart


def test_several_runs_take_distinct_palette_colours():
    runs = {f"run {i}": history() for i in range(len(plots.OKABE_ITO))}
    fig = plots.curves(runs)
    colours = [to_hex(line.get_color()) for line in fig.axes[0].lines]
    plt.close(fig)
    assert set(colours) == palette() and len(colours) == len(set(colours))


def test_wrong_predictions_are_marked_in_the_palette():
    images = np.zeros((2, 3, 8, 8), dtype=np.uint8)
    fig = plots.image_grid(images, labels=[0, 1], class_names=["a", "b"], predictions=[0, 0], ncols=2)
    titles = [ax.title.get_color() for ax in fig.axes[:2]]
    plt.close(fig)
    assert to_hex(titles[0]) == "#000000" and to_hex(titles[1]) in palette()
