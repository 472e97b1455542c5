"""Drain throughput of three PostgreSQL job queues, as ratios to a hand-written one.

All three run the same no-op job in the same process, one after another, against the
same PostgreSQL database, with the same number of concurrent workers:

1. a hand-written queue, the least a durable queue on PostgreSQL can do: one
   UPDATE ... FOR UPDATE SKIP LOCKED claims a row, another marks it done, one
   connection per worker (`hand_written_postgres` of bench/throughput.py);
2. pyjobqueue on PostgreSQL (`queue_throughput` of bench/throughput.py);
3. PgQueuer 1.6.0 on asyncpg: its QueueManager running an entrypoint that does nothing,
   capped at the same number of jobs at a time.

Two more rows show each at its widest: PgQueuer with all its defaults (it dequeues
batches of 10 and runs every job it holds, with no cap) and pyjobqueue with five times
the workers (it claims as many jobs per round trip as it has idle workers).

Every run starts from an empty queue: the jobs are stored in one batch, then the clock
runs from starting the queue's workers until all of them are done. Each queue runs
--repeat times, interleaved round by round (hand-written, pyjobqueue, PgQueuer) so that
a noisy, shared machine slows all three alike; the table gives the median jobs/s and
the median of each round's ratio to the hand-written queue of that round. The ratios
hold on a noisy machine; the absolute figures do not.

Set up, from the repository's root, in a venv of its own (asyncpg comes with the
extras: neither pyjobqueue nor pgqueuer requires it without them):

    python -m venv .venv-bench
    .venv-bench/bin/pip install -e '.[postgres]' 'pgqueuer[asyncpg]==1.6.0'
    .venv-bench/bin/python bench/peers.py --postgres-dsn postgresql://user@host:5432/db

--postgres-dsn defaults to PYJOBQUEUE_TEST_POSTGRES_DSN. Nothing is left in the
database: the hand-written queue drops its table, pyjobqueue's jobs are deleted, and
PgQueuer's schema, installed for each run under a fresh name prefix (so that a PgQueuer
installation already in that database is not touched), is uninstalled after the run.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from pyjobqueue import JobStatus
from pyjobqueue.storage import open_storage

try:
    import asyncpg
    import pgqueuer
    from pgqueuer import AsyncpgDriver, Job, Queries, QueueManager
    from pgqueuer.adapters.persistence.qb import (
        QueryBuilderEnvironment,
        QueryQueueBuilder,
        QuerySchedulerBuilder,
    )
    from pgqueuer.domain.settings import DBSettings
    from pgqueuer.domain.types import Channel
except ImportError as missing:
    raise SystemExit(
        f"bench/peers.py needs pgqueuer 1.6.0 and asyncpg ({missing.name} is missing). "
        "Install them in a venv of their own, from the repository's root:\n"
        "    python -m venv .venv-bench\n"
        "    .venv-bench/bin/pip install -e '.[postgres]' 'pgqueuer[asyncpg]==1.6.0'\n"
        "    .venv-bench/bin/python bench/peers.py --postgres-dsn postgresql://..."
    ) from None

PGQUEUER_VERSION = "1.6.0"
ENTRYPOINT = "noop"
QUEUES = ("hand-written", "pyjobqueue", "pgqueuer", "pyjobqueue-wide", "pgqueuer-defaults")
WIDE = 5  # pyjobqueue-wide runs WIDE times --workers slots, as PgQueuer's defaults run uncapped


def load_throughput() -> ModuleType:
    """bench/throughput.py, imported from the folder of this file."""
    bench_dir = str(Path(__file__).resolve().parent)
    if bench_dir not in sys.path:
        sys.path.insert(0, bench_dir)
    return importlib.import_module("throughput")


async def hand_written(throughput: ModuleType, dsn: str, jobs: int, workers: int) -> float:
    """Seconds for the hand-written queue (a table of its own, dropped after) to drain."""
    seconds: float = await throughput.hand_written_postgres(dsn, jobs, workers)
    return seconds


async def pyjobqueue_run(throughput: ModuleType, dsn: str, jobs: int, workers: int) -> float:
    """Seconds for pyjobqueue to drain `jobs` from a fresh queue, whose jobs are then deleted."""
    async with open_storage(dsn, f"bench-peers-{uuid.uuid4().hex[:8]}") as storage:
        try:
            if (left := await storage.size()) != 0:
                raise RuntimeError(f"pyjobqueue: a fresh queue holds {left} jobs")
            seconds: float = await throughput.queue_throughput(storage, jobs, workers)
            if (done := await storage.size(JobStatus.COMPLETED)) != jobs:
                raise RuntimeError(f"pyjobqueue: {done} of {jobs} jobs completed")
            return seconds
        finally:
            await storage.delete_all()


def pgqueuer_queries(driver: AsyncpgDriver, settings: DBSettings) -> Queries:
    """PgQueuer's queries on `driver`, for the tables named by `settings`."""
    return Queries(
        driver,
        qbe=QueryBuilderEnvironment(settings),
        qbq=QueryQueueBuilder(settings),
        qbs=QuerySchedulerBuilder(settings),
    )


@dataclass
class NoopCounter:
    """PgQueuer's entrypoint: does nothing but count, and stops the manager at the last job."""

    jobs: int
    shutdown: asyncio.Event
    done: int = 0

    async def __call__(self, job: Job) -> None:
        self.done += 1
        if self.done == self.jobs:
            self.shutdown.set()


async def pgqueuer_drain(dsn: str, settings: DBSettings, jobs: int, workers: int | None) -> float:
    """Seconds from starting a QueueManager until it has run and logged all `jobs`."""
    connection = await asyncpg.connect(dsn)
    try:
        # One QueueManager on one asyncpg connection (AsyncpgDriver), as PgQueuer's README
        # sets it up. QueueManager.run keeps its defaults (dequeue_timeout, heartbeat_timeout,
        # log_aggregation_interval, continuous mode; no concurrency_limit on the entrypoint)
        # but for two settings, which make its concurrency that of the other two queues:
        # - max_concurrent_tasks=workers: its cap on the jobs this manager holds picked (until
        #   their completion is logged); without it, it dequeues batch after batch and starts
        #   a task for every job while any are queued, with no cap at all;
        # - batch_size=workers // 2: run() refuses max_concurrent_tasks < 2 * batch_size, so
        #   its default batch_size (10) cannot go with 4 workers; this is the largest allowed.
        # Not used: the entrypoint's concurrency_limit=workers, a cap counted in SQL across all
        # managers. With the default batch_size a finished job stays picked until 10 are
        # buffered or its 0.1 s log flush, so the slots free up about ten times a second.
        manager = QueueManager(
            pgqueuer_queries(AsyncpgDriver(connection), settings),
            channel=Channel(settings.channel),
        )
        # It runs until its shutdown event is set: the entrypoint sets it at the N-th job. On
        # the way out run() flushes its buffered completions, which log the jobs as successful
        # and delete them from its queue table, so the clock stops when run() returns.
        counter = NoopCounter(jobs, manager.shutdown)
        manager.entrypoint(ENTRYPOINT)(counter)
        start = time.perf_counter()
        try:
            run = (
                manager.run()
                if workers is None
                else manager.run(max_concurrent_tasks=workers, batch_size=workers // 2)
            )
            await asyncio.wait_for(run, timeout=max(120.0, jobs / 10))
        except TimeoutError:
            raise RuntimeError(f"pgqueuer: only {counter.done} of {jobs} jobs ran") from None
        elapsed = time.perf_counter() - start
        if counter.done != jobs:
            raise RuntimeError(f"pgqueuer: its entrypoint ran {counter.done} of {jobs} jobs")
        return elapsed
    finally:
        await connection.close()


async def pgqueuer_run(dsn: str, jobs: int, workers: int | None) -> float:
    """Install PgQueuer's schema under a fresh prefix, drain `jobs`, check, uninstall."""
    settings = DBSettings(prefix=f"bench_peers_{uuid.uuid4().hex[:8]}_")
    connection = await asyncpg.connect(dsn)
    queries = pgqueuer_queries(AsyncpgDriver(connection), settings)
    try:
        await queries.install()
        try:
            queue, log = settings.qualified.queue_table, settings.qualified.queue_table_log
            if (left := await connection.fetchval(f"SELECT count(*) FROM {queue}")) != 0:
                raise RuntimeError(f"pgqueuer: a fresh queue holds {left} jobs")
            await queries.enqueue(
                [ENTRYPOINT] * jobs,
                [json.dumps({"n": n}).encode() for n in range(jobs)],
                [0] * jobs,
            )
            seconds = await pgqueuer_drain(dsn, settings, jobs, workers)
            left = await connection.fetchval(f"SELECT count(*) FROM {queue}")
            logged = await connection.fetchval(
                f"SELECT count(*) FROM {log} WHERE status = 'successful'"
            )
            if left != 0 or logged != jobs:
                raise RuntimeError(
                    f"pgqueuer: {left} jobs left in its queue, {logged} of {jobs} logged done"
                )
            return seconds
        finally:
            await queries.uninstall()
            await check_uninstalled(connection, settings.prefix)
    finally:
        await connection.close()


async def check_uninstalled(connection: asyncpg.Connection, prefix: str) -> None:
    """Fail if any relation, type or function named with `prefix` survived the uninstall."""
    pattern = prefix.replace("_", r"\_") + "%"
    left = await connection.fetchval(
        "SELECT (SELECT count(*) FROM pg_class WHERE relname LIKE $1)"
        " + (SELECT count(*) FROM pg_type WHERE typname LIKE $1)"
        " + (SELECT count(*) FROM pg_proc WHERE proname LIKE $1)",
        pattern,
    )
    if left:
        raise RuntimeError(f"pgqueuer: {left} objects named {prefix}* left after uninstall")


@dataclass
class Results:
    """Seconds per round for each queue."""

    jobs: int
    seconds: dict[str, list[float]] = field(default_factory=lambda: {q: [] for q in QUEUES})

    def median_rate(self, queue: str) -> float:
        return statistics.median(self.jobs / s for s in self.seconds[queue])

    def median_ratio(self, queue: str) -> float:
        """Median over rounds of the queue's jobs/s over the hand-written queue's."""
        pairs = zip(self.seconds["hand-written"], self.seconds[queue], strict=True)
        return statistics.median(hand / seconds for hand, seconds in pairs)


def table(results: Results) -> list[str]:
    """The Markdown table of the results."""
    labels = {
        "hand-written": "hand-written SKIP LOCKED queue (baseline)",
        "pyjobqueue": "pyjobqueue",
        "pgqueuer": f"PgQueuer {pgqueuer.__version__}",
        "pyjobqueue-wide": f"pyjobqueue, {WIDE}x the workers",
        "pgqueuer-defaults": f"PgQueuer {pgqueuer.__version__}, its defaults (no cap)",
    }
    lines = ["| queue | jobs/s (median) | vs hand-written (median ratio) |", "|---|---|---|"]
    for queue in QUEUES:
        lines.append(
            f"| {labels[queue]} | {results.median_rate(queue):,.0f} "
            f"| {results.median_ratio(queue):.2f} |"
        )
    return lines


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3, help="rounds; medians are reported")
    parser.add_argument("--postgres-dsn", default=os.environ.get("PYJOBQUEUE_TEST_POSTGRES_DSN"))
    args = parser.parse_args()
    if not args.postgres_dsn:
        parser.error("needs --postgres-dsn or PYJOBQUEUE_TEST_POSTGRES_DSN")
    if args.jobs < 1 or args.repeat < 1:
        parser.error("--jobs and --repeat must be at least 1")
    if args.workers < 2:
        parser.error("--workers must be at least 2: PgQueuer needs max_concurrent_tasks >= 2")
    return args


async def main() -> None:
    args = parse_args()
    if pgqueuer.__version__ != PGQUEUER_VERSION:
        print(
            f"warning: pgqueuer {pgqueuer.__version__} is installed, "
            f"this benchmark was written for {PGQUEUER_VERSION}",
            file=sys.stderr,
        )
    throughput = load_throughput()
    dsn: str = args.postgres_dsn
    results = Results(args.jobs)
    for round_number in range(1, args.repeat + 1):
        runs: dict[str, Callable[[], Awaitable[float]]] = {
            "hand-written": lambda: hand_written(throughput, dsn, args.jobs, args.workers),
            "pyjobqueue": lambda: pyjobqueue_run(throughput, dsn, args.jobs, args.workers),
            "pgqueuer": lambda: pgqueuer_run(dsn, args.jobs, args.workers),
            "pyjobqueue-wide": lambda: pyjobqueue_run(
                throughput, dsn, args.jobs, args.workers * WIDE
            ),
            "pgqueuer-defaults": lambda: pgqueuer_run(dsn, args.jobs, None),
        }
        for queue, run in runs.items():
            results.seconds[queue].append(await run())
        rates = ", ".join(f"{q} {args.jobs / results.seconds[q][-1]:,.0f}" for q in QUEUES)
        print(f"round {round_number}/{args.repeat}: {rates} jobs/s", file=sys.stderr)

    print(
        f"{args.jobs} no-op jobs, {args.workers} workers, median of {args.repeat} rounds, "
        "one PostgreSQL database"
    )
    print("\n".join(table(results)))


if __name__ == "__main__":
    asyncio.run(main())
