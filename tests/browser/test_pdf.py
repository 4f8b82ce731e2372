"""The printable edition: `make pdf` made one PDF holding every page of the table of contents (`pytest -m pdf`)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import unicodedata
from pathlib import Path

import nbformat
import pytest
import yaml

from .site import REPO

pytestmark = pytest.mark.pdf
SOURCE = Path(os.environ.get("BOOK_SOURCE") or REPO)
PDF = Path(os.environ.get("BOOK_PDF") or REPO / "_build" / "latex" / "imagenet-and-ai.pdf")


def normalise(text: str) -> str:
    """Compare text as a reader does: ligatures, curly quotes, dashes, line breaks and hyphenation aside."""
    text = unicodedata.normalize("NFKC", text)
    text = text.translate(str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"',
                                         "\u2013": "-", "\u2014": "-", "\u00a0": " "}))
    text = re.sub(r"-\s*\n\s*", "-", text)
    return re.sub(r"\s+", " ", text).strip().lower()


def toc_files() -> list[str]:
    toc = yaml.safe_load((SOURCE / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [chapter["file"] for chapter in part.get("chapters", [])]
        files += [section["file"] for chapter in part.get("chapters", []) for section in chapter.get("sections", [])]
    return files


def title_of(file: str) -> str:
    """The first '# ' heading of a page's source (notebook or Markdown), as written."""
    path = next(p for p in (SOURCE / f"{file}.ipynb", SOURCE / f"{file}.md") if p.is_file())
    if path.suffix == ".ipynb":
        lines = [line for cell in nbformat.read(path, as_version=4).cells if cell.cell_type == "markdown"
                 for line in cell.source.splitlines()]
    else:
        lines = path.read_text(encoding="utf-8").splitlines()
    title = next(line[2:].strip() for line in lines if line.startswith("# "))
    return re.sub(r"[`*_]|\{[a-z]+\}", "", title)  # Markdown emphasis and roles print as plain words


@pytest.fixture(scope="module")
def pdf_text() -> str:
    if not PDF.is_file():
        pytest.fail(f"no PDF at {PDF}: run `make pdf` first", pytrace=False)
    if shutil.which("pdftotext") is None:
        pytest.fail("pdftotext not found: install poppler-utils (apt-get install poppler-utils)", pytrace=False)
    result = subprocess.run(["pdftotext", "-enc", "UTF-8", str(PDF), "-"], capture_output=True, text=True, check=True)
    return normalise(result.stdout)


def test_pdf_has_pages(pdf_text):
    result = subprocess.run(["pdfinfo", str(PDF)], capture_output=True, text=True, check=True)
    pages = int(re.search(r"^Pages:\s+(\d+)", result.stdout, re.M).group(1))
    assert pages > len(toc_files()), f"{pages} pages for {len(toc_files())} chapters"


@pytest.mark.parametrize("file", toc_files())
def test_pdf_holds_every_chapter(pdf_text, file):
    title = title_of(file)
    assert normalise(title) in pdf_text, f"the PDF does not contain the title {title!r} of {file}"
