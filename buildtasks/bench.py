"""``build.py bench``: every benchmark of bench/ in one run, one table of ratios, and the
section of docs/benchmarks.md that it owns.

It installs what is missing (.venv, and .venv-bench with pyjobqueue and the pinned
peers; for the browser, Chromium and web/dist/pyodide/ with this checkout's wheel),
starts a throwaway PostgreSQL cluster unless it is given a DSN, and runs each benchmark
with ``--json``, one after the other: in .venv-bench's python, or in .venv's (which has
Playwright) for the browser's. Their tables become one, with the facts of the machine
above it (``bench/machine.py``). In
docs/benchmarks.md it replaces what lies between SECTION_BEGIN and SECTION_END (or adds
the section before the file's first one) and leaves the rest of the file as it is.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import textwrap
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from .bundle import build_wheel, prepare_web_root
from .commands import BuildError, header, run
from .environment import ensure_bench_venv, ensure_chromium, ensure_postgres, ensure_venv
from .paths import BENCH, ROOT, VENV_BIN
from .postgres import postgres_cluster

DOC = ROOT / "docs" / "benchmarks.md"
SECTION_BEGIN = "<!-- build.py bench: begin. Rewritten by `python build.py bench` on each run. -->"
SECTION_END = "<!-- build.py bench: end -->"


@dataclass(frozen=True)
class Sizes:
    """How much each benchmark does: jobs per drain, the deep queue, rounds and samples."""

    jobs: int
    depth: int
    repeat: int  # drain rounds, run side by side; ratios are the medians of the rounds'
    samples: int  # latency samples, single enqueues and claims timed


STANDARD = Sizes(jobs=2_000, depth=200_000, repeat=3, samples=200)
QUICK = Sizes(jobs=400, depth=10_000, repeat=1, samples=50)  # about 2 minutes in all


@dataclass(frozen=True)
class Benchmark:
    """One script of bench/, what it compares, and what it needs."""

    script: str
    compares: str
    needs_postgres: bool = False
    in_browser: bool = False  # runs in .venv (Playwright), on web/dist/pyodide/


BROWSER_JOBS = 1_000  # at most, per drain in the browser: IndexedDB runs tens of jobs a second


BENCHMARKS = {
    "throughput": Benchmark(
        "throughput.py", "each backend against its floor (asyncio.Queue, hand-written queues)", True
    ),
    "postgres-peers": Benchmark("peers.py", "PostgreSQL: PgQueuer and procrastinate", True),
    "sqlite-peers": Benchmark("sqlite_peers.py", "SQLite: huey's SqliteHuey"),
    "depth": Benchmark("depth.py", "a deep queue against a shallow one", True),
    "indexeddb": Benchmark(
        "indexeddb.py",
        "IndexedDB in Chromium against a hand-written JavaScript queue",
        in_browser=True,
    ),
}


def benchmark_args(name: str, sizes: Sizes, dsn: str | None) -> list[str]:
    """The command-line arguments of benchmark `name` for these sizes."""
    counts = ["--jobs", str(sizes.jobs)]
    samples = str(sizes.samples)
    with_dsn = ["--postgres-dsn", dsn] if dsn else []
    if name == "throughput":
        backends = "memory,sqlite,postgres" if dsn else "memory,sqlite"
        return [*counts, "--repeat", str(sizes.repeat), "--rounds", samples,
                "--backends", backends, *with_dsn]  # fmt: skip
    if name == "postgres-peers":
        return [*counts, "--repeat", str(sizes.repeat), "--rounds", samples,
                "--enqueues", samples, *with_dsn]  # fmt: skip
    if name == "sqlite-peers":
        return [*counts, "--repeat", str(sizes.repeat), "--rounds", samples, "--enqueues", samples]
    if name == "indexeddb":
        jobs = str(min(sizes.jobs, BROWSER_JOBS))
        return ["--jobs", jobs, "--repeat", str(sizes.repeat), "--rounds", samples]
    backends = "memory,sqlite,postgres" if dsn else "memory,sqlite"
    depth = max(sizes.depth, sizes.jobs)
    return [*counts, "--depth", str(depth), "--repeat", str(sizes.repeat), "--claims", samples,
            "--backends", backends, *with_dsn]  # fmt: skip


@dataclass(frozen=True)
class BenchOptions:
    """The command line of ``build.py bench``."""

    quick: bool = False
    jobs: int | None = None
    depth: int | None = None
    repeat: int | None = None
    only: Sequence[str] = ()
    postgres_dsn: str | None = None

    def sizes(self) -> Sizes:
        """QUICK or STANDARD, with --jobs, --depth and --repeat applied."""
        sizes = QUICK if self.quick else STANDARD
        for name in ("jobs", "depth", "repeat"):
            if (value := getattr(self, name)) is not None:
                sizes = replace(sizes, **{name: value})
        return sizes

    def names(self) -> list[str]:
        """The benchmarks to run, in BENCHMARKS' order."""
        unknown = set(self.only) - set(BENCHMARKS)
        if unknown:
            known = ", ".join(BENCHMARKS)
            raise BuildError(f"--only: unknown {', '.join(sorted(unknown))} (known: {known})")
        return [name for name in BENCHMARKS if not self.only or name in self.only]

    def command_line(self) -> str:
        """How this run was started, without the DSN's value (it may hold a password)."""
        parts = ["python build.py bench", *(["--quick"] if self.quick else [])]
        for name in ("jobs", "depth", "repeat"):
            if (value := getattr(self, name)) is not None:
                parts.append(f"--{name} {value}")
        if self.only:
            parts.append(f"--only {','.join(self.only)}")
        if self.postgres_dsn:
            parts.append("--postgres-dsn ...")
        return " ".join(parts)


def run_benchmark(python: Path, name: str, args: list[str], workdir: Path) -> dict[str, list[str]]:
    """Run one benchmark; its table's "header" and "lines" (bench/measure.py's report)."""
    header(f"bench: {name} ({BENCHMARKS[name].compares})")
    if BENCHMARKS[name].in_browser:
        python = VENV_BIN / "python"
    output = workdir / f"{name}.json"
    run([str(python), str(BENCH / BENCHMARKS[name].script), *args, "--json", str(output)], cwd=ROOT)
    table: dict[str, list[str]] = json.loads(output.read_text())
    return table


def machine_facts(python: Path, dsn: str | None, workdir: Path) -> dict[str, str]:
    """What bench/machine.py says about this machine and the software."""
    output = workdir / "machine.json"
    dsn_args = ["--postgres-dsn", dsn] if dsn else []
    run([str(python), str(BENCH / "machine.py"), *dsn_args, "--json", str(output)], cwd=ROOT)
    facts: dict[str, str] = json.loads(output.read_text())
    return facts


def run_bench(options: BenchOptions) -> int:
    """``build.py bench``: install, run every chosen benchmark, print and record the table."""
    names, sizes = options.names(), options.sizes()
    ensure_venv(dev=True)
    python = ensure_bench_venv()
    if any(BENCHMARKS[name].in_browser for name in names):
        ensure_chromium()
        prepare_web_root(build_wheel())  # web/dist/pyodide/ with this checkout's wheel
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        dsn = options.postgres_dsn
        if dsn is None and any(BENCHMARKS[name].needs_postgres for name in names):
            dsn = stack.enter_context(postgres_cluster(ensure_postgres(), durable=True)).dsn
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pyjobqueue-bench-")))
        facts = machine_facts(python, dsn, workdir)
        tables = [
            run_benchmark(python, name, benchmark_args(name, sizes, dsn), workdir) for name in names
        ]
    facts["load average at end (1, 5, 15 min)"] = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    facts["took"] = f"{time.monotonic() - started:.0f} s"
    table = [*tables[0]["header"], *(line for part in tables for line in part["lines"])]
    print("\n".join(table), flush=True)
    section = render_section(options.command_line(), sizes, facts, table)
    DOC.write_text(replace_section(DOC.read_text(), section))
    header(f"wrote its section of {DOC.relative_to(ROOT)}")
    return 0


HOW_TO_READ = """\
How to read it:

- **speed ratio** is pyjobqueue's speed over the other's: jobs/s over jobs/s, or the
  other's milliseconds over pyjobqueue's. Above 1, pyjobqueue is faster. Where drains
  ran more than one round (side by side, round by round, so that a noisy machine slows
  all alike), it is the median of the rounds' ratios, and each figure the median of its
  rounds. Compare ratios, not absolute figures, and runs made on one machine.
- **Floors** are the least such a queue can do: an `asyncio.Queue` feeding worker
  tasks (memory), and hand-written queues on the same database and driver that claim a
  row with one `UPDATE ... RETURNING` and mark it done with another (no leases, events,
  retries or limits): `bench/throughput.py`.
- **Peers** run as their own documentation sets them up for a new user, at their
  defaults unless the row says otherwise, with the same no-op job (it returns its
  number), producer and workers in the benchmark's process: PgQueuer's QueueManager (or
  its PgQueuer application, which adds its scheduler) on one asyncpg connection;
  procrastinate's App on its psycopg connector with `run_worker_async`; huey's
  SqliteHuey with its consumer. huey's guide starts the consumer as a process of its own
  (`huey_consumer.py`); here the same Consumer object is started in the benchmark's
  process, so that one clock sees both ends. pyjobqueue "at its default" is one worker
  (`worker_count=1`).
- **Latency** is submit to done with back-to-back submits (each once the one before is
  done). pyjobqueue's clock stops when `wait_for` returns (the outcome stored and read
  by the client); PgQueuer's and procrastinate's when the job's function has returned in
  their worker, before they record it done; huey's at its `SIGNAL_COMPLETE`, after the
  result is stored. p99 of a few hundred samples is the slowest few: it shows stalls
  (a poll interval, a missed notification), not a steady cost.
- **Enqueue**: single enqueues one after the other, median; batches of 1,000 in one call.
- **Depth**: the same drain and the storage's `claim` of one job with that many jobs
  pending, against a queue that holds only the jobs measured, both filled afresh in
  each round (`bench/depth.py`).
- **IndexedDB** runs in Debian's Chromium (headless, Playwright): pyjobqueue inside
  Pyodide on the page's main thread, against a hand-written JavaScript queue on an
  IndexedDB object store (claim and mark done, one transaction each), at most 1,000 jobs
  per drain (`bench/indexeddb.py`)."""


def render_section(command: str, sizes: Sizes, facts: dict[str, str], table: Sequence[str]) -> str:
    """The Markdown of the section, between its markers."""
    machine = [f"- {name}: {value}" for name, value in facts.items()]
    size_line = (
        f"{sizes.jobs:,} jobs per drain, {sizes.repeat} round(s), {sizes.samples} samples per "
        f"latency, enqueue and claim figure, a deep queue of {max(sizes.depth, sizes.jobs):,} jobs"
    )
    return "\n".join(
        [
            SECTION_BEGIN,
            "## `python build.py bench`: every benchmark in one run",
            "",
            textwrap.fill(
                f"The last run of `{command}` ({size_line}). It rewrites this section each "
                "time and leaves the rest of this file as it is.",
                width=88,
            ),
            "",
            *machine,
            "",
            *table,
            "",
            HOW_TO_READ,
            SECTION_END,
        ]
    )


def replace_section(document: str, section: str) -> str:
    """`document` with its bench section replaced by `section`, or with `section` added
    before its first ``## `` heading (at its end when it has none)."""
    begin, end = document.find(SECTION_BEGIN), document.find(SECTION_END)
    if begin != -1 and end > begin:
        return document[:begin] + section + document[end + len(SECTION_END) :]
    if begin != -1 or end != -1:
        raise BuildError(f"{DOC.name}: the bench section's markers are out of order")
    first = document.find("\n## ")
    if first == -1:
        return document.rstrip("\n") + "\n\n" + section + "\n"
    return document[: first + 1] + section + "\n\n" + document[first + 1 :]
