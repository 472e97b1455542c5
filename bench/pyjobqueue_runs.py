"""pyjobqueue's side of every benchmark: the no-op job, drains, latency and submits.

Each function runs pyjobqueue as an application would, on a storage it is given; the
benchmarks compare what it measures with a floor (bench/throughput.py) or a peer
library (bench/peers.py, bench/sqlite_peers.py), and bench/depth.py with itself on a
deep queue. The defaults are the library's own (one worker, polling every 100 ms).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from measure import latency_samples

from pyjobqueue import Job, JobContext, JobQueueClient, JobQueueServer
from pyjobqueue.storage import QueueStorage, open_storage

DEFAULT_WORKERS = 1  # JobQueueServer's worker_count
DEFAULT_POLL_MS = 100.0  # JobQueueServer's poll_interval_ms

T = TypeVar("T")


class Noop(Job[dict[str, Any], int]):
    """Returns its input number: the cost measured is the queue's, not the job's."""

    async def execute(self, input: dict[str, Any], context: JobContext) -> int:
        return int(input["n"])


async def drain_seconds(
    storage: QueueStorage, jobs: int, workers: int, poll_interval_ms: float = DEFAULT_POLL_MS
) -> float:
    """Seconds from starting a server with `workers` workers until `jobs` jobs completed.

    The end is seen through the server's job_complete events, as the hand-written
    queue's end is seen when its workers find nothing left: neither pays for a client
    waiting on each job (the latency figure measures wait_for). Jobs still queued after
    the `jobs`-th are left where they are.
    """
    server = JobQueueServer(
        Noop, storage=storage, worker_count=workers, poll_interval_ms=poll_interval_ms
    )
    done = asyncio.Event()
    completed = 0

    def count(*_args: Any) -> None:
        nonlocal completed
        completed += 1
        if completed == jobs:
            done.set()

    server.on("job_complete", count)
    start = time.perf_counter()
    async with server:
        await done.wait()
        elapsed = time.perf_counter() - start
    return elapsed


async def submit_batches(storage: QueueStorage, jobs: int, batch: int = 5_000) -> None:
    """Store `jobs` no-op jobs with submit_batch, `batch` at a time."""
    client: JobQueueClient[dict[str, Any], int] = JobQueueClient(storage=storage)
    for first in range(0, jobs, batch):
        await client.submit_batch([{"n": n} for n in range(first, min(first + batch, jobs))])


async def queue_throughput(
    storage: QueueStorage, jobs: int, workers: int, poll_interval_ms: float = DEFAULT_POLL_MS
) -> float:
    """Seconds for a server with `workers` workers to drain `jobs` jobs stored in a batch."""
    await submit_batches(storage, jobs, batch=jobs)
    return await drain_seconds(storage, jobs, workers, poll_interval_ms)


async def queue_latency(
    storage: QueueStorage,
    rounds: int,
    workers: int = DEFAULT_WORKERS,
    poll_interval_ms: float = DEFAULT_POLL_MS,
) -> list[float]:
    """Milliseconds from submit to wait_for returning, one job after the other, idle server."""
    client: JobQueueClient[dict[str, Any], int] = JobQueueClient(storage=storage)
    server = JobQueueServer(
        Noop, storage=storage, worker_count=workers, poll_interval_ms=poll_interval_ms
    )
    client.attach(server)

    async def submit_and_wait(n: int) -> None:
        await (await client.submit({"n": n})).wait_for()

    async with server:
        return await latency_samples(submit_and_wait, rounds)


async def submit_samples(storage: QueueStorage, count: int) -> list[float]:
    """Milliseconds of each of `count` submits of one job, one after the other."""
    client: JobQueueClient[dict[str, Any], int] = JobQueueClient(storage=storage)
    return await latency_samples(lambda n: client.submit({"n": n}), count)


async def submit_batch_seconds(storage: QueueStorage, size: int, warm: bool = False) -> float:
    """Seconds of one submit_batch of `size` jobs; with `warm`, of the second of two (the
    first on a new connection also prepares the statement)."""
    client: JobQueueClient[dict[str, Any], int] = JobQueueClient(storage=storage)
    inputs = [{"n": n} for n in range(size)]
    if warm:
        await client.submit_batch(inputs)
    start = time.perf_counter()
    await client.submit_batch(inputs)
    return time.perf_counter() - start


async def on_fresh_queue(url: str, run: Callable[[QueueStorage], Awaitable[T]]) -> T:
    """Run one measurement on a fresh queue at `url`; its jobs are deleted after."""
    async with open_storage(url, f"bench-{uuid.uuid4().hex[:8]}") as storage:
        try:
            return await run(storage)
        finally:
            await storage.delete_all()
