"""Every chapter follows the course's rules; chapter 0 runs under papermill with new parameters.

(nbval executes every notebook separately: `pytest --nbval-lax chapters`.)
"""

import json
import subprocess
import sys

import nbformat
import pytest
import yaml

from lib.params import PARAMETERS_MARKER

from .conftest import REPO

NOTEBOOKS = sorted((REPO / "chapters").glob("*.ipynb"))
CONFIG = yaml.safe_load((REPO / "_config.yml").read_text())


def read(path):
    return nbformat.read(path, as_version=4)


def toc_files():
    """Every file in _toc.yml, chapters and their sections alike."""
    def walk(entries):
        for entry in entries:
            yield entry["file"]
            yield from walk(entry.get("sections", []))

    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    return set(walk(c for part in toc["parts"] for c in part["chapters"]))


def test_there_are_chapters():
    assert NOTEBOOKS, "no notebooks in chapters/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_colab_setup_cell_first(path):
    """Chapter 0's setup cell opens every chapter, unchanged (tests/test_colab.py runs it)."""
    first = read(path).cells[0]
    repo = CONFIG["repository"]
    assert first.cell_type == "code" and '"google.colab" in sys.modules' in first.source
    for part in (f'"{repo["url"]}"', f"--branch={repo['branch']}"):
        assert part in first.source, f"the setup cell must fetch {part} (the repository set in _config.yml)"
    assert first.source == read(NOTEBOOKS[0]).cells[0].source, "copy chapter 0's setup cell exactly"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_parameters_cell_then_check(path):
    cells = [c for c in read(path).cells if c.cell_type == "code"]
    tagged = [i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one code cell must be tagged 'parameters'"
    cell = cells[tagged[0]]
    assert cell.source.startswith(PARAMETERS_MARKER), f"the parameters cell must start with {PARAMETERS_MARKER!r}"
    assert "params.check(globals()" in cells[tagged[0] + 1].source, "the cell after it must call params.check"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs(path):
    for cell in read(path).cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, "strip outputs (nbstripout) before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_structure_for_the_book(path):
    nb = read(path)
    titles = [line for c in nb.cells if c.cell_type == "markdown" for line in prose_lines(c.source)
              if line.startswith("# ")]
    assert len(titles) == 1, f"one '# ' title per chapter, found {titles}"
    assert f"chapters/{path.stem}" in toc_files(), "add the chapter to _toc.yml"
    for cell in nb.cells:
        if cell.cell_type == "code" and "plt.show()" in cell.source:
            alt = cell.metadata.get("mystnb", {}).get("image", {}).get("alt", "")
            assert len(alt) > 20, f"figure cell without alt text:\n{cell.source[:200]}"


def prose_lines(markdown: str):
    """The lines of a Markdown cell outside code fences (a '# comment' in a code block is no title)."""
    fence = None
    for line in markdown.splitlines():
        marker = line.lstrip()[:3]
        if marker in ("```", "~~~"):
            fence = None if fence == marker else (fence or marker)
            continue
        if fence is None:
            yield line


def papermill(tmp_path, *args):
    out = tmp_path / "out.ipynb"
    command = [sys.executable, "-m", "papermill", str(REPO / "chapters" / "00_how_this_course_runs.ipynb"), str(out),
               "--cwd", str(tmp_path), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600), out


def test_papermill_with_changed_parameters(tmp_path):
    result, out = papermill(tmp_path, "-p", "n_train", "300", "-p", "epochs", "2", "-p", "lr", "0.003")
    assert result.returncode == 0, result.stderr[-2000:]
    text = json.dumps(read(out))
    assert "n_train=300" in text and "epochs=2" in text and "lr=0.003" in text
    assert "train=300" in text  # the dataset really has the requested size


@pytest.mark.parametrize("args, message", [
    (["-p", "nonsense", "1"], "unknown parameter(s) nonsense"),
    (["-r", "epochs", "three"], "parameter 'epochs' must be int like its default"),
    (["-p", "dataset", "mnist"], "unknown dataset 'mnist'"),
])
def test_papermill_rejects_bad_parameters(tmp_path, args, message):
    result, _ = papermill(tmp_path, *args)
    assert result.returncode != 0 and message in result.stderr + result.stdout
