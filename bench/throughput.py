"""Throughput and latency of pyjobqueue per backend, as ratios to a baseline of this run.

The baseline is the least an asyncio job queue can do: an `asyncio.Queue` feeding the
same number of worker tasks that run the same no-op job. Every backend is measured in
the same process right after it, so the ratios hold on a noisy, shared machine.

    python bench/throughput.py --jobs 2000 --workers 4 --backends memory,sqlite,postgres

Postgres needs --postgres-dsn (or PYJOBQUEUE_TEST_POSTGRES_DSN).
"""

from __future__ import annotations

import argparse
import asyncio
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


async def queue_throughput(storage: QueueStorage, jobs: int, workers: int) -> float:
    """Seconds for a server with `workers` workers to drain `jobs` jobs from a batch."""
    client: JobQueueClient[dict[str, Any], int] = JobQueueClient(storage=storage)
    server = JobQueueServer(Noop, storage=storage, worker_count=workers, poll_interval_ms=10)
    client.attach(server)
    handles = await client.submit_batch([{"n": n} for n in range(jobs)])
    start = time.perf_counter()
    async with server:
        await asyncio.gather(*(handle.wait_for() for handle in handles))
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

    base_seconds = await baseline_throughput(args.jobs, args.workers)
    base_latency = await baseline_latency(args.rounds)
    print(f"baseline: asyncio.Queue, {args.jobs} jobs, {args.workers} workers")
    print("| backend | jobs/s | throughput vs baseline | median latency | latency vs baseline |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for backend in args.backends.split(","):
            url = storage_url(backend, Path(tmp), args.postgres_dsn)
            if url is None:
                print(f"| {backend} | skipped (no DSN) | | | |")
                continue
            seconds = await measure(
                backend, url, lambda s: queue_throughput(s, args.jobs, args.workers)
            )
            latency = await measure(backend, url, lambda s: queue_latency(s, args.rounds))
            print(
                f"| {backend} | {args.jobs / seconds:,.0f} | {base_seconds / seconds:.4f} "
                f"| {latency * 1000:.2f} ms | {latency / base_latency:,.0f}x |"
            )


if __name__ == "__main__":
    asyncio.run(main())
