"""tests/book_cache.py: nbval's executed notebooks become the book's execution cache, and stale ones leave it."""

import subprocess
import sys

import nbformat
import pytest
from jupyter_cache import get_cache

from . import book_cache
from .conftest import REPO


def notebook(*sources):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell("# A page")] + [nbformat.v4.new_code_cell(s) for s in sources]
    return nb


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    path = tmp_path / "cache"
    monkeypatch.setenv("BOOK_CACHE", str(path))
    return path


def test_store_makes_a_notebook_the_book_finds(cache_dir, tmp_path):
    nb = notebook("print('hello')", "1 + 1")
    outputs = [[nbformat.v4.new_output("stream", name="stdout", text="hello\n")],
               [nbformat.v4.new_output("execute_result", data={"text/plain": "2"}, execution_count=7)]]
    book_cache.store(tmp_path / "page.ipynb", nb, outputs, 1.5, "inputs-1")
    cache = get_cache(str(cache_dir))
    record = cache.match_cache_notebook(nb)  # what myst-nb does in `execute_notebooks: cache` mode
    assert record.data == {"execution_seconds": 1.5, "inputs": "inputs-1"}
    _, merged = cache.merge_match_into_notebook(nb)
    code = [cell for cell in merged.cells if cell.cell_type == "code"]
    assert [cell.execution_count for cell in code] == [1, 2]
    assert code[0].outputs[0].text == "hello\n" and code[1].outputs[0].execution_count == 2
    assert merged.cells[0].source == "# A page"


def test_store_refuses_outputs_that_do_not_match_the_cells(cache_dir, tmp_path):
    with pytest.raises(ValueError, match="1 executed cells for 2 code cells"):
        book_cache.store(tmp_path / "page.ipynb", notebook("1", "2"), [[]], 1.0, "inputs-1")


def test_prune_drops_notebooks_run_with_other_inputs_and_stamp_tags_the_builds(cache_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(book_cache, "fingerprint", lambda: "now")
    book_cache.store(tmp_path / "old.ipynb", notebook("1"), [[]], 1.0, "before")
    book_cache.store(tmp_path / "new.ipynb", notebook("2"), [[]], 1.0, "now")
    assert book_cache.prune() == 1
    cache = get_cache(str(cache_dir))
    assert [r.uri for r in cache.list_cache_records()] == [str(tmp_path / "new.ipynb")]
    # a notebook the build executed itself carries no fingerprint until `stamp`
    cache.cache_notebook_file(str(_executed(tmp_path / "built.ipynb", "3")), check_validity=False)
    assert book_cache.stamp() == 1
    assert {r.data["inputs"] for r in get_cache(str(cache_dir)).list_cache_records()} == {"now"}
    monkeypatch.setattr(book_cache, "fingerprint", lambda: "changed during the build")
    cache.cache_notebook_file(str(_executed(tmp_path / "late.ipynb", "4")), check_validity=False)
    assert book_cache.stamp() == 0


def test_a_first_build_without_a_cache_is_stamped(cache_dir, tmp_path, monkeypatch):
    """`make book` on a fresh clone (no `make test` before it) fills the cache; what it executed is tagged,
    so that `make pdf` afterwards reuses it instead of executing every chapter again."""
    monkeypatch.setattr(book_cache, "fingerprint", lambda: "now")
    assert not cache_dir.exists()
    assert book_cache.prune() == 0
    get_cache(str(cache_dir)).cache_notebook_file(str(_executed(tmp_path / "built.ipynb", "5")),
                                                  check_validity=False)
    assert book_cache.stamp() == 1
    assert book_cache.prune() == 0
    assert len(get_cache(str(cache_dir)).list_cache_records()) == 1


def _executed(path, source):
    nbformat.write(notebook(source), path)
    return path


def test_fingerprint_follows_lib_and_packages():
    assert book_cache.fingerprint() == book_cache.fingerprint()
    files = {path.relative_to(REPO).as_posix() for path in book_cache._input_files()}
    assert "lib/plots.py" in files and "pyproject.toml" in files
    assert not any(name.endswith(".ipynb") for name in files)


def test_nbval_run_fills_the_cache(cache_dir, tmp_path):
    """End to end: pytest --nbval-lax with the plugin caches the passing notebook, not the failing one."""
    nbformat.write(notebook("x = 6 * 7", "print(x)"), tmp_path / "passes.ipynb")
    nbformat.write(notebook("x = 1", "raise RuntimeError('no')"), tmp_path / "fails.ipynb")
    result = subprocess.run([sys.executable, "-m", "pytest", "--nbval-lax", "-p", "tests.book_cache", "-q",
                             "-p", "no:cacheprovider", "--rootdir", str(tmp_path), str(tmp_path)],
                            cwd=REPO, capture_output=True, text=True, timeout=600)
    assert "1 failed" in result.stdout, result.stdout[-2000:]
    records = get_cache(str(cache_dir)).list_cache_records()
    assert [r.uri for r in records] == [str(tmp_path / "passes.ipynb")]
    _, merged = get_cache(str(cache_dir)).merge_match_into_notebook(nbformat.read(tmp_path / "passes.ipynb", 4))
    assert merged.cells[2].outputs[0].text == "42\n"
    assert records[0].data["inputs"] == book_cache.fingerprint()
