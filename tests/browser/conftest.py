"""The browser suite's fixtures: the built book served on 127.0.0.1, Debian's headless Chromium, one visit per page.

Run after `make book`:  `.venv/bin/pytest -m browser tests/browser`  (the PDF check: `-m pdf`, after `make pdf`).
The default `pytest` run leaves these tests out (they need a built book and a browser).
"""

from __future__ import annotations

import functools
import os
import shutil
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from . import site
from .visit import Visitor

MARKERS = {
    "browser": "checks the built HTML book in headless Chromium (run after `make book`: pytest -m browser)",
    "pdf": "checks the built PDF book (run after `make pdf`: pytest -m pdf)",
}


def pytest_configure(config):
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")


def pytest_collection_modifyitems(config, items):
    """Leave the built-book tests out unless the marker expression names them (`-m browser`, `-m pdf`)."""
    expression = config.getoption("markexpr") or ""
    keep, drop = [], []
    for item in items:
        wanted = {mark.name for mark in item.iter_markers()} & set(MARKERS)
        (drop if wanted and not any(name in expression for name in wanted) else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="session")
def book_root() -> Path:
    root = site.html_dir()
    if not (root / "index.html").is_file():
        pytest.fail(f"no built book at {root}: run `make book` first (or set BOOK_HTML to a built book)", pytrace=False)
    return root


@pytest.fixture(scope="session")
def base_url(book_root):
    """The book served over HTTP on the loopback address, as a reader's browser gets it from a web server."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(book_root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def chromium_path() -> str:
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).is_file():
        pytest.fail(f"no Chromium at {path}: install Debian's (apt-get install chromium) or set CHROMIUM", pytrace=False)
    return path


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium_path())
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def screenshots_dir() -> Path:
    """Where the suite writes every page's screenshots: $BOOK_SCREENSHOTS, else `_build/screenshots`."""
    path = Path(os.environ.get("BOOK_SCREENSHOTS") or site.REPO / "_build" / "screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def visitor(browser, base_url, book_root, screenshots_dir):
    """Visits each page once (desktop and phone width), on first use, and keeps what it saw."""
    visitor = Visitor(browser, base_url, book_root, screenshots_dir)
    yield visitor
    visitor.write_contact_sheet()
