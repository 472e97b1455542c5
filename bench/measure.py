"""What every benchmark shares: timing, medians and percentiles, ratios, and the rows it reports.

A benchmark compares pyjobqueue with one other queue (a peer library, or a floor: the
least such a queue can do) on one measure. It reports a `Row` per comparison: both
figures, absolute, and the ratio of pyjobqueue's speed to the other's (above 1 means
pyjobqueue is faster), the median of the ratios of rounds run side by side where it
ran more than one. `python build.py bench` runs every benchmark with `--json PATH`,
collects the lines of their tables (`table_lines`) and prints them as one table.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

Unit = Literal["jobs/s", "ms"]


def median(samples: Iterable[float]) -> float:
    """The median of the samples."""
    return statistics.median(samples)


def percentile(samples: Sequence[float], fraction: float) -> float:
    """The sample below which `fraction` of the samples lie (nearest rank)."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def speed_ratio(ours: float, other: float, unit: Unit) -> float:
    """pyjobqueue's speed over the other's: above 1 when pyjobqueue is faster."""
    return ours / other if unit == "jobs/s" else other / ours


WARMUP_SAMPLES = 5  # run first and thrown away: the first calls prepare statements


async def latency_samples(
    submit_and_wait: Callable[[int], Awaitable[Any]], rounds: int
) -> list[float]:
    """Milliseconds of each of `rounds` back-to-back calls (after WARMUP_SAMPLES untimed),
    each awaited until done; `submit_and_wait` gets a new number each time."""
    samples = []
    for n in range(WARMUP_SAMPLES + rounds):
        started = time.perf_counter()
        await submit_and_wait(n)
        samples.append((time.perf_counter() - started) * 1000)
    return samples[WARMUP_SAMPLES:]


def blocking_samples(submit_and_wait: Callable[[int], Any], rounds: int) -> list[float]:
    """`latency_samples` of a blocking call (huey's API is synchronous)."""
    samples = []
    for n in range(WARMUP_SAMPLES + rounds):
        started = time.perf_counter()
        submit_and_wait(n)
        samples.append((time.perf_counter() - started) * 1000)
    return samples[WARMUP_SAMPLES:]


WARMUP_JOBS = 100


def rounds_with_warmup(jobs: int, repeat: int) -> list[tuple[int, int]]:
    """(round number, jobs) of `repeat` rounds of `jobs` jobs after round 0, a warm-up of a
    few jobs whose figures are thrown away: the first run of a queue in a process pays for
    its imports, connections and prepared statements, which a server pays once."""
    return [(0, min(jobs, WARMUP_JOBS)), *((n, jobs) for n in range(1, repeat + 1))]


@dataclass(frozen=True)
class Row:
    """One comparison: pyjobqueue's figure and the other queue's, and how they relate."""

    measure: str  # e.g. "drain, PostgreSQL, 4 workers"
    ours: str  # how pyjobqueue ran
    ours_value: float
    other: str  # the peer or floor, and how it ran
    other_value: float
    unit: Unit
    ratio: float  # speed_ratio, or the median of the rounds' speed_ratio
    note: str = ""


@dataclass
class Rounds:
    """Figures per queue, one per round, for queues that run side by side round by round."""

    unit: Unit
    values: dict[str, list[float]] = field(default_factory=dict)

    def add(self, queue: str, value: float) -> None:
        """Record one round's figure of `queue`."""
        self.values.setdefault(queue, []).append(value)

    def median(self, queue: str) -> float:
        """The median figure of `queue` over its rounds."""
        return median(self.values[queue])

    def ratio(self, ours: str, other: str) -> float:
        """The median over rounds of `ours`' speed over `other`'s in the same round."""
        pairs = zip(self.values[ours], self.values[other], strict=True)
        return median(speed_ratio(a, b, self.unit) for a, b in pairs)

    def row(self, measure: str, ours: str, other: str, note: str = "") -> Row:
        """The Row comparing queue `ours` (pyjobqueue) with queue `other`."""
        return Row(
            measure, ours, self.median(ours), other, self.median(other), self.unit,
            self.ratio(ours, other), note,
        )  # fmt: skip


def latency_rows(
    measure: str, ours: tuple[str, Sequence[float]], other: tuple[str, Sequence[float]]
) -> list[Row]:
    """The p50 and p99 rows of two sets of latency samples (milliseconds)."""
    rows = []
    for name, fraction in (("p50", 0.5), ("p99", 0.99)):
        ours_ms, other_ms = percentile(ours[1], fraction), percentile(other[1], fraction)
        ratio = speed_ratio(ours_ms, other_ms, "ms")
        rows.append(Row(f"{measure} {name}", ours[0], ours_ms, other[0], other_ms, "ms", ratio))
    return rows


def add_json_argument(parser: argparse.ArgumentParser) -> None:
    """--json PATH: where `write_rows` puts the rows for `build.py bench`."""
    parser.add_argument("--json", type=Path, help="also write the rows as JSON to this file")


def drain_parser(doc: str | None, jobs: int = 2000) -> argparse.ArgumentParser:
    """The options every drain-and-latency benchmark takes: --jobs, --workers, --repeat,
    --rounds and --json (its description: the first line of `doc`)."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n")[0])
    parser.add_argument("--jobs", type=int, default=jobs, help="jobs per drain")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3, help="rounds; medians are reported")
    parser.add_argument("--rounds", type=int, default=200, help="latency samples")
    add_json_argument(parser)
    return parser


def figure(value: float, unit: Unit) -> str:
    """A figure with its unit, to the precision that a noisy machine allows."""
    if unit == "ms":
        return f"{value:.3f} ms" if value < 1 else f"{value:,.1f} ms"
    return f"{value:,.0f} jobs/s"


TABLE_HEADER = (
    "| measure | pyjobqueue | | against | | speed ratio |",
    "|---|---|---|---|---|---|",
)


def table_lines(rows: Sequence[Row]) -> list[str]:
    """The rows of a Markdown table with TABLE_HEADER: both figures, then the ratio."""
    return [
        f"| {row.measure} | {row.ours} | {figure(row.ours_value, row.unit)} "
        f"| {row.other}{f' ({row.note})' if row.note else ''} "
        f"| {figure(row.other_value, row.unit)} | {row.ratio:.3g} |"
        for row in rows
    ]


def report(rows: Sequence[Row], json_path: Path | None) -> None:
    """Print the rows as a table; with `json_path`, write them, and the table's lines, there."""
    print("\n".join([*TABLE_HEADER, *table_lines(rows)]))
    if json_path is not None:
        payload = {
            "header": TABLE_HEADER,
            "lines": table_lines(rows),
            "rows": [asdict(row) for row in rows],
        }
        json_path.write_text(json.dumps(payload, indent=1) + "\n")


def progress(message: str) -> None:
    """A line on stderr, so a long run shows where it is."""
    print(message, file=sys.stderr, flush=True)
