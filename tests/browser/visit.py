"""One visit of a built page in headless Chromium, recording what a reader would meet there.

`Visitor.report(page)` loads the page once at desktop width, records console errors, requests that
leave the book, images, links, launch buttons, solutions (before and after opening), glossary
references, maths, widgets, code lines cut off by the column, and axe-core's accessibility
violations; it takes a full-page screenshot there and at phone width. The tests in this folder read
the reports.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

# Desktop: from 1440 px on, the theme's text column has its full width (89 characters of code; 85 at
# 1366 px, 77 at 1280 px). Phone: a common small phone.
DESKTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}
SETTLE_MS = 400  # after MathJax and the images are done, let the theme's scripts finish their layout
TIMEOUT_MS = 180_000  # one step (load, axe, screenshot) of a long chapter on a busy two-core machine
JPEG_QUALITY = 70  # full-page screenshots of a long chapter: a fifth of the PNG's size, still sharp to read

# Everything the tests need from a loaded page, gathered in one pass in the page itself.
COLLECT = """
async () => {
  for (const img of document.images) img.loading = "eager";
  await Promise.all([...document.images].map(img => img.decode().catch(() => null)));
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise;
  const visible = el => !!el && el.checkVisibility({checkVisibilityCSS: true});
  const text = el => (el.innerText || el.textContent || "").trim().replace(/\\s+/g, " ");
  const mathScript = [...document.scripts].find(s => /mathjax/i.test(s.src));
  return {
    title: text(document.querySelector("main h1") || document.querySelector("h1") || document.body).replace(/#$/, ""),
    ids: [...document.querySelectorAll("[id]")].map(el => el.id)
         .concat([...document.querySelectorAll("a[name]")].map(el => el.name)),
    images: [...document.images].map(img => ({src: img.currentSrc || img.src, alt: (img.getAttribute("alt") || "").trim(),
                                            width: img.naturalWidth})),
    links: [...document.querySelectorAll("a[href]")].map(a => ({href: a.href, raw: a.getAttribute("href"), text: text(a)})),
    terms: [...document.querySelectorAll(".std-term")].map(el => ({text: text(el),
                                                                  href: el.closest("a[href]") ? el.closest("a[href]").href : null})),
    math: {elements: document.querySelectorAll(".math").length,
           rendered: [...document.querySelectorAll(".math")].filter(el => el.querySelector("mjx-container")).length,
           errors: [...document.querySelectorAll("mjx-merror")].map(el => el.getAttribute("data-mjx-error") || text(el)),
           script: mathScript ? mathScript.src : null,
           raw: [...document.querySelectorAll(".math")].filter(el => !el.querySelector("mjx-container"))
                 .map(el => text(el).slice(0, 80))},
    widgets: {views: document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]').length,
              loading: /Loading widget/i.test(document.body.innerText),
              tqdm_text: (document.body.innerText.match(/\\d+%\\|[^\\n]*\\| *\\d+\\/\\d+ \\[[^\\n]*\\]/g) || []).slice(0, 3)},
    code_overflow: [...document.querySelectorAll("div.cell_input pre")]
        .filter(pre => visible(pre) && pre.scrollWidth > pre.clientWidth + 1)
        .map(pre => (pre.innerText.split("\\n").reduce((a, b) => b.length > a.length ? b : a, "")).slice(0, 120)),
    code_columns: (() => {
        const pre = [...document.querySelectorAll("div.cell_input pre")].find(visible);
        if (!pre) return null;
        const probe = document.createElement("span");
        probe.textContent = "x".repeat(100);
        pre.appendChild(probe);
        const perChar = probe.getBoundingClientRect().width / 100;
        probe.remove();
        const style = getComputedStyle(pre);
        const inner = pre.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
        return Math.floor(inner / perChar);
    })(),
    solutions: [...document.querySelectorAll(".solution")].map(el => ({
        id: el.id || (el.querySelector("[id]") || {}).id || "",
        title: text(el.querySelector(".admonition-title") || el).slice(0, 80),
        body_visible: [...el.children].filter(c => !c.classList.contains("admonition-title")).some(visible),
    })),
  };
}
"""

SOLUTIONS_AFTER_CLICK = """
() => [...document.querySelectorAll(".solution")].map(el =>
    [...el.children].filter(c => !c.classList.contains("admonition-title"))
      .some(c => c.checkVisibility({checkVisibilityCSS: true})))
"""


@dataclass
class Report:
    """What one page showed."""

    page: str
    url: str
    title: str = ""
    console_errors: list[str] = field(default_factory=list)
    outside_requests: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    data: dict = field(default_factory=dict)
    solutions_opened: list[bool] = field(default_factory=list)
    axe_violations: list[dict] = field(default_factory=list)
    screenshots: dict[str, Path] = field(default_factory=dict)


def slug(page: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "__", page.removesuffix(".html"))


class Visitor:
    """Loads pages in one browser, offline: every request that would leave the book is recorded and refused."""

    def __init__(self, browser, base_url: str, root: Path, screenshots: Path):
        self.browser, self.base_url, self.root, self.screenshots = browser, base_url, root, screenshots
        self.reports: dict[str, Report | Exception] = {}
        for width in ("desktop", "phone"):
            (screenshots / width).mkdir(parents=True, exist_ok=True)

    def _context(self, viewport, report: Report | None):
        context = self.browser.new_context(viewport=viewport, device_scale_factor=1,
                                           is_mobile=viewport is PHONE, has_touch=viewport is PHONE)
        context.set_default_timeout(TIMEOUT_MS)
        base = self.base_url

        def route(request_route):
            url = request_route.request.url
            if url.startswith(base) or url.startswith(("data:", "blob:", "about:")):
                request_route.continue_()
            else:
                if report is not None:
                    report.outside_requests.append(url)
                request_route.abort()

        context.route("**/*", route)
        return context

    def report(self, page: str) -> Report:
        """The page's report, visiting it on first use; a visit that failed fails every test of that page."""
        if page not in self.reports:
            try:
                self.reports[page] = self._visit(page)
            except Exception as error:
                self.reports[page] = error
        report = self.reports[page]
        if isinstance(report, Exception):
            raise AssertionError(f"visiting {page} failed: {report}") from report
        return report

    def _visit(self, page_path: str) -> Report:
        from axe_playwright_python.sync_playwright import Axe

        url = self.base_url + page_path
        report = Report(page_path, url)
        context = self._context(DESKTOP, report)
        page = context.new_page()
        page.on("console", lambda message: self._console_error(message, report))
        page.on("pageerror", lambda error: report.console_errors.append(f"uncaught: {error}"))
        # The page's own requests; axe-core later fetches style sheets itself (resolving @import its own way).
        reading = [True]
        page.on("requestfailed", lambda request: reading[0] and request.url.startswith(self.base_url)
                and report.failed_requests.append(f"{request.url} ({request.failure})"))
        page.on("response", lambda response: reading[0] and response.status >= 400
                and report.failed_requests.append(f"{response.url} (HTTP {response.status})"))
        try:
            page.goto(url, wait_until="load")
            report.data = page.evaluate(COLLECT)
            page.wait_for_timeout(SETTLE_MS)
            reading[0] = False
            report.title = report.data["title"]
            shot = self.screenshots / "desktop" / f"{slug(page_path)}.jpg"
            page.screenshot(path=str(shot), full_page=True, type="jpeg", quality=JPEG_QUALITY)
            report.screenshots["desktop"] = shot
            result = Axe().run(page, options={"resultTypes": ["violations"]})
            report.axe_violations = [
                {"id": v["id"], "impact": v["impact"], "help": v["help"], "nodes": len(v["nodes"]),
                 "first": v["nodes"][0]["target"] if v["nodes"] else None,
                 "html": v["nodes"][0]["html"][:200] if v["nodes"] else ""}
                for v in result.response["violations"]]
            report.solutions_opened = self._open_solutions(page)
        finally:
            context.close()
        report.screenshots["phone"] = self._phone_shot(page_path)
        return report

    @staticmethod
    def _console_error(message, report: Report) -> None:
        """Record an error logged in the console. 'Failed to load resource' messages are left to the response
        listener, which names the page's own failed requests exactly (the console also reports the browser's
        own request for /favicon.ico, which no page of the book asks for)."""
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            where = message.location.get("url", "")
            report.console_errors.append(f"{message.text} ({where}:{message.location.get('lineNumber', '')})")

    @staticmethod
    def _open_solutions(page) -> list[bool]:
        """Click every solution's title, as a reader would, and say for each whether its body then shows."""
        solutions = page.locator(".solution")
        for i in range(solutions.count()):
            title = solutions.nth(i).locator(".admonition-title").first
            title.scroll_into_view_if_needed()
            title.click()
        page.wait_for_timeout(SETTLE_MS)
        return page.evaluate(SOLUTIONS_AFTER_CLICK)

    def _phone_shot(self, page_path: str) -> Path:
        context = self._context(PHONE, None)
        try:
            page = context.new_page()
            page.goto(self.base_url + page_path, wait_until="load")
            page.evaluate("async () => { if (window.MathJax && MathJax.startup) await MathJax.startup.promise; }")
            page.wait_for_timeout(SETTLE_MS)
            shot = self.screenshots / "phone" / f"{slug(page_path)}.jpg"
            page.screenshot(path=str(shot), full_page=True, type="jpeg", quality=JPEG_QUALITY)
            return shot
        finally:
            context.close()

    def write_contact_sheet(self) -> Path:
        """`index.html` beside the screenshots: every page visited, desktop and phone side by side."""
        rows = []
        for page, report in sorted(self.reports.items()):
            if isinstance(report, Exception):
                rows.append(f"<tr><th><code>{html.escape(page)}</code></th><td>not visited: "
                            f"{html.escape(str(report)[:300])}</td></tr>")
                continue
            cells = "".join(
                f'<td><a href="{width}/{report.screenshots[width].name}"><img src="{width}/{report.screenshots[width].name}" '
                f'alt="{html.escape(page)} at {width} width" width="{w}"></a></td>'
                for width, w in (("desktop", 480), ("phone", 180)) if width in report.screenshots)
            rows.append(f"<tr><th>{html.escape(report.title or page)}<br><code>{html.escape(page)}</code></th>{cells}</tr>")
        sheet = self.screenshots / "index.html"
        sheet.write_text("<!doctype html><meta charset=utf-8><title>Screenshots of the book</title>"
                         "<style>td,th{vertical-align:top;padding:6px}img{border:1px solid #999}</style>"
                         "<h1>Every page at desktop and phone width</h1><table>" + "".join(rows) + "</table>",
                         encoding="utf-8")
        return sheet


def internal_path(url: str, base_url: str) -> tuple[str, str] | None:
    """('chapters/x.html', 'fragment') for a URL inside the served book, None for one outside it."""
    if not url.startswith(base_url):
        return None
    parts = urlsplit(url)
    path = parts.path.lstrip("/")
    if path == "" or path.endswith("/"):
        path += "index.html"
    return path, parts.fragment
