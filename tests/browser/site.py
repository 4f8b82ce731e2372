"""The built book as files: which pages it has, which ids each page defines, which notebook a page shows.

Read by the browser suite (`tests/browser/`), which checks the same pages in a real browser.
"""

from __future__ import annotations

import os
import re
from functools import cache
from html.parser import HTMLParser
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
CONFIG = yaml.safe_load((REPO / "_config.yml").read_text())
# Folders of the build that hold assets, not pages; pages Sphinx generates that are not the book's.
NOT_PAGES = {"_static", "_sources", "_images", "_sphinx_design_static", "_panels_static"}
GENERATED = {"genindex.html", "search.html", "py-modindex.html"}
REDIRECT = re.compile(r'<meta http-equiv="Refresh" content="0; url=([^"]+)"', re.IGNORECASE)


def html_dir() -> Path:
    """The built HTML book: $BOOK_HTML, else `_build/html` (what `make book` writes)."""
    return Path(os.environ.get("BOOK_HTML") or REPO / "_build" / "html").resolve()


def pages(root: Path | None = None) -> list[str]:
    """Every page of the built book, as paths relative to its root ('chapters/00_x.html')."""
    root = root or html_dir()
    if not root.is_dir():
        return []
    found = []
    for path in root.rglob("*.html"):
        relative = path.relative_to(root)
        if relative.parts[0] in NOT_PAGES or relative.as_posix() in GENERATED or redirect_of(path):
            continue
        found.append(relative.as_posix())
    return sorted(found)


def redirect_of(path: Path) -> str | None:
    """The target of a page that only redirects (Jupyter Book's index.html), else None."""
    match = REDIRECT.search(path.read_text(encoding="utf-8")[:2000])
    return match.group(1) if match else None


def source_of(page: str) -> Path | None:
    """The repository file a page was built from (notebook, Markdown), or None."""
    stem = REPO / page.removesuffix(".html")
    for suffix in (".ipynb", ".md"):
        if stem.with_suffix(suffix).is_file():
            return stem.with_suffix(suffix)
    return None


def is_notebook_page(page: str) -> bool:
    """True for pages built from a notebook (.ipynb, or MyST Markdown with a kernel): they get launch buttons."""
    source = source_of(page)
    if source is None:
        return False
    if source.suffix == ".ipynb":
        return True
    head = source.read_text(encoding="utf-8").split("\n---", 1)[0]
    return source.read_text(encoding="utf-8").startswith("---") and "kernelspec" in head


def launch_targets(page: str) -> dict[str, str]:
    """Where the launch buttons of a notebook page must point (Colab and Binder), from `_config.yml`."""
    repo, launch = CONFIG["repository"], CONFIG["launch_buttons"]
    owner_name = repo["url"].removeprefix("https://github.com/").strip("/")
    source = source_of(page)
    notebook = (Path(repo.get("path_to_book") or "") / source.relative_to(REPO)).as_posix()
    return {
        "colab": f"{launch['colab_url'].rstrip('/')}/github/{owner_name}/blob/{repo['branch']}/{notebook}",
        "binder": f"{launch['binderhub_url'].rstrip('/')}/v2/gh/{owner_name}/{repo['branch']}",
        "notebook": notebook,
    }


class _Ids(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name == "id" or (tag == "a" and name == "name"):
                self.ids.add(value or "")


@cache
def ids_in(path: Path) -> frozenset[str]:
    """The ids (and <a name>s) defined in a built HTML file, as written by Sphinx."""
    parser = _Ids()
    parser.feed(path.read_text(encoding="utf-8"))
    return frozenset(parser.ids)
