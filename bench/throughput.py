"""Throughput and latency of pyjobqueue per backend, as ratios to baselines of this run.

Each backend's drain rate is compared with its floor, measured in the same process
just before it, round by round (--repeat):
- for memory, the least an asyncio job queue can do: an `asyncio.Queue` feeding the
  same number of worker tasks that run the same no-op job;
- for SQLite and PostgreSQL, the least a durable queue on that database can do: a
  hand-written one on the same database and driver, whose workers claim a row with one
  UPDATE ... RETURNING (FOR UPDATE SKIP LOCKED on PostgreSQL) and mark it done with
  another. It has no leases, retries, events or outcome checks.
Latency (p50 and p99 of back-to-back submits, each awaited with wait_for before the
next) is compared with an `asyncio.Queue` handing a future to one waiting task. The
ratios hold on a noisy, shared machine; absolute figures do not. With --json the rows
also go to a file, for `python build.py bench`.

    python bench/throughput.py --jobs 2000 --workers 4 --backends memory,sqlite,postgres

Postgres needs --postgres-dsn (or PYJOBQUEUE_TEST_POSTGRES_DSN).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import tempfile
import time
import uuid
from pathlib import Path

from measure import (
    Rounds,
    Row,
    add_json_argument,
    latency_rows,
    latency_samples,
    progress,
    report,
    rounds_with_warmup,
)
from pyjobqueue_runs import on_fresh_queue, queue_latency, queue_throughput


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


async def baseline_latency(rounds: int) -> list[float]:
    """Milliseconds from handing each job to a waiting worker until its result is back."""
    queue: asyncio.Queue[asyncio.Future[int]] = asyncio.Queue()

    async def work() -> None:
        while True:
            future = await queue.get()
            future.set_result(1)

    async def submit_and_wait(n: int) -> None:
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        queue.put_nowait(future)
        await future

    task = asyncio.create_task(work())
    try:
        return await latency_samples(submit_and_wait, rounds)
    finally:
        task.cancel()


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
        # pyjobqueue's settings: WAL, and no fsync at each commit (only at checkpoints).
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=NORMAL")
        await db.execute(
            "CREATE TABLE hand (id INTEGER PRIMARY KEY, status TEXT, input TEXT, output TEXT)"
        )
        # As on PostgreSQL: without it, each claim would walk past every job done before it.
        await db.execute("CREATE INDEX hand_pending ON hand (id) WHERE status = 'pending'")
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


def storage_url(backend: str, workdir: Path, dsn: str | None) -> str | None:
    """The URL of a fresh location for `backend`, or None when it cannot run here."""
    if backend == "memory":
        return "memory://"
    if backend == "sqlite":
        return f"sqlite:///{workdir / 'bench.db'}"
    if backend == "postgres":
        return dsn
    raise SystemExit(f"unknown backend {backend!r}")


POLL_MS = 10.0  # pyjobqueue polls for new jobs this often (its default is 100 ms)
BACKEND_NAMES = {"memory": "memory", "sqlite": "SQLite", "postgres": "PostgreSQL"}


def floor_labels(name: str, workers: int) -> dict[str, str]:
    """What the rows call pyjobqueue and the floors it is compared with."""
    return {
        "ours": f"{workers} workers",
        "asyncio": f"asyncio.Queue, {workers} tasks (floor)",
        "hand": f"hand-written {name} queue, {workers} workers (floor)",
    }


async def drain_rounds(backend: str, url: str, workdir: Path, args: argparse.Namespace) -> Rounds:
    """Jobs/s of the floors and pyjobqueue on `backend`, round by round."""
    label = floor_labels(BACKEND_NAMES[backend], args.workers)
    rounds = Rounds("jobs/s")
    for round_number, jobs in rounds_with_warmup(args.jobs, args.repeat):
        figures = rounds if round_number else Rounds("jobs/s")
        if backend == "memory":
            seconds = await baseline_throughput(jobs, args.workers)
            figures.add(label["asyncio"], jobs / seconds)
        elif backend == "postgres":
            seconds = await hand_written_postgres(url, jobs, args.workers)
            figures.add(label["hand"], jobs / seconds)
        elif backend == "sqlite":
            hand_db = workdir / f"hand-{uuid.uuid4().hex[:8]}.db"
            seconds = await hand_written_sqlite(hand_db, jobs, args.workers)
            figures.add(label["hand"], jobs / seconds)
        seconds = await on_fresh_queue(
            url,
            functools.partial(
                queue_throughput, jobs=jobs, workers=args.workers, poll_interval_ms=POLL_MS
            ),
        )
        figures.add(label["ours"], jobs / seconds)
    return rounds


async def backend_rows(
    backend: str, url: str, workdir: Path, args: argparse.Namespace
) -> list[Row]:
    """The drain and latency rows of one backend against its floors."""
    name = BACKEND_NAMES[backend]
    label = floor_labels(name, args.workers)
    rounds = await drain_rounds(backend, url, workdir, args)
    drain = f"drain, {name}, {args.jobs:,} jobs"
    # The floor of a durable queue is the hand-written one; asyncio.Queue is memory's.
    floor = label["hand"] if label["hand"] in rounds.values else label["asyncio"]
    rows = [rounds.row(drain, label["ours"], floor)]
    base = await baseline_latency(args.rounds)
    samples = await on_fresh_queue(
        url, lambda s: queue_latency(s, args.rounds, poll_interval_ms=10)
    )
    return rows + latency_rows(
        f"latency, {name}", ("1 worker, submit then wait_for", samples),
        ("asyncio.Queue, 1 task (floor)", base),
    )  # fmt: skip


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=200, help="latency samples")
    parser.add_argument("--repeat", type=int, default=1, help="drain rounds; medians reported")
    parser.add_argument("--backends", default="memory,sqlite,postgres")
    parser.add_argument("--postgres-dsn", default=os.environ.get("PYJOBQUEUE_TEST_POSTGRES_DSN"))
    add_json_argument(parser)
    return parser.parse_args()


async def main() -> None:
    args = parse_args()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        for backend in args.backends.split(","):
            url = storage_url(backend, Path(tmp), args.postgres_dsn)
            if url is None:
                progress(f"{backend}: skipped (no --postgres-dsn)")
                continue
            progress(f"throughput: {backend}")
            rows += await backend_rows(backend, url, Path(tmp), args)
    report(rows, args.json)


if __name__ == "__main__":
    asyncio.run(main())
