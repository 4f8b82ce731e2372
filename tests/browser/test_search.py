"""The book's search page finds each page by the words of its title (headless Chromium; `pytest -m browser`)."""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest

from . import site
from .visit import internal_path

PAGES = site.pages()
pytestmark = pytest.mark.browser

RESULTS = """
() => {
  const summary = document.querySelector("#search-results .search-summary, .search-summary");
  if (!summary || !summary.innerText.trim()) return null;
  return {summary: summary.innerText.trim(),
          links: [...document.querySelectorAll("#search-results ul.search li a, ul.search li a")].map(a => a.href)};
}
"""


def query_for(title: str) -> str:
    """The words of a page title, without its chapter number and punctuation."""
    words = re.sub(r"^\s*\d+(\.\d+)*\.?\s+", "", title)
    return " ".join(re.findall(r"[A-Za-z][A-Za-z'-]*[A-Za-z]|[A-Za-z]", words))


@pytest.mark.parametrize("page", PAGES)
def test_search_finds_the_page_by_its_title(visitor, browser, base_url, page):
    title = visitor.report(page).title
    query = query_for(title)
    assert query, f"the page has no title to search for ({title!r})"
    search = browser.new_page()
    try:
        search.goto(f"{base_url}search.html?q={quote(query)}", wait_until="load")
        found = search.wait_for_function(RESULTS, timeout=20_000).json_value()
    finally:
        search.close()
    pages = {internal_path(href, base_url)[0] for href in found["links"] if internal_path(href, base_url)}
    assert page in pages, f"searching {query!r} ({found['summary']}) does not list {page}: {sorted(pages)}"
