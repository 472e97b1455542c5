"""The Python side of the browser's hard cancel, on CPython with a real SIGINT.

In the browser, Pyodide's interrupt buffer makes the worker's Python run its SIGINT
handler while a job computes; here a thread sends the process SIGINT while the job
spins in the event loop's thread, which is the same thing to Python. The list of jobs
to stop is a plain list instead of the page's shared memory.
"""

from __future__ import annotations

import os
import queue
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from pyjobqueue import AbortSignalJobError, Job, JobContext, JobQueueClient, JobQueueServer
from pyjobqueue.browser._interrupts import JobInterrupter
from pyjobqueue.storage import InMemoryQueueStorage

started: queue.Queue[int] = queue.Queue()  # ids of the Spin jobs, as each starts
WAIT_SECONDS = 30


class Spin(Job[dict[str, Any], str]):
    """CPU-bound and deaf to its signal: spins until `release` is set, or for `seconds`."""

    release = threading.Event()

    async def execute(self, input: dict[str, Any], context: JobContext) -> str:
        assert self.id is not None
        started.put(self.id)
        end = time.monotonic() + input["seconds"]
        while time.monotonic() < end and not Spin.release.is_set():
            pass
        for _ in range(100_000):  # the released signal's handler runs in here
            pass
        await context.update_progress(100, "spun to the end")
        return "spun"


class Echo(Job[int, int]):
    async def execute(self, input: int, context: JobContext) -> int:
        return input


@pytest.fixture
def interrupter() -> Iterator[tuple[JobInterrupter, list[int]]]:
    """A JobInterrupter handling SIGINT for the test, and its list of jobs to stop."""
    targets: list[int] = []
    interrupter = JobInterrupter(lambda: list(targets), lambda job_id: None)
    previous = signal.getsignal(signal.SIGINT)
    Spin.release.clear()
    interrupter.install()
    try:
        yield interrupter, targets
    finally:
        signal.signal(signal.SIGINT, previous)


def interrupt_when_started(targets: list[int], target: int | None) -> threading.Thread:
    """A thread that waits for a Spin job to start, lists `target` (or that job), then
    sends SIGINT, as the page does."""

    def run() -> None:
        job_id = started.get(timeout=WAIT_SECONDS)
        targets.append(job_id if target is None else target)
        os.kill(os.getpid(), signal.SIGINT)
        Spin.release.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


async def test_the_interrupt_aborts_the_listed_job_and_the_worker_goes_on(
    interrupter: tuple[JobInterrupter, list[int]],
) -> None:
    handler, targets = interrupter
    storage = InMemoryQueueStorage("hard")
    server: JobQueueServer[Any, Any] = JobQueueServer(
        [Spin, Echo], storage=storage, middleware=[handler.track]
    )
    errors: list[int] = []
    async with storage, server:
        client: JobQueueClient[Any, Any] = JobQueueClient(storage=storage)
        client.attach(server)
        client.on("job_error", lambda queue, job_id, *rest: errors.append(job_id))
        thread = interrupt_when_started(targets, None)
        spin = await client.submit({"seconds": WAIT_SECONDS}, kind=Spin)
        with pytest.raises(AbortSignalJobError, match="Job aborted"):
            await spin.wait_for(timeout=WAIT_SECONDS)
        thread.join()
        after = await client.submit(7, kind=Echo)
        assert await after.wait_for(timeout=WAIT_SECONDS) == 7
        job = await client.get_job(spin.id)

    assert job is not None
    assert (job.status.value, job.error_code) == ("FAILED", "AbortSignalJobError")
    assert job.progress != 100  # its code never got past the loop
    assert errors == [spin.id]
    assert server.get_stats().aborted_jobs == 1


async def test_an_interrupt_leaves_a_job_alone_that_is_not_listed(
    interrupter: tuple[JobInterrupter, list[int]],
) -> None:
    handler, targets = interrupter
    storage = InMemoryQueueStorage("hard")
    server = JobQueueServer(Spin, storage=storage, middleware=[handler.track])
    async with storage, server:
        client: JobQueueClient[Any, Any] = JobQueueClient(storage=storage)
        client.attach(server)
        thread = interrupt_when_started(targets, 10**6)  # another job's abort
        spin = await client.submit({"seconds": WAIT_SECONDS})
        assert await spin.wait_for(timeout=WAIT_SECONDS) == "spun"
        thread.join()
        job = await client.get_job(spin.id)
    assert job is not None and job.progress == 100
