"""How a server runs its worker: private hooks, and methods for concurrency and stop timeout."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pyjobqueue import JobQueueClient, JobQueueServer, JobQueueWorker
from pyjobqueue.events import EventName, JobEvent
from pyjobqueue.storage import InMemoryQueueStorage

from .jobs import ScriptedJob, new_probe


def test_concurrency_and_stop_timeout_change_through_methods() -> None:
    worker = JobQueueWorker(
        ScriptedJob, storage=InMemoryQueueStorage("q"), concurrency=2, stop_timeout_ms=5_000
    )
    assert (worker.concurrency, worker.stop_timeout) == (2, 5.0)
    worker.set_concurrency(4)
    worker.shorten_stop(8_000)  # never longer than configured
    assert (worker.concurrency, worker.stop_timeout) == (4, 5.0)
    worker.shorten_stop(1_500)
    assert worker.stop_timeout == 1.5
    with pytest.raises(ValueError, match="concurrency"):
        worker.set_concurrency(0)
    with pytest.raises(ValueError, match="timeout_ms"):
        worker.shorten_stop(-1)
    with pytest.raises(TypeError, match="_hooks"):
        JobQueueWorker(ScriptedJob, storage=InMemoryQueueStorage("q"), _hooks=object())  # type: ignore[arg-type]


async def test_a_standalone_worker_tells_its_own_listeners() -> None:
    storage = InMemoryQueueStorage("q")
    worker: JobQueueWorker[Any, Any] = JobQueueWorker(
        ScriptedJob, storage=storage, poll_interval_ms=10
    )
    completed: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
    worker.on(EventName.JOB_COMPLETE, lambda *args: completed.put_nowait(args))
    await worker.start()
    try:
        client: JobQueueClient[Any, Any] = JobQueueClient(storage=storage)
        handle = await client.submit({"probe": new_probe().key, "value": 1})
        done = await asyncio.wait_for(completed.get(), 10)
        assert done == ("q", handle.id, {"echo": 1, "attempt": 1})
    finally:
        await worker.stop()


async def test_the_server_wires_its_worker_events_stats_and_origin() -> None:
    storage = InMemoryQueueStorage("q")
    server: JobQueueServer[Any, Any] = JobQueueServer(
        ScriptedJob, storage=storage, worker_count=2, poll_interval_ms=10
    )
    seen: asyncio.Queue[JobEvent] = asyncio.Queue()
    server.taps.append(seen.put_nowait)
    async with server:
        client: JobQueueClient[Any, Any] = JobQueueClient(storage=storage)
        handle = await client.submit({"probe": new_probe().key, "value": 2})
        events: list[JobEvent] = []
        while not events or events[-1].name != EventName.JOB_COMPLETE:
            events.append(await asyncio.wait_for(seen.get(), 10))
        assert [event.name for event in events] == ["job_start", "job_complete"]
        assert {event.origin for event in events} == {server.server_id}
        assert events[-1].job_id == handle.id
        assert events[-1].output == {"echo": 2, "attempt": 1}
        assert server.get_stats().completed_jobs == 1
        await server.scale_workers(3)
        assert server.get_worker_count() == 3
