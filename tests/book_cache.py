"""Execute each chapter once: the notebooks nbval runs become the book's execution cache.

`make test` loads this module as a pytest plugin (`pytest --nbval-lax -p tests.book_cache`). Every
notebook whose cells all pass under nbval is written, with the outputs nbval received from the
kernel, into Jupyter Book's execution cache (`_build/.jupyter_cache`, jupyter-cache's format). The
book is built with `execute_notebooks: cache` (`_config.yml`), so `make book` and `make pdf` take
those outputs instead of executing the chapters again.

jupyter-cache matches a notebook by a hash of its code cells; it cannot see the other things a
chapter's outputs depend on. Each cached notebook is therefore tagged with a fingerprint of them
(`lib/`, the data files under `chapters/`, `pyproject.toml`, the installed packages), and the
Makefile calls, around every build:

    python -m tests.book_cache prune   # drop cached notebooks whose fingerprint differs (re-executed)
    python -m tests.book_cache stamp   # tag what the build itself executed with the fingerprint

so that the book never shows outputs of older code.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.metadata
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import nbformat
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
FINGERPRINT_KEY = "inputs"


def cache_path() -> Path:
    """The execution cache the book uses: `execute.cache` in `_config.yml`, else Jupyter Book's default
    (`$BOOK_CACHE` overrides both, for this module's own tests)."""
    if os.environ.get("BOOK_CACHE"):
        return Path(os.environ["BOOK_CACHE"])
    config = yaml.safe_load((REPO / "_config.yml").read_text()) or {}
    configured = (config.get("execute") or {}).get("cache") or "_build/.jupyter_cache"
    return REPO / configured


def _chapter_files() -> list[Path]:
    """The files under chapters/ in git (so that what a chapter writes while it runs does not count)."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "chapters"], cwd=REPO, capture_output=True,
                                check=True).stdout.decode().split("\0")
        return [REPO / name for name in listed if name and (REPO / name).is_file()]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout
        return [p for p in (REPO / "chapters").rglob("*") if p.is_file()]


def _input_files() -> list[Path]:
    """The files besides a notebook's own code that its outputs depend on: lib/, pyproject.toml and the
    data files under chapters/ (not the pages themselves)."""
    files = [REPO / "pyproject.toml"]
    files += [p for p in (REPO / "lib").rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    files += [p for p in _chapter_files() if p.suffix not in (".ipynb", ".md")
              and not {"__pycache__", ".ipynb_checkpoints"} & set(p.parts)]
    return sorted(set(files))


def fingerprint() -> str:
    """A hash of `lib/`, the chapters' data files, `pyproject.toml` and the installed packages' versions."""
    digest = hashlib.sha256()
    for path in _input_files():
        digest.update(path.relative_to(REPO).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    packages = sorted(f"{d.metadata['Name']}=={d.version}" for d in importlib.metadata.distributions())
    digest.update("\n".join(packages).encode())
    return digest.hexdigest()


def _cache():
    from jupyter_cache import get_cache

    return get_cache(str(cache_path()))


def store(path: Path, nb: nbformat.NotebookNode, outputs: list[list], seconds: float, inputs: str) -> None:
    """Put `nb` (as read from `path`) with `outputs` (one list per code cell, in order) into the cache."""
    from jupyter_cache.base import CacheBundleIn

    executed = copy.deepcopy(nb)
    code_cells = [cell for cell in executed.cells if cell.cell_type == "code"]
    if len(code_cells) != len(outputs):
        raise ValueError(f"{path.name}: {len(outputs)} executed cells for {len(code_cells)} code cells")
    for count, (cell, cell_outputs) in enumerate(zip(code_cells, outputs), start=1):
        cell.execution_count = count
        cell.outputs = [nbformat.from_dict(dict(output)) for output in cell_outputs]
        for output in cell.outputs:
            if output.output_type == "execute_result":
                output.execution_count = count
    nbformat.validate(executed)
    _cache().cache_notebook_bundle(
        CacheBundleIn(executed, str(path), data={"execution_seconds": seconds, FINGERPRINT_KEY: inputs}),
        check_validity=True, overwrite=True)


def prune() -> int:
    """Remove cached notebooks executed with other inputs (or untagged); returns how many.

    Also records the inputs before the build (for `stamp`), even when no cache exists yet: a first
    `make book` fills the cache itself, and `make pdf` after it should reuse those outputs."""
    current, stale = fingerprint(), []
    if cache_path().exists():
        cache = _cache()
        stale = [r.pk for r in cache.list_cache_records() if (r.data or {}).get(FINGERPRINT_KEY) != current]
        for pk in stale:
            cache.remove_cache(pk)
    else:
        cache_path().mkdir(parents=True)
    (cache_path() / "fingerprint-before-build").write_text(current)
    return len(stale)


def stamp() -> int:
    """Tag the notebooks a build executed with the fingerprint taken before it; returns how many.

    Nothing is tagged when the inputs changed during the build: those outputs may be older."""
    from jupyter_cache.cache.db import NbCacheRecord, session_context

    before = cache_path() / "fingerprint-before-build"
    if not before.exists() or before.read_text() != fingerprint():
        return 0
    tagged = 0
    with session_context(_cache().db) as session:
        for record in session.query(NbCacheRecord).all():
            if FINGERPRINT_KEY not in (record.data or {}):
                record.data = {**(record.data or {}), FINGERPRINT_KEY: before.read_text()}
                tagged += 1
        session.commit()
    return tagged


# ---- the pytest plugin -------------------------------------------------------------------------

def _nbval_cell(item) -> bool:
    return type(item).__name__ == "IPyNbCell"


def pytest_configure(config):
    config._book_cache_inputs = fingerprint()


def pytest_runtest_setup(item):
    if _nbval_cell(item) and not hasattr(item.parent, "_book_cache_outputs"):
        item.parent._book_cache_outputs = {}
        item.parent._book_cache_started = time.perf_counter()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if _nbval_cell(item) and report.when == "call" and report.passed and item.test_outputs is not None:
        item.parent._book_cache_outputs[item.cell_num] = list(item.test_outputs)


def pytest_runtest_teardown(item, nextitem):
    if not _nbval_cell(item) or (nextitem is not None and nextitem.parent is item.parent):
        return
    notebook = item.parent
    outputs = getattr(notebook, "_book_cache_outputs", {})
    n_code = sum(cell.cell_type == "code" for cell in notebook.nb.cells)
    if sorted(outputs) != list(range(n_code)):
        return  # a cell failed, was skipped or deselected: the book executes this notebook itself
    seconds = time.perf_counter() - notebook._book_cache_started
    try:
        store(Path(str(notebook.fspath)), notebook.nb, [outputs[i] for i in range(n_code)], seconds,
              item.config._book_cache_inputs)
    except Exception as error:  # the cache saves time; it never fails a test run
        warnings.warn(f"book cache: {Path(str(notebook.fspath)).name} not cached ({error})", stacklevel=1)


def main(argv: list[str]) -> int:
    commands = {"prune": (prune, "removed {} cached notebook(s) executed with other inputs"),
                "stamp": (stamp, "fingerprinted {} notebook(s) executed by the build")}
    if len(argv) != 1 or argv[0] not in commands:
        print("usage: python -m tests.book_cache prune|stamp", file=sys.stderr)
        return 2
    function, message = commands[argv[0]]
    print(f"book cache ({cache_path().relative_to(REPO)}): " + message.format(function()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
