"""Chapter 10 ("Further reading") annotates every entry of references.bib, and cites nothing else.

When you append an entry to references.bib, add it, with a sentence on what it is and why to read
it, to the matching group of chapters/10_further_reading.md.
"""

import re
from collections import Counter

from .conftest import REPO

BIB = REPO / "references.bib"
READING = REPO / "chapters" / "10_further_reading.md"


def bib_keys() -> list[str]:
    return re.findall(r"^@\w+\{([^,\s]+),", BIB.read_text(encoding="utf-8"), re.M)


def cited_keys(text: str) -> set[str]:
    groups = re.findall(r"\{cite:[a-z]+\}`([^`]+)`", text)
    return {key.strip() for group in groups for key in group.split(",")}


def test_bibliography_keys_are_unique():
    duplicates = [key for key, n in Counter(bib_keys()).items() if n > 1]
    assert not duplicates, f"references.bib defines these keys more than once: {duplicates}"


def test_every_entry_is_annotated_in_chapter_10():
    missing = sorted(set(bib_keys()) - cited_keys(READING.read_text(encoding="utf-8")))
    assert not missing, f"add these references.bib entries to chapters/10_further_reading.md: {missing}"


def test_chapter_10_cites_only_entries_of_the_bibliography():
    unknown = sorted(cited_keys(READING.read_text(encoding="utf-8")) - set(bib_keys()))
    assert not unknown, f"chapters/10_further_reading.md cites keys missing from references.bib: {unknown}"


def test_each_entry_has_its_own_line():
    """Every key is introduced on a list line of its own group, so none is only a passing mention."""
    text = READING.read_text(encoding="utf-8")
    items = re.split(r"\n(?=- )", text)
    listed = set()
    for item in items:
        if item.startswith("- "):
            listed |= cited_keys(item)
    assert set(bib_keys()) <= listed
