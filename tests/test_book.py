"""lib.book: the notebook helpers."""

import IPython.display

from lib import book


def test_show_table_escapes_and_orders_columns(monkeypatch):
    shown = []
    monkeypatch.setattr(IPython.display, "display", shown.append)
    book.show_table([{"model": "<b>cnn</b>", "acc": 0.5}, {"model": "resnet", "acc": 0.75}],
                    {"acc": "accuracy", "model": "model"})
    html = shown[0].data
    assert html.index("<th>accuracy</th>") < html.index("<th>model</th>")
    assert "&lt;b&gt;cnn&lt;/b&gt;" in html and "<td>0.75</td>" in html


def test_show_table_default_headers(monkeypatch):
    shown = []
    monkeypatch.setattr(IPython.display, "display", shown.append)
    book.show_table([{"a": 1, "b": 2}])
    assert "<th>a</th><th>b</th>" in shown[0].data


def test_glue_without_display_is_silent(capsys):
    book.glue("answer", 42)
    assert "answer" not in capsys.readouterr().out
