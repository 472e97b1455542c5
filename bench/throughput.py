"""Throughput and latency of pyjobqueue per backend, as ratios to baselines of this run.

Two baselines, each measured in the same process just before the backend:
- the least an asyncio job queue can do: an `asyncio.Queue` feeding the same number of
  worker tasks that run the same no-op job;
- for SQLite and PostgreSQL, the least a durable queue on that database can do: a
  hand-written one on the same database and driver, whose workers claim a row with one
  UPDATE ... RETURNING (FOR UPDATE SKIP LOCKED on PostgreSQL) and mark it done with
  another. It has no leases, retries, events or outcome checks.
The ratios hold on a noisy, shared machine; absolute figures do not.

    python bench/throughput.py --jobs 2000 --workers 4 --backends memory,sqlite,postgres

Postgres needs --postgres-dsn (or PYJOBQUEUE_TEST_POSTGRES_DSN).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pyjobqueue import Job, JobContext, JobQueueClient, JobQueueServer
from pyjobqueue.storage import QueueStorage, open_storage


class Noop(Job[dict[str, Any], int]):
    """Returns its input number: the cost measured is the queue's, not the job's."""

    async def execute(self, input: dict[str, Any], context: JobContext) -> int:
        return int(input["n"])


async def baseline_throughput(jobs: int, workers: int) -> float:
    """Seconds for asyncio.Queue + worker tasks to run `jobs` no-op jobs."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    done = asyncio.Event()
    remaining = jobs

    async def work() -> None:
        nonlocal remaining
        while True:
            await queue.get()
            remaining -= 1
            if remaining == 0:
                done.set()

    start = time.perf_counter()
    for n in range(jobs):
        queue.put_nowait(n)
    tasks = [asyncio.create_task(work()) for _ in range(workers)]
    await done.wait()
    elapsed = time.perf_counter() - start
    for task in tasks:
        task.cancel()
    return elapsed


async def baseline_latency(rounds: int) -> float:
    """Median seconds from handing one job to a waiting worker until its result is back."""
    queue: asyncio.Queue[asyncio.Future[int]] = asyncio.Queue()

    async def work() -> None:
        while True:
            future = await queue.get()
            future.set_result(1)

    task = asyncio.create_task(work())
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        queue.put_nowait(future)
        await future
        samples.append(time.perf_counter() - start)
    task.cancel()
    return statistics.median(samples)


HAND_WRITTEN_PG = {
    "create": "CREATE TABLE {t} (id bigserial PRIMARY KEY, status text NOT NULL, "
    "input jsonb NOT NULL, output jsonb)",
    "index": "CREATE INDEX ON {t} (id) WHERE status = 'pending'",
    "fill": "INSERT INTO {t} (status, input) SELECT 'pending', x FROM unnest($1::jsonb[]) x",
    "claim": "UPDATE {t} SET status = 'running' WHERE id = (SELECT id FROM {t} "
    "WHERE status = 'pending' ORDER BY id FOR UPDATE SKIP LOCKED LIMIT 1) RETURNING id, input",
    "done": "UPDATE {t} SET status = 'done', output = $2 WHERE id = $1",
    "drop": "DROP TABLE {t}",
}


async def hand_written_postgres(dsn: str, jobs: int, workers: int) -> float:
    """Seconds for a minimal SKIP LOCKED queue (one connection per worker) to drain `jobs`."""
    import asyncpg

    table = f"bench_hand_{uuid.uuid4().hex[:8]}"
    q = {name: text.format(t=table) for name, text in HAND_WRITTEN_PG.items()}
    pool = await asyncpg.create_pool(dsn, min_size=workers, max_size=workers)
    try:
        await pool.execute(q["create"])
        await pool.execute(q["index"])
        await pool.execute(q["fill"], [json.dumps({"n": n}) for n in range(jobs)])

        async def work() -> None:
            async with pool.acquire() as connection:
                while (row := await connection.fetchrow(q["claim"])) is not None:
                    output = json.loads(row["input"])["n"]
                    await connection.execute(q["done"], row["id"], json.dumps(output))

        start = time.perf_counter()
        await asyncio.gather(*(work() for _ in range(workers)))
        elapsed = time.perf_counter() - start
        await pool.execute(q["drop"])
        return elapsed
    finally:
        await pool.close()


async def hand_written_sqlite(path: Path, jobs: int, workers: int) -> float:
    """Seconds for a minimal SQLite queue (one shared aiosqlite connection) to drain `jobs`."""
    import aiosqlite

    async with aiosqlite.connect(path) as db:
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute(
            "CREATE TABLE hand (id INTEGER PRIMARY KEY, status TEXT, input TEXT, output TEXT)"
        )
        await db.executemany(
            "INSERT INTO hand (status, input) VALUES ('pending', ?)",
            [(json.dumps({"n": n}),) for n in range(jobs)],
        )
        await db.commit()
        claim = (
            "UPDATE hand SET status = 'running' WHERE id = (SELECT id FROM hand "
            "WHERE status = 'pending' ORDER BY id LIMIT 1) RETURNING id, input"
        )

        async def work() -> None:
            while True:
                async with db.execute(claim) as cursor:
                    row = await cursor.fetchone()
                await db.commit()
                if row is None:
                    return
                output = json.loads(row[1])["n"]
                await db.execute(
                    "UPDATE hand SET status = 'done', output = ? WHERE id = ?",
                    (json.dumps(output), row[0]),
                )
                await db.commit()

        start = time.perf_counter()
        await asyncio.gather(*(work() for _ in range(workers)))
        return time.perf_counter() - start


async def queue_throughput(storage: QueueStorage, jobs: int, workers: int) -> float:
    """Seconds for a server with `workers` workers to drain `jobs` jobs from a batch.

    The end is seen through the server's job_complete events, as the hand-written
    queue's end is seen when its workers find nothing left: neither pays for a client
    waiting on each job (the latency figure measures wait_for).
    """
    client: JobQueueClient[dict[str, Any], int] = JobQueueClient(storage=storage)
    server = JobQueueServer(Noop, storage=storage, worker_count=workers, poll_interval_ms=10)
    client.attach(server)
    done = asyncio.Event()
    completed = 0

    def count(*_args: Any) -> None:
        nonlocal completed
        completed += 1
        if completed == jobs:
            done.set()

    server.on("job_complete", count)
    await client.submit_batch([{"n": n} for n in range(jobs)])
    start = time.perf_counter()
    async with server:
        await done.wait()
        elapsed = time.perf_counter() - start
    return elapsed


async def queue_latency(storage: QueueStorage, rounds: int) -> float:
    """Median seconds from submit to wait_for returning, one job at a time, idle server."""
    client: JobQueueClient[dict[str, Any], int] = JobQueueClient(storage=storage)
    server = JobQueueServer(Noop, storage=storage, worker_count=1, poll_interval_ms=10)
    client.attach(server)
    samples = []
    async with server:
        for n in range(rounds):
            start = time.perf_counter()
            await (await client.submit({"n": n})).wait_for()
            samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def storage_url(backend: str, workdir: Path, dsn: str | None) -> str | None:
    """The URL of a fresh location for `backend`, or None when it cannot run here."""
    if backend == "memory":
        return "memory://"
    if backend == "sqlite":
        return f"sqlite:///{workdir / 'bench.db'}"
    if backend == "postgres":
        return dsn
    raise SystemExit(f"unknown backend {backend!r}")


async def measure(backend: str, url: str, run: Callable[[QueueStorage], Awaitable[float]]) -> float:
    """Run one measurement on a fresh queue of the backend."""
    async with open_storage(url, f"bench-{backend}-{uuid.uuid4().hex[:8]}") as storage:
        try:
            return await run(storage)
        finally:
            await storage.delete_all()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=200, help="latency samples")
    parser.add_argument("--backends", default="memory,sqlite,postgres")
    parser.add_argument("--postgres-dsn", default=os.environ.get("PYJOBQUEUE_TEST_POSTGRES_DSN"))
    args = parser.parse_args()

    print(f"{args.jobs} jobs, {args.workers} workers, {args.rounds} latency samples")
    print(
        "| backend | jobs/s | vs hand-written queue on the same database "
        "| vs asyncio.Queue | median latency | latency vs asyncio.Queue |"
    )
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for backend in args.backends.split(","):
            url = storage_url(backend, Path(tmp), args.postgres_dsn)
            if url is None:
                print(f"| {backend} | skipped (no DSN) | | | | |")
                continue
            base_seconds = await baseline_throughput(args.jobs, args.workers)
            base_latency = await baseline_latency(args.rounds)
            hand = "n/a"
            if backend == "postgres":
                hand_seconds = await hand_written_postgres(url, args.jobs, args.workers)
            elif backend == "sqlite":
                hand_db = Path(tmp) / f"hand-{uuid.uuid4().hex[:8]}.db"
                hand_seconds = await hand_written_sqlite(hand_db, args.jobs, args.workers)
            seconds = await measure(
                backend, url, lambda s: queue_throughput(s, args.jobs, args.workers)
            )
            if backend != "memory":
                hand = f"{hand_seconds / seconds:.2f} ({args.jobs / hand_seconds:,.0f} jobs/s)"
            latency = await measure(backend, url, lambda s: queue_latency(s, args.rounds))
            print(
                f"| {backend} | {args.jobs / seconds:,.0f} | {hand} "
                f"| {base_seconds / seconds:.4f} "
                f"| {latency * 1000:.2f} ms | {latency / base_latency:,.0f}x |"
            )


if __name__ == "__main__":
    asyncio.run(main())
