"""The student edition: every chapter with its exercises but without their solutions.

The instructor guide ("The student edition") explains it. One command writes it:

    python -m lib.student student            # or: make student

For every notebook in `chapters/` it writes a copy into the output folder in which each
sphinx-exercise `solution` block is removed from the Markdown cells, while every `exercise` block,
every code cell (the hidden self-checks, tagged `remove-cell`, included) and every other line of
prose stays as it was. MyST Markdown pages (`.md`) are treated the same way, and the files the
chapters read (such as `chapters/results/`) are copied, so that the student notebooks run from
the output folder exactly as the originals run from `chapters/`.

The folder gets a README for students and a manifest, `STUDENT_EDITION.json`, listing every
notebook with its exercises and the number of solutions removed. `check_edition` compares an
edition with its sources (no solution left, every exercise present, code unchanged); `write_edition`
runs it before it replaces anything.

Nothing is lost: the output folder must be new, empty, or an earlier student edition (recognised by
its manifest); any other folder is refused. The edition is written to a temporary folder beside the
output and moved into place only when it is complete and checked.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

MANIFEST = "STUDENT_EDITION.json"
SKIP = {".ipynb_checkpoints", "__pycache__", ".pytest_cache", "_build"}

# The opening line of a MyST directive block: a fence of 3+ colons, backticks or tildes, then
# {name} and an optional argument, e.g. ":::{solution} ex-01-top5" or "````{exercise}".
_OPENING = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>:{3,}|`{3,}|~{3,})\{(?P<name>[a-z-]+)\}(?P<arg>.*)$")
_LABEL = re.compile(r"^[ \t]*:label:[ \t]*(?P<label>\S+)")


class StudentError(ValueError):
    """The student edition cannot be written (a bad folder, a malformed block). One-line message."""


@dataclass
class Block:
    """A directive block found in Markdown: its name, its lines [start, end) and its label."""

    name: str
    start: int
    end: int
    label: str | None


def _closes(line: str, fence: str) -> bool:
    """True when `line` closes a block opened with `fence` (the same character, at least as many)."""
    stripped = line.strip()
    return len(stripped) >= len(fence) and set(stripped) == {fence[0]}


def blocks(markdown: str, where: str = "markdown") -> list[Block]:
    """The top-level directive blocks of `markdown` (a cell or a page), in order.

    A block runs from its opening fence to the first line that closes it (MyST's rule: the same
    fence character, at least as many times, nothing else on the line); a block never closed is an
    error rather than a block that silently runs to the end of the text.
    """
    lines = markdown.split("\n")
    found, i = [], 0
    while i < len(lines):
        match = _OPENING.match(lines[i])
        if not match:
            i += 1
            continue
        fence, name = match["fence"], match["name"]
        end = next((j for j in range(i + 1, len(lines)) if _closes(lines[j], fence)), None)
        if end is None:
            raise StudentError(f"{where}: the {{{name}}} block opened on line {i + 1} is never closed "
                               f"(a line of {fence} is missing)")
        label = next((m["label"] for m in map(_LABEL.match, lines[i + 1:end]) if m), None)
        found.append(Block(name, i, end + 1, label))
        i = end + 1
    return found


def exercise_labels(markdown: str, where: str = "markdown") -> list[str]:
    """Labels of the exercise blocks in `markdown` (an exercise without a label counts as '?')."""
    return [b.label or "?" for b in blocks(markdown, where) if b.name in ("exercise", "exercise-start")]


def count_solutions(markdown: str, where: str = "markdown") -> int:
    """Number of solution blocks (`solution`, or gated `solution-start`) in `markdown`."""
    return sum(b.name in ("solution", "solution-start") for b in blocks(markdown, where))


def strip_solutions(markdown: str, where: str = "markdown") -> tuple[str, int]:
    """`markdown` without its solution blocks, and how many were removed.

    Removes `{solution}` blocks and gated `{solution-start}` ... `{solution-end}` pairs, with the
    blank line that followed each, and keeps every other line unchanged.
    """
    lines = markdown.split("\n")
    found = blocks(markdown, where)
    drop, removed, k = set(), 0, 0
    while k < len(found):
        block = found[k]
        if block.name == "solution":
            span = range(block.start, block.end)
        elif block.name == "solution-start":
            end = next((b for b in found[k + 1:] if b.name == "solution-end"), None)
            if end is None:
                raise StudentError(f"{where}: the {{solution-start}} on line {block.start + 1} has no "
                                   "{solution-end}")
            span = range(block.start, end.end)
            k = found.index(end)
        else:
            k += 1
            continue
        drop.update(span)
        if span.stop < len(lines) and not lines[span.stop].strip():
            drop.add(span.stop)  # the blank line after the block
        removed += 1
        k += 1
    kept = [line for i, line in enumerate(lines) if i not in drop]
    while kept and not kept[-1].strip():
        kept.pop()
    return "\n".join(kept), removed


# ---------------------------------------------------------------------------------------------
# Notebooks and pages


def _source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def _read_notebook(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise StudentError(f"{path} is not a readable notebook ({error})") from None


def student_notebook(notebook: dict, where: str = "notebook") -> tuple[dict, dict]:
    """A copy of `notebook` without solutions, and a summary: its exercise labels and the number of
    solutions removed. Markdown cells left empty are dropped; code cells are kept unchanged."""
    cells, labels, removed = [], [], 0
    for index, cell in enumerate(notebook.get("cells", [])):
        if cell.get("cell_type") != "markdown":
            cells.append(cell)
            continue
        text = _source(cell)
        here = f"{where}, cell {index}"
        labels += exercise_labels(text, here)
        stripped, n = strip_solutions(text, here)
        removed += n
        if n == 0:
            cells.append(cell)
        elif stripped.strip():
            cells.append({**cell, "source": stripped})
    metadata = {**notebook.get("metadata", {}), "student_edition": {"solutions_removed": removed}}
    return {**notebook, "cells": cells, "metadata": metadata}, {"exercises": labels, "solutions_removed": removed}


def student_page(text: str, where: str = "page") -> tuple[str, dict]:
    """A MyST Markdown page without solutions, and the same summary as `student_notebook`."""
    labels = exercise_labels(text, where)
    stripped, removed = strip_solutions(text, where)
    return stripped + "\n", {"exercises": labels, "solutions_removed": removed}


# ---------------------------------------------------------------------------------------------
# The whole edition


README = """# Student edition

These are the chapters of the course "ImageNet and the Progress of AI" with every exercise and
without the solutions. Everything else is as in the book: the same code, the same parameters and
the same hidden self-checks (cells tagged `remove-cell`, which assert the claims of the text and
stop with an error if a claim no longer holds).

Run a chapter in JupyterLab from this folder, or on Google Colab (its first cell installs the
course's `lib` package there). Each chapter runs in about a minute on a laptop CPU.

Written by `python -m lib.student`; `STUDENT_EDITION.json` lists the exercises of every chapter.
Do not edit this folder by hand: writing the edition again replaces it.
"""


def _is_edition(folder: Path) -> bool:
    try:
        return json.loads((folder / MANIFEST).read_text(encoding="utf-8")).get("generated_by") == "lib.student"
    except (OSError, ValueError, AttributeError):
        return False


def _check_folders(src: Path, out: Path) -> None:
    if not src.is_dir():
        raise StudentError(f"chapter folder {src} does not exist")
    if not sorted(src.glob("*.ipynb")):
        raise StudentError(f"{src} holds no notebooks (*.ipynb): pass the course's chapters/ folder")
    src_r, out_r = src.resolve(), out.resolve()
    if out_r == src_r or src_r in out_r.parents or out_r in src_r.parents:
        raise StudentError(f"the output folder {out} must lie outside {src} and must not contain it")
    if out.exists() and not out.is_dir():
        raise StudentError(f"{out} exists and is not a folder; choose another output folder")
    if out.is_dir() and any(out.iterdir()) and not _is_edition(out):
        raise StudentError(f"{out} is not empty and is not a student edition (no {MANIFEST}); "
                           "choose a new or empty folder, nothing was written")


def _write_into(src: Path, dest: Path) -> dict:
    entries = {}
    for path in sorted(src.iterdir()):
        if path.name in SKIP or path.name.startswith("."):
            continue
        target = dest / path.name
        if path.suffix == ".ipynb":
            notebook, summary = student_notebook(_read_notebook(path), path.name)
            target.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
            entries[path.name] = summary
        elif path.suffix == ".md":
            text, summary = student_page(path.read_text(encoding="utf-8"), path.name)
            target.write_text(text, encoding="utf-8")
            entries[path.name] = summary
        elif path.is_dir():
            shutil.copytree(path, target, ignore=shutil.ignore_patterns(*SKIP))
        else:
            shutil.copy2(path, target)
    return entries


def check_edition(out_dir: str | Path, src_dir: str | Path = "chapters") -> list[str]:
    """Compare a student edition with its sources; return the problems found (empty: all good).
    Explained in the instructor guide, "The student edition".

    Checks that every source notebook and page has its student copy, that no solution block is
    left, that every exercise label of the source is present, and that the code cells are the same,
    in the same order (so the hidden self-checks are all there).
    """
    src, out = Path(src_dir), Path(out_dir)
    problems = []
    for path in sorted(list(src.glob("*.ipynb")) + list(src.glob("*.md"))):
        copy = out / path.name
        if not copy.is_file():
            problems.append(f"{path.name}: missing from the student edition")
            continue
        if path.suffix == ".ipynb":
            original, student = _read_notebook(path), _read_notebook(copy)
            src_md = "\n".join(_source(c) for c in original["cells"] if c.get("cell_type") == "markdown")
            out_md = [_source(c) for c in student["cells"] if c.get("cell_type") == "markdown"]
            code = [_source(c) for c in original["cells"] if c.get("cell_type") == "code"]
            student_code = [_source(c) for c in student["cells"] if c.get("cell_type") == "code"]
            if code != student_code:
                problems.append(f"{path.name}: the code cells differ from the source")
            pieces = [(f"{path.name}, cell {i}", text) for i, text in enumerate(out_md)]
        else:
            src_md = path.read_text(encoding="utf-8")
            pieces = [(path.name, copy.read_text(encoding="utf-8"))]
        left = sum(count_solutions(text, where) for where, text in pieces)
        if left:
            problems.append(f"{path.name}: {left} solution block(s) left")
        if any(re.search(r"\{solution(-start|-end)?\}", text) for _, text in pieces):
            problems.append(f"{path.name}: a solution directive is left in the text")
        have = [label for where, text in pieces for label in exercise_labels(text, where)]
        missing = [label for label in exercise_labels(src_md, path.name) if label not in have]
        if missing:
            problems.append(f"{path.name}: exercise(s) missing: {', '.join(missing)}")
    return problems


def write_edition(out_dir: str | Path, src_dir: str | Path = "chapters") -> dict:
    """Write the student edition of the chapters in `src_dir` into `out_dir`; return its manifest.
    Explained in the instructor guide, "The student edition"; `make student` calls it.

    Raises StudentError, before anything is written, when `out_dir` is a non-empty folder that is
    not an earlier student edition, or lies inside `src_dir`; and, without touching `out_dir`, when
    a block is malformed or the finished edition fails `check_edition`.
    """
    src, out = Path(src_dir), Path(out_dir)
    _check_folders(src, out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        entries = _write_into(src, staging)
        manifest = {"generated_by": "lib.student", "source": str(src),
                    "notebooks": entries,
                    "exercises": sum(len(e["exercises"]) for e in entries.values()),
                    "solutions_removed": sum(e["solutions_removed"] for e in entries.values())}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
        (staging / "README.md").write_text(README, encoding="utf-8")
        problems = check_edition(staging, src)
        if problems:
            raise StudentError(f"the student edition failed its check: {problems[0]}"
                               + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
        if out.exists():  # an empty folder or an earlier edition: swap the new one in
            old = out.with_name(f".{out.name}-old")
            shutil.rmtree(old, ignore_errors=True)
            out.rename(old)
            try:
                staging.rename(out)
            except OSError:
                old.rename(out)  # put the earlier edition back
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


# ---------------------------------------------------------------------------------------------
# Command line


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not argparse's usage block
        self.exit(2, f"error: {message} (see python -m lib.student --help)\n")


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="python -m lib.student", description="Write the student edition: every chapter "
                     "notebook with its exercises and without their solutions, ready to hand out.")
    parser.add_argument("out", help="output folder: new, empty, or an earlier student edition (replaced)")
    parser.add_argument("--chapters", default="chapters", help="folder of the chapter notebooks (default: chapters)")
    args = parser.parse_args(argv)
    try:
        manifest = write_edition(args.out, args.chapters)
    except StudentError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    notebooks = sum(name.endswith(".ipynb") for name in manifest["notebooks"])
    print(f"wrote {notebooks} notebooks to {args.out}: {manifest['exercises']} exercises kept, "
          f"{manifest['solutions_removed']} solutions removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
