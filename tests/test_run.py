"""Tests of lib.run: papermill runs and sweeps of a notebook, with parameters checked first.

Most tests use a tiny notebook written into tmp_path (a parameters cell, the check, two glued
values); one runs the start of chapter 5 for real with small settings.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from lib import params, run

ROOT = Path(__file__).resolve().parents[1]
CHAPTER_5 = ROOT / "chapters" / "05_hands_on_project.ipynb"

PARAMETERS = f"""{params.PARAMETERS_MARKER} (papermill -p NAME VALUE overrides them; the next cell checks them)
x = 2  # a whole number
rate = 0.5  # a fraction
name = "a"  # a word
"""


def _write_tiny(path: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                   "language_info": {"name": "python"}}
    cell = nbformat.v4.new_code_cell(PARAMETERS)
    cell.metadata["tags"] = ["parameters"]
    stop = nbformat.v4.new_code_cell("book.glue('double', x * 2)")
    stop.metadata["tags"] = ["stop-here"]
    nb.cells = [
        cell,
        nbformat.v4.new_code_cell("from lib import params\np = params.check(globals())"),
        nbformat.v4.new_code_cell("from lib import book\nbook.glue('label', f'{name}-{rate:.0%}')"),
        stop,
        nbformat.v4.new_code_cell("book.glue('after_stop', 1)"),
    ]
    nbformat.write(nb, path)
    return path


@pytest.fixture
def tiny(tmp_path) -> Path:
    return _write_tiny(tmp_path / "tiny.ipynb")


def test_parse_value_reads_like_papermill():
    assert run.parse_value("3") == 3 and isinstance(run.parse_value("3"), int)
    assert run.parse_value("0.003") == 0.003
    assert run.parse_value("1e-3") == 0.001
    assert run.parse_value("True") is True and run.parse_value("False") is False
    assert run.parse_value("None") is None
    assert run.parse_value("cifar10") == "cifar10"


def test_run_writes_output_and_metrics_and_leaves_source_untouched(tiny, tmp_path):
    before = tiny.read_bytes()
    out = tmp_path / "out"
    record = run.run_notebook(tiny, {"x": 5, "rate": 1}, out)
    assert tiny.read_bytes() == before
    assert (out / "tiny.ipynb").is_file()
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["metrics"] == {"double": 10, "label": "a-100%", "after_stop": 1} == record["metrics"]
    assert saved["parameters"] == {"x": 5, "rate": 1.0, "name": "a"}
    assert saved["seconds"] > 0 and "torch_version" in saved["versions"] and saved["error"] is None


def test_until_tag_stops_after_the_tagged_cell(tiny, tmp_path):
    record = run.run_notebook(tiny, {}, tmp_path / "out", until_tag="stop-here")
    assert record["metrics"] == {"label": "a-50%", "double": 4}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["metrics.json", "tiny.ipynb"]


def test_sweep_has_one_row_per_combination(tiny, tmp_path):
    out = tmp_path / "sweep"
    rows = run.sweep(tiny, {"x": [1, 3], "rate": [0.25, 0.75]}, {"name": "b"}, out, until_tag="stop-here", log=None)
    assert [(r["x"], r["rate"]) for r in rows] == [(1, 0.25), (1, 0.75), (3, 0.25), (3, 0.75)]
    assert [r["double"] for r in rows] == [2, 2, 6, 6]
    assert [r["label"] for r in rows] == ["b-25%", "b-75%", "b-25%", "b-75%"]
    with open(out / "sweep.csv", newline="") as file:
        table = list(csv.DictReader(file))
    assert len(table) == 4 and {"x", "rate", "name", "double", "label", "seconds"} <= set(table[0])
    assert len(json.loads((out / "sweep.json").read_text())) == 4
    assert len([p for p in out.iterdir() if p.is_dir()]) == 4


@pytest.mark.parametrize("args, message", [
    (["-p", "nonsense", "1"], "unknown parameter(s) nonsense"),
    (["-p", "x", "abc"], "parameter 'x' must be int"),
    (["-p", "rate", "fast"], "parameter 'rate' must be float"),
    (["--grid", "x=1,2.5"], "parameter 'x' must be int"),
    (["--grid", "nonsense=1,2"], "unknown parameter(s) nonsense"),
])
def test_bad_parameters_are_refused_before_anything_runs(tiny, tmp_path, capsys, args, message):
    out = tmp_path / "never"
    assert run.main([str(tiny), *args, "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1
    assert not out.exists()


def test_missing_notebook_is_refused(tmp_path, capsys):
    assert run.main([str(tmp_path / "nowhere.ipynb")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_command_line_exit_code_2(tiny, tmp_path):
    done = subprocess.run([sys.executable, "-m", "lib.run", str(tiny), "-p", "nonsense", "1"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.startswith("error: unknown parameter(s) nonsense") and done.stderr.count("\n") == 1


@pytest.mark.skipif(not CHAPTER_5.is_file(), reason="chapter 5 is not there")
def test_chapter_5_runs_with_small_parameters(tmp_path):
    record = run.run_notebook(CHAPTER_5, {"n_train": 500, "epochs": 1, "lr": 0.003}, tmp_path / "ch5",
                              until_tag="end-of-baseline")
    assert record["parameters"]["n_train"] == 500 and record["parameters"]["lr"] == 0.003
    assert 0 <= record["metrics"]["baseline_val_acc_value"] <= 1


@pytest.mark.parametrize("text", ["garbage", "{}", '{"cells": 3}'])
def test_damaged_notebook_is_refused_in_one_line(tmp_path, text):
    path = tmp_path / "bad.ipynb"
    path.write_text(text)
    with pytest.raises(run.RunError) as caught:
        run.notebook_defaults(path)
    assert "is not a readable notebook" in str(caught.value) and "\n" not in str(caught.value)
