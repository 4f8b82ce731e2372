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


def show_table(rows: list[dict], columns: dict[str, str] | None = None) -> None:
    """Display rows (dicts with the same keys) as an HTML table, which the book renders as a table;
    `columns` maps each key to show to its header (default: every key, as its own header).
    Used from chapter 1 on."""
    import html

    from IPython.display import HTML, display

    columns = columns or {key: key for key in rows[0]}
    head = "".join(f"<th>{html.escape(str(title))}</th>" for title in columns.values())
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(row[key]))}</td>" for key in columns) + "</tr>"
                   for row in rows)
    display(HTML(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"))
