"""`build.py bench` owns one section of docs/benchmarks.md: it replaces that section and
leaves the rest of the file as it was."""

from __future__ import annotations

import pytest

from buildtasks.bench import SECTION_BEGIN, SECTION_END, BenchOptions, replace_section
from buildtasks.commands import BuildError

INTRO = "# Benchmarks\n\nRatios, not absolute figures.\n"
OTHERS = "## bench/browser_start.py\n\nEdited by hand.\n\n## Where the time goes\n\nText.\n"


def section(text: str) -> str:
    return f"{SECTION_BEGIN}\n## build.py bench\n\n{text}\n{SECTION_END}"


def test_the_first_run_adds_the_section_before_the_first_heading() -> None:
    document = replace_section(INTRO + "\n" + OTHERS, section("first"))
    assert document == INTRO + "\n" + section("first") + "\n\n" + OTHERS


def test_a_later_run_replaces_only_its_section() -> None:
    before = INTRO + "\n" + section("first") + "\n\n" + OTHERS
    after = replace_section(before, section("second run\n\n| a | b |"))
    assert after == INTRO + "\n" + section("second run\n\n| a | b |") + "\n\n" + OTHERS
    assert replace_section(after, section("first")) == before


def test_a_section_moved_elsewhere_by_hand_stays_where_it_is() -> None:
    before = INTRO + "\n" + OTHERS + "\n" + section("first") + "\n\nAfter it.\n"
    after = replace_section(before, section("second"))
    assert after == INTRO + "\n" + OTHERS + "\n" + section("second") + "\n\nAfter it.\n"


def test_a_document_without_headings_gets_the_section_at_its_end() -> None:
    assert replace_section("Intro.\n", section("x")) == "Intro.\n\n" + section("x") + "\n"


def test_markers_out_of_order_are_an_error_not_a_guess() -> None:
    with pytest.raises(BuildError, match="out of order"):
        replace_section(INTRO + SECTION_END + "\n" + OTHERS + SECTION_BEGIN, section("x"))
    with pytest.raises(BuildError, match="out of order"):
        replace_section(INTRO + SECTION_BEGIN + "\n" + OTHERS, section("x"))


def test_the_recorded_command_line_leaves_out_the_dsn() -> None:
    options = BenchOptions(
        quick=True, jobs=300, only=("depth",), postgres_dsn="postgresql://u:pw@h/db"
    )
    assert options.command_line() == (
        "python build.py bench --quick --jobs 300 --only depth --postgres-dsn ..."
    )
    assert options.sizes().jobs == 300
    assert options.names() == ["depth"]
    with pytest.raises(BuildError, match="unknown nope"):
        BenchOptions(only=("nope",)).names()
