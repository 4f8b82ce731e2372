"""Helpers for the chapters' notebooks. Introduced in chapter 0.

`glue` records a value for the book's prose (myst-nb's `glue`) so that no number in the text is
typed by hand. Where myst-nb is not installed (Colab, a plain JupyterLab) it stores nothing and,
with `display=True`, prints the value, so the notebook runs the same everywhere.
"""

from __future__ import annotations

import sys


def glue(name: str, value, display: bool = False) -> None:
    """Store `value` under `name` for `{glue:text}` roles in the book's markdown cells."""
    try:
        from myst_nb import glue as myst_glue
    except ImportError:
        if display:
            print(f"{name} = {value!r}")
        return
    myst_glue(name, value, display=display)


def in_colab() -> bool:
    """True when running inside Google Colab."""
    return "google.colab" in sys.modules
