"""procrastinate 3.10.0 for bench/peers.py: drains, latency and defers, in a schema of its own.

procrastinate runs as its quick start sets it up: an App on a PsycopgConnector (psycopg 3
and its pool), an async task that does nothing, its schema applied by the schema
manager, and a worker at its defaults (one job at a time, LISTEN/NOTIFY on) started
with run_worker_async in the same process as the producer. Its tables have fixed
names, so each run creates a fresh PostgreSQL schema, puts it first on the search_path
of the App's connections, applies procrastinate's schema there and drops it after.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from measure import latency_samples

try:
    import procrastinate
    import psycopg
except ImportError as missing:
    raise SystemExit(
        f"bench/peers.py needs procrastinate 3.10.0 ({missing.name} is missing): "
        "`python build.py bench` installs it in .venv-bench"
    ) from None

PROCRASTINATE_VERSION = "3.10.0"


def version() -> str:
    """The installed procrastinate's version."""
    return str(procrastinate.__version__)


@dataclass
class Noop:
    """What the task does: nothing but call `on_run` with its number."""

    on_run: Callable[[int], None] = field(default=lambda n: None)


@dataclass
class Installed:
    """An open App whose schema is applied in a fresh PostgreSQL schema, and its task."""

    app: procrastinate.App
    task: Any  # procrastinate.tasks.Task
    body: Noop

    async def worker(self, *, wait: bool, concurrency: int = 1) -> None:
        """procrastinate's worker in this process (concurrency 1 is its default)."""
        await self.app.run_worker_async(
            wait=wait, concurrency=concurrency, install_signal_handlers=False
        )


@contextlib.asynccontextmanager
async def installed(dsn: str) -> AsyncIterator[Installed]:
    """An App in a fresh schema for the block; the schema is dropped after."""
    schema = f"bench_procrastinate_{uuid.uuid4().hex[:8]}"
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as admin:
        await admin.execute(f"CREATE SCHEMA {schema}")
        try:
            connector = procrastinate.PsycopgConnector(
                conninfo=dsn, kwargs={"options": f"-c search_path={schema}"}
            )
            app = procrastinate.App(connector=connector)
            body = Noop()

            async def noop(n: int) -> None:
                body.on_run(n)

            task = app.task(name="noop")(noop)
            async with app.open_async():
                await app.schema_manager.apply_schema_async()
                yield Installed(app, task, body)
        finally:
            await admin.execute(f"DROP SCHEMA {schema} CASCADE")


async def defer_batches(place: Installed, jobs: int, batch: int = 5_000) -> None:
    """Store `jobs` jobs with batch_defer_async, `batch` at a time."""
    for first in range(0, jobs, batch):
        numbers = range(first, min(first + batch, jobs))
        await place.task.batch_defer_async(*({"n": n} for n in numbers))


async def drain(dsn: str, jobs: int, concurrency: int = 1) -> float:
    """Seconds for a worker (wait=False: it stops when none is left) to run `jobs` jobs."""
    async with installed(dsn) as place:
        await defer_batches(place, jobs)
        ran = 0

        def count(n: int) -> None:
            nonlocal ran
            ran += 1

        place.body.on_run = count
        start = time.perf_counter()
        await place.worker(wait=False, concurrency=concurrency)
        elapsed = time.perf_counter() - start
        async with place.app.connector.pool.connection() as connection:
            cursor = await connection.execute(
                "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'"
            )
            succeeded = (await cursor.fetchone() or (0,))[0]
        if ran != jobs or succeeded != jobs:
            raise RuntimeError(f"procrastinate: {ran} of {jobs} ran, {succeeded} succeeded")
        return elapsed


async def latency(dsn: str, rounds: int) -> list[float]:
    """Milliseconds from defer_async until the task has run, one job after the other.

    The clock stops when the task's body returns, before procrastinate marks it done.
    """
    async with installed(dsn) as place:
        ran: dict[int, asyncio.Event] = {}
        place.body.on_run = lambda n: ran[n].set()
        worker = asyncio.create_task(place.worker(wait=True))

        async def submit_and_wait(n: int) -> None:
            event = ran[n] = asyncio.Event()
            await place.task.defer_async(n=n)
            await asyncio.wait_for(event.wait(), timeout=30)

        try:
            await asyncio.sleep(0.5)  # its listener is up
            return await latency_samples(submit_and_wait, rounds)
        finally:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker


async def defer_samples(dsn: str, count: int) -> list[float]:
    """Milliseconds of each of `count` defer_async calls, one after the other."""
    async with installed(dsn) as place:
        return await latency_samples(lambda n: place.task.defer_async(n=n), count)


async def defer_batch_seconds(dsn: str, size: int) -> float:
    """Seconds of one batch_defer_async of `size` jobs."""
    async with installed(dsn) as place:
        start = time.perf_counter()
        await place.task.batch_defer_async(*({"n": n} for n in range(size)))
        return time.perf_counter() - start
