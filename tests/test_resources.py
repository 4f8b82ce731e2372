"""The data files that ship inside `lib` (lib/resources/) and that chapters read."""

import csv
import importlib.resources

WINNERS = importlib.resources.files("lib") / "resources" / "ilsvrc_results.csv"


def winners() -> list[dict]:
    with WINNERS.open("r", encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_one_row_per_edition_of_ilsvrc():
    assert [int(row["year"]) for row in winners()] == list(range(2010, 2018))


def test_the_challenge_data_only_column_follows_its_rule():
    """Chapter 1 compares the years by the best entry trained on the challenge's data alone: that is the
    winner itself where it used no outside data, and a worse entry where the winner did."""
    for row in winners():
        winner = float(row["top5_error_percent"])
        alone = float(row["top5_error_without_outside_data_percent"])
        assert row["uses_outside_data"] in ("yes", "no"), row["year"]
        if row["uses_outside_data"] == "no":
            assert alone == winner, row["year"]
        else:
            assert alone > winner, row["year"]
    assert [row["year"] for row in winners() if row["uses_outside_data"] == "yes"] == ["2012"]


def test_every_row_names_its_source_and_errors_fall():
    rows = winners()
    assert all(row["source"].startswith("ilsvrc") and row["source"].endswith("results") for row in rows)
    alone = [float(row["top5_error_without_outside_data_percent"]) for row in rows]
    assert alone == sorted(alone, reverse=True), "the best error without outside data fell every year"
