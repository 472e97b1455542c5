"""The worker rides out a storage that fails for a while, and counts what it stores."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime
from typing import Any

import pytest

from pyjobqueue import JobQueueClient, JobQueueServer, PermanentJobError
from pyjobqueue.errors import AbortSignalJobError
from pyjobqueue.events import JobEvent
from pyjobqueue.job import Job, JobContext, utcnow
from pyjobqueue.outcome import Outcome, OutcomeKind
from pyjobqueue.storage import InMemoryQueueStorage

from .jobs import ScriptedJob, new_probe


class WatchedOutcomes(InMemoryQueueStorage):
    """A storage whose first `failures` outcome writes fail, as during a database outage,
    and which records the server's stats at the moment each outcome is stored, as
    another task reading the job right then would see them."""

    def __init__(self, queue_name: str, failures: int = 0) -> None:
        super().__init__(queue_name)
        self.failures = failures
        self.server: JobQueueServer[Any, Any] | None = None
        self.seen: list[tuple[int, int]] = []  # (completed, failed) at each stored outcome

    async def finish(
        self,
        job_id: int,
        worker_id: str,
        attempt: int,
        outcome: Outcome,
        lease_expired_before: datetime | None = None,
        event: JobEvent | None = None,
    ) -> bool:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("database unreachable")
        applied = await super().finish(
            job_id, worker_id, attempt, outcome, lease_expired_before, event
        )
        if applied and self.server is not None:
            stats = self.server.get_stats()
            self.seen.append((stats.completed_jobs, stats.failed_jobs))
        return applied


async def test_an_outcome_write_is_retried_instead_of_running_the_job_again() -> None:
    storage = WatchedOutcomes("outage", failures=3)
    probe = new_probe()
    client: JobQueueClient[dict[str, Any], Any] = JobQueueClient(storage=storage)
    async with JobQueueServer(ScriptedJob, storage=storage, poll_interval_ms=20) as server:
        client.attach(server)
        handle = await client.submit({"probe": probe.key, "value": "kept"})
        assert await handle.wait_for() == {"echo": "kept", "attempt": 1}
    assert storage.failures == 0
    assert len(probe.runs) == 1


async def test_an_outcome_is_counted_before_anyone_can_see_it() -> None:
    storage = WatchedOutcomes("counted")
    client: JobQueueClient[dict[str, Any], Any] = JobQueueClient(storage=storage)
    async with JobQueueServer(ScriptedJob, storage=storage, poll_interval_ms=20) as server:
        storage.server = server
        client.attach(server)
        done = await client.submit({"probe": new_probe().key, "value": 1})
        await done.wait_for()
        failing = await client.submit({"probe": new_probe().key, "mode": "permanent"})
        with pytest.raises(PermanentJobError):
            await failing.wait_for()
        # A stale write (another worker's attempt) is refused: nothing stays counted.
        stale = Outcome(OutcomeKind.COMPLETE, utcnow(), output=1)
        assert not await storage.finish(done.id, "someone-else", 1, stale)
    assert storage.seen == [(1, 0), (1, 1)]
    assert server.get_stats().completed_jobs == 1
    assert server.get_stats().failed_jobs == 1


class CancelCounts(InMemoryQueueStorage):
    """Records how many cancellations the writing task has pending at each outcome."""

    def __init__(self, queue_name: str) -> None:
        super().__init__(queue_name)
        self.pending_cancels: list[int] = []

    async def finish(
        self,
        job_id: int,
        worker_id: str,
        attempt: int,
        outcome: Outcome,
        lease_expired_before: datetime | None = None,
        event: JobEvent | None = None,
    ) -> bool:
        task = asyncio.current_task()
        self.pending_cancels.append(task.cancelling() if task is not None else -1)
        return await super().finish(
            job_id, worker_id, attempt, outcome, lease_expired_before, event
        )


class SwallowsCancel(Job[dict[str, Any], str]):
    """Ignores its abort, and the cancel after the grace period too, then returns."""

    started: asyncio.Event

    async def execute(self, input: dict[str, Any], context: JobContext) -> str:
        type(self).started.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()
        return "kept going"


async def test_a_job_that_swallows_its_cancel_leaves_none_pending_for_its_outcome() -> None:
    """A job's code runs in the task that then writes its outcome: the worker's cancel,
    swallowed, must not stay pending on that task."""
    storage = CancelCounts("swallow")
    SwallowsCancel.started = asyncio.Event()
    client: JobQueueClient[dict[str, Any], Any] = JobQueueClient(storage=storage)
    async with JobQueueServer(SwallowsCancel, storage=storage, abort_grace_ms=10) as server:
        client.attach(server)
        handle = await client.submit({})
        await SwallowsCancel.started.wait()
        await client.abort(handle.id)
        with pytest.raises(AbortSignalJobError):  # aborted, whatever its code returned
            await handle.wait_for()
    assert storage.pending_cancels == [0]
