"""PgQueuer 1.6.0 for bench/peers.py: drains, latency and enqueues, each in a schema of its own.

Every run installs PgQueuer's schema under a fresh name prefix (so that a PgQueuer
installation already in that database is not touched) and uninstalls it after,
checking that nothing named with the prefix is left. Its workers run as its README
sets them up: a QueueManager (or the PgQueuer application, which adds its scheduler)
on one asyncpg connection, in the same process as the producer, with an entrypoint
that does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Literal

from measure import latency_samples

try:
    import asyncpg
    import pgqueuer
    from pgqueuer import AsyncpgDriver, Job, PgQueuer, Queries, QueueManager
    from pgqueuer.adapters.persistence.qb import (
        QueryBuilderEnvironment,
        QueryQueueBuilder,
        QuerySchedulerBuilder,
    )
    from pgqueuer.domain.settings import DBSettings
    from pgqueuer.domain.types import Channel
except ImportError as missing:
    raise SystemExit(
        f"bench/peers.py needs pgqueuer 1.6.0 and asyncpg ({missing.name} is missing): "
        "`python build.py bench` installs them in .venv-bench"
    ) from None

PGQUEUER_VERSION = "1.6.0"
ENTRYPOINT = "noop"
# How PgQueuer's workers run: "capped" is a QueueManager holding at most `workers` jobs
# at a time; "defaults" a QueueManager with every default of run(); "application" the
# PgQueuer object of its README (QueueManager and SchedulerManager), at its defaults.
Mode = Literal["capped", "defaults", "application"]


def version() -> str:
    """The installed PgQueuer's version."""
    return str(pgqueuer.__version__)


def queries_for(driver: AsyncpgDriver, settings: DBSettings) -> Queries:
    """PgQueuer's queries on `driver`, for the tables named by `settings`."""
    return Queries(
        driver,
        qbe=QueryBuilderEnvironment(settings),
        qbq=QueryQueueBuilder(settings),
        qbs=QuerySchedulerBuilder(settings),
    )


@dataclass
class Installed:
    """PgQueuer's schema under a fresh prefix, and a connection to enqueue on."""

    dsn: str
    settings: DBSettings
    connection: asyncpg.Connection
    queries: Queries

    async def count(self, table: str, where: str = "") -> int:
        """Rows in one of PgQueuer's tables."""
        return int(await self.connection.fetchval(f"SELECT count(*) FROM {table} {where}"))


@contextlib.asynccontextmanager
async def installed(dsn: str) -> AsyncIterator[Installed]:
    """Install PgQueuer's schema under a fresh prefix for the block; uninstall and check."""
    settings = DBSettings(prefix=f"bench_peers_{uuid.uuid4().hex[:8]}_")
    connection = await asyncpg.connect(dsn)
    queries = queries_for(AsyncpgDriver(connection), settings)
    try:
        await queries.install()
        try:
            yield Installed(dsn, settings, connection, queries)
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


def payload(n: int) -> bytes:
    """The no-op job's payload: its number, as JSON (pyjobqueue's input is the same)."""
    return json.dumps({"n": n}).encode()


async def enqueue(place: Installed, first: int, count: int) -> None:
    """Enqueue `count` jobs in one call of Queries.enqueue."""
    numbers = range(first, first + count)
    await place.queries.enqueue([ENTRYPOINT] * count, [payload(n) for n in numbers], [0] * count)


@dataclass
class Workers:
    """A QueueManager or PgQueuer application on a connection of its own."""

    run: Callable[[], Any]  # its run(...) with the mode's arguments, not yet awaited
    shutdown: asyncio.Event
    entrypoint: Callable[[Callable[[Job], Any]], Any]


def workers_for(connection: asyncpg.Connection, place: Installed, mode: Mode, cap: int) -> Workers:
    """PgQueuer's workers of `mode` on `connection`, for the schema of `place`."""
    queries = queries_for(AsyncpgDriver(connection), place.settings)
    channel = Channel(place.settings.channel)
    if mode == "application":
        app = PgQueuer(AsyncpgDriver(connection), channel=channel, queries=queries)
        return Workers(app.run, app.shutdown, app.entrypoint(ENTRYPOINT))
    manager = QueueManager(queries, channel=channel)
    if mode == "defaults":
        return Workers(manager.run, manager.shutdown, manager.entrypoint(ENTRYPOINT))
    # max_concurrent_tasks caps the jobs this manager holds picked (until their completion
    # is logged); run() refuses max_concurrent_tasks < 2 * batch_size, so its default
    # batch_size (10) cannot go with 4 workers: cap // 2 is the largest allowed. Not used:
    # the entrypoint's concurrency_limit, a cap counted in SQL across all managers.
    return Workers(
        lambda: manager.run(max_concurrent_tasks=cap, batch_size=cap // 2),
        manager.shutdown,
        manager.entrypoint(ENTRYPOINT),
    )


async def drain(dsn: str, jobs: int, mode: Mode, cap: int = 4) -> float:
    """Seconds from starting PgQueuer's workers until they ran and logged `jobs` queued jobs."""
    async with installed(dsn) as place:
        await enqueue(place, 0, jobs)
        connection = await asyncpg.connect(dsn)
        try:
            workers = workers_for(connection, place, mode, cap)
            done = 0

            async def noop(job: Job) -> None:
                nonlocal done
                done += 1
                if done == jobs:
                    workers.shutdown.set()

            workers.entrypoint(noop)
            # It runs until its shutdown event is set, at the N-th job. On the way out
            # run() flushes its buffered completions, which log the jobs as successful and
            # delete them from its queue table, so the clock stops when run() returns.
            start = time.perf_counter()
            try:
                await asyncio.wait_for(workers.run(), timeout=max(120.0, jobs / 10))
            except TimeoutError:
                raise RuntimeError(f"pgqueuer: only {done} of {jobs} jobs ran") from None
            elapsed = time.perf_counter() - start
        finally:
            await connection.close()
        left = await place.count(place.settings.qualified.queue_table)
        logged = await place.count(
            place.settings.qualified.queue_table_log, "WHERE status = 'successful'"
        )
        if done != jobs or left != 0 or logged != jobs:
            raise RuntimeError(f"pgqueuer: {done} of {jobs} ran, {left} left, {logged} logged")
        return elapsed


async def latency(dsn: str, rounds: int) -> list[float]:
    """Milliseconds from enqueue until the entrypoint has run, one job after the other.

    Its workers are a QueueManager at its defaults, woken by its LISTEN/NOTIFY channel.
    The clock stops when the entrypoint returns, before PgQueuer logs the job done.
    """
    async with installed(dsn) as place:
        connection = await asyncpg.connect(dsn)
        try:
            workers = workers_for(connection, place, "defaults", 0)
            ran: dict[int, asyncio.Event] = {}

            async def noop(job: Job) -> None:
                ran[int(json.loads(job.payload or b"{}")["n"])].set()

            workers.entrypoint(noop)
            task = asyncio.create_task(workers.run())

            async def submit_and_wait(n: int) -> None:
                event = ran[n] = asyncio.Event()
                await enqueue(place, n, 1)
                await asyncio.wait_for(event.wait(), timeout=30)

            try:
                await asyncio.sleep(0.5)  # its listener is up
                return await latency_samples(submit_and_wait, rounds)
            finally:
                workers.shutdown.set()
                await task
        finally:
            await connection.close()


async def enqueue_samples(dsn: str, count: int) -> list[float]:
    """Milliseconds of each of `count` enqueues of one job, one after the other."""
    async with installed(dsn) as place:
        return await latency_samples(lambda n: enqueue(place, n, 1), count)


async def enqueue_batch_seconds(dsn: str, size: int, warm: bool = False) -> float:
    """Seconds of one Queries.enqueue of `size` jobs; with `warm`, of the second of two."""
    async with installed(dsn) as place:
        if warm:
            await enqueue(place, size, size)
        start = time.perf_counter()
        await enqueue(place, 0, size)
        return time.perf_counter() - start
