"""The student edition (lib.student): solutions removed, exercises and code kept, and it still runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from lib import run, student

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = ROOT / "chapters"
SMALL_CHAPTER = "07_tools_and_resources.ipynb"  # executed from the student edition below

PAGE = """Some prose.

:::{exercise}
:label: ex-a

Compute something.
:::

:::{solution} ex-a
:class: dropdown

```python
print("the answer")
```

The answer is 42.
:::

::::{exercise}
:label: ex-b

A longer one, with a note inside.

:::{note}
A hint.
:::
::::

````{solution} ex-b
:class: dropdown

```python
print("nested fences")
```
````

```{exercise-start}
:label: ex-c
```

Gated exercise text.

```{exercise-end}
```

```{solution-start} ex-c
:class: dropdown
```

Gated solution text.

```{solution-end}
```

Closing prose."""


def test_strip_removes_every_solution_and_keeps_the_rest():
    text, removed = student.strip_solutions(PAGE)
    assert removed == 3
    assert "answer" not in text and "nested fences" not in text and "Gated solution" not in text
    assert "{solution" not in text
    for kept in ("Some prose.", "Compute something.", "A hint.", "Gated exercise text.", "Closing prose."):
        assert kept in text
    assert student.exercise_labels(text) == ["ex-a", "ex-b", "ex-c"] == student.exercise_labels(PAGE)
    assert student.count_solutions(PAGE) == 3 and student.count_solutions(text) == 0


def test_strip_leaves_text_without_solutions_unchanged():
    text = "# Title\n\n:::{note}\nA note.\n:::\n\n```python\nx = 1\n```"
    assert student.strip_solutions(text) == (text, 0)


def test_unclosed_or_unpaired_blocks_are_errors_not_silent_losses():
    with pytest.raises(student.StudentError, match="never closed"):
        student.strip_solutions(":::{solution} ex-a\nThe answer, and the fence is missing.\n")
    with pytest.raises(student.StudentError, match="no {solution-end}"):
        student.strip_solutions("```{solution-start} ex-a\n```\n\nText without an end.\n")


def test_notebook_cells_emptied_by_the_strip_are_dropped():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(":::{exercise}\n:label: ex-x\nDo it.\n:::"),
                nbformat.v4.new_markdown_cell(":::{solution} ex-x\nDone.\n:::"),
                nbformat.v4.new_code_cell("assert 1 + 1 == 2")]
    copy, summary = student.student_notebook(json.loads(nbformat.writes(nb)))
    assert [c["cell_type"] for c in copy["cells"]] == ["markdown", "code"]
    assert summary == {"exercises": ["ex-x"], "solutions_removed": 1}


@pytest.fixture(scope="module")
def edition(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("edition") / "student"
    student.write_edition(out, CHAPTERS)
    return out


def test_edition_of_the_course_has_every_exercise_and_no_solution(edition):
    assert student.check_edition(edition, CHAPTERS) == []
    sources = sorted(CHAPTERS.glob("*.ipynb"))
    manifest = json.loads((edition / student.MANIFEST).read_text())
    assert sorted(p.name for p in edition.glob("*.ipynb")) == [p.name for p in sources]
    for path in sources:
        original = nbformat.read(path, as_version=4)
        copy = nbformat.read(edition / path.name, as_version=4)
        prose = "\n".join(c.source for c in copy.cells if c.cell_type == "markdown")
        assert "{solution" not in prose, path.name
        labels = [label for c in original.cells if c.cell_type == "markdown"
                  for label in student.exercise_labels(c.source)]
        assert labels, f"{path.name} has no exercises"
        assert manifest["notebooks"][path.name]["exercises"] == labels
        assert manifest["notebooks"][path.name]["solutions_removed"] == sum(
            student.count_solutions(c.source) for c in original.cells if c.cell_type == "markdown")
        hidden = [c.source for c in original.cells if "remove-cell" in c.metadata.get("tags", [])]
        assert hidden == [c.source for c in copy.cells if "remove-cell" in c.metadata.get("tags", [])]
    assert manifest["solutions_removed"] >= manifest["exercises"] > 0
    assert (edition / "README.md").is_file()
    if (CHAPTERS / "results").is_dir():  # the files the chapters read travel with them
        assert sorted(p.name for p in (edition / "results").rglob("*")) == \
            sorted(p.name for p in (CHAPTERS / "results").rglob("*"))


def test_check_edition_finds_a_left_solution_and_a_lost_exercise(edition, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for path in edition.glob("*.ipynb"):
        (broken / path.name).write_text(path.read_text())
    nb = nbformat.read(broken / SMALL_CHAPTER, as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "markdown" and "{exercise}" in c.source)
    label = student.exercise_labels(first.source)[0]
    first.source = first.source.replace("{exercise}", "{note}") + f"\n\n:::{{solution}} {label}\nleaked\n:::"
    nbformat.write(nb, broken / SMALL_CHAPTER)
    problems = " | ".join(student.check_edition(broken, CHAPTERS))
    assert "solution block(s) left" in problems and f"exercise(s) missing: {label}" in problems


def test_a_foreign_folder_is_refused_and_left_untouched(tmp_path):
    out = tmp_path / "my_work"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(student.StudentError, match="not a student edition"):
        student.write_edition(out, CHAPTERS)
    assert [p.name for p in out.iterdir()] == ["notes.txt"] and (out / "notes.txt").read_text() == "keep me"
    with pytest.raises(student.StudentError, match="must lie outside"):
        student.write_edition(CHAPTERS / "student", CHAPTERS)
    with pytest.raises(student.StudentError, match="holds no notebooks"):
        student.write_edition(tmp_path / "out", tmp_path)


def test_an_earlier_edition_is_replaced(edition, tmp_path):
    out = tmp_path / "again"
    student.write_edition(out, CHAPTERS)
    (out / "stale.ipynb").write_text("{}")
    student.write_edition(out, CHAPTERS)
    assert not (out / "stale.ipynb").exists() and student.check_edition(out, CHAPTERS) == []
    assert not list(tmp_path.glob(".again-*")), "the staging folder was left behind"


def test_command_line(tmp_path):
    ok = subprocess.run([sys.executable, "-m", "lib.student", str(tmp_path / "s")], cwd=ROOT,
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and "solutions removed" in ok.stdout
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "x").write_text("")
    bad = subprocess.run([sys.executable, "-m", "lib.student", str(tmp_path / "f")], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and bad.stderr.startswith("error: ")


def test_a_student_notebook_still_runs(edition, tmp_path):
    """Execute one small chapter from the student edition, in the edition's folder, as a student would."""
    record = run.run_notebook(edition / SMALL_CHAPTER, {}, tmp_path / "run", cwd=edition)
    assert record["error"] is None and record["metrics"], "the notebook ran but glued nothing"
