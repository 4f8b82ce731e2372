"""Every page of the built book, as a reader's browser shows it (headless Chromium; `pytest -m browser`)."""

from __future__ import annotations

from urllib.parse import unquote

import pytest

from . import site
from .visit import internal_path

PAGES = site.pages()
NOTEBOOK_PAGES = [page for page in PAGES if site.is_notebook_page(page)]
pytestmark = pytest.mark.browser
BLOCKING = ("serious", "critical")


def test_the_book_is_built(book_root):
    assert PAGES, f"no pages under {book_root}"
    target = site.redirect_of(book_root / "index.html")
    assert target in PAGES, f"index.html leads to {target!r}, which is not a page of the book"


@pytest.mark.parametrize("page", PAGES)
def test_no_console_errors(visitor, page):
    report = visitor.report(page)
    assert not report.console_errors, "\n".join(report.console_errors)
    assert not report.failed_requests, "requests that failed:\n" + "\n".join(report.failed_requests)


@pytest.mark.parametrize("page", PAGES)
def test_works_offline(visitor, page):
    """Nothing is fetched from outside the book (MathJax and fonts included): it reads in a classroom without
    internet."""
    report = visitor.report(page)
    assert not report.outside_requests, "requests leaving the book:\n" + "\n".join(report.outside_requests)
    script = report.data["math"]["script"]
    if script:
        assert script.startswith(visitor.base_url), f"MathJax is loaded from {script}, not from the book"


@pytest.mark.parametrize("page", PAGES)
def test_images_load_and_have_alt_text(visitor, page):
    images = visitor.report(page).data["images"]
    broken = [image["src"] for image in images if image["width"] == 0]
    no_alt = [image["src"][:120] for image in images if not image["alt"]]
    assert not broken, f"images that did not load: {broken}"
    assert not no_alt, f"images without alt text: {no_alt}"


@pytest.mark.parametrize("page", PAGES)
def test_internal_links_and_anchors_resolve(visitor, book_root, page):
    report = visitor.report(page)
    own_ids = set(report.data["ids"])
    problems = []
    for link in report.data["links"]:
        target = internal_path(link["href"], visitor.base_url)
        if target is None:
            continue
        path, fragment = unquote(target[0]), unquote(target[1])
        file = book_root / path
        if not file.is_file():
            problems.append(f"{link['raw']!r} ({link['text'][:40]!r}): no page {path}")
            continue
        if not fragment:
            continue
        ids = own_ids if path == page else site.ids_in(file)
        if fragment not in ids:
            problems.append(f"{link['raw']!r} ({link['text'][:40]!r}): no anchor #{fragment} in {path}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("page", NOTEBOOK_PAGES)
def test_launch_buttons_open_this_notebook(visitor, page):
    targets = site.launch_targets(page)
    hrefs = [link["href"] for link in visitor.report(page).data["links"]]
    assert targets["colab"] in hrefs, f"no Colab button to {targets['colab']}"
    binder = [h for h in hrefs if h.startswith(targets["binder"])]
    assert binder, f"no Binder button under {targets['binder']}"
    assert all(h.endswith(targets["notebook"]) for h in binder), f"Binder opens {binder}, not {targets['notebook']}"


@pytest.mark.parametrize("page", PAGES)
def test_solutions_are_collapsed_until_opened(visitor, page):
    report = visitor.report(page)
    solutions = report.data["solutions"]
    shown = [s["title"] for s in solutions if s["body_visible"]]
    assert not shown, f"solutions shown before the reader opens them: {shown}"
    closed = [s["title"] for s, opened in zip(solutions, report.solutions_opened) if not opened]
    assert not closed, f"solutions that a click does not open: {closed}"


@pytest.mark.parametrize("page", PAGES)
def test_glossary_terms_link_to_their_entry(visitor, book_root, page):
    problems = []
    for term in visitor.report(page).data["terms"]:
        target = internal_path(term["href"] or "", visitor.base_url)
        if target is None:
            problems.append(f"{term['text']!r} links nowhere in the book ({term['href']})")
        elif not target[0].endswith("glossary.html") or not unquote(target[1]).startswith("term-"):
            problems.append(f"{term['text']!r} links to {target[0]}#{target[1]}, not to a glossary entry")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("page", PAGES)
def test_maths_is_rendered(visitor, page):
    math = visitor.report(page).data["math"]
    assert not math["errors"], f"MathJax could not typeset: {math['errors']}"
    assert math["rendered"] == math["elements"], f"maths left as TeX: {math['raw']}"


@pytest.mark.parametrize("page", PAGES)
def test_no_empty_progress_widgets(visitor, page):
    """tqdm's notebook widget shows nothing in a built page (or 'Loading widget...'): progress must be text."""
    widgets = visitor.report(page).data["widgets"]
    assert not widgets["loading"], "the page shows 'Loading widget...'"
    assert widgets["views"] == 0, f"{widgets['views']} widget output(s), which the built page cannot show"
    assert not widgets["tqdm_text"], f"a frozen progress bar: {widgets['tqdm_text']}"


LINE_LIMIT = 88  # chapters/ruff.toml's line-length


@pytest.mark.parametrize("page", NOTEBOOK_PAGES)
def test_code_column_holds_the_lint_limit(visitor, page):
    """The lint limit for notebook code is what the page shows: a code cell holds 88 characters at desktop width."""
    columns = visitor.report(page).data["code_columns"]
    assert columns is None or columns >= LINE_LIMIT, f"a code cell shows {columns} characters, not {LINE_LIMIT}"


@pytest.mark.parametrize("page", PAGES)
def test_code_fits_the_column(visitor, page):
    """At desktop width no code line runs out of view (notebook code keeps to 88 characters)."""
    report = visitor.report(page)
    assert not report.data["code_overflow"], "code lines cut off by the column:\n" + "\n".join(
        report.data["code_overflow"])


@pytest.mark.parametrize("page", PAGES)
def test_accessibility_audit(visitor, page):
    """axe-core finds no serious or critical violation."""
    blocking = [v for v in visitor.report(page).axe_violations if v["impact"] in BLOCKING]
    assert not blocking, "\n".join(f"{v['impact']}: {v['id']} ({v['help']}), {v['nodes']} element(s), first "
                                   f"{v['first']}: {v['html']}" for v in blocking)


@pytest.mark.parametrize("page", PAGES)
def test_screenshots_written(visitor, page):
    shots = visitor.report(page).screenshots
    for width in ("desktop", "phone"):
        assert shots[width].is_file() and shots[width].stat().st_size > 5000, f"no {width} screenshot"
