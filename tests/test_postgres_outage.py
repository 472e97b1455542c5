"""A network outage between a server and PostgreSQL, made with a proxy the test cuts."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pyjobqueue import Job, JobContext, JobQueueClient, JobQueueServer, JobStatus
from pyjobqueue.events import JobEvent

from .backend_postgres import CuttableProxy, require_dsn, unavailable_reason
from .conftest import next_event

pytestmark = pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason()))

if unavailable_reason() is None:
    from pyjobqueue.storage.postgres import PostgresQueueStorage

HINTS = frozenset({"job_available"})

# Per test: events the job and the test hand each other.
STEPS: dict[str, dict[str, asyncio.Event]] = {}


class OutageJob(Job[dict[str, Any], Any]):
    """Reports progress while the test holds the database out of reach."""

    async def execute(self, input: dict[str, Any], context: JobContext) -> Any:
        steps = STEPS[input["key"]]
        steps["started"].set()
        await steps["cut"].wait()
        await context.update_progress(50, "during the outage")
        steps["progressed"].set()
        await steps["restored"].wait()
        return {"ok": True}


@pytest.fixture
async def proxied_dsn() -> AsyncIterator[tuple[CuttableProxy, str]]:
    proxy = CuttableProxy(require_dsn())
    dsn = await proxy.start()
    yield proxy, dsn
    await proxy.close()


async def test_an_outage_mid_job_does_not_fail_it(
    proxied_dsn: tuple[CuttableProxy, str],
) -> None:
    proxy, dsn = proxied_dsn
    key, queue = uuid.uuid4().hex, f"outage-{uuid.uuid4().hex[:8]}"
    steps = STEPS[key] = {
        name: asyncio.Event() for name in ("started", "cut", "progressed", "restored")
    }
    async with (
        PostgresQueueStorage(dsn, queue) as server_storage,
        PostgresQueueStorage(require_dsn(), queue) as client_storage,
    ):
        server = JobQueueServer(OutageJob, storage=server_storage, poll_interval_ms=50)
        client: JobQueueClient[dict[str, Any], Any] = JobQueueClient(
            storage=client_storage, poll_interval_ms=50
        )
        async with server:
            handle = await client.submit({"key": key})
            await asyncio.wait_for(steps["started"].wait(), 10)
            proxy.cut()  # the server loses the database (its LISTEN connection too)
            steps["cut"].set()
            await asyncio.wait_for(steps["progressed"].wait(), 10)
            proxy.restore()
            steps["restored"].set()
            # The progress write failed, the job went on, and its outcome got through.
            assert await asyncio.wait_for(handle.wait_for(), 30) == {"ok": True}
        job = await client.get_job(handle.id)
    assert job is not None and job.status is JobStatus.COMPLETED and job.run_attempts == 1


async def test_a_subscriber_cut_off_replays_what_it_missed_each_event_once_in_order(
    proxied_dsn: tuple[CuttableProxy, str],
) -> None:
    proxy, dsn = proxied_dsn
    queue = f"replay-{uuid.uuid4().hex[:8]}"
    async with (
        PostgresQueueStorage(dsn, queue) as reader,
        PostgresQueueStorage(require_dsn(), queue) as writer,
    ):
        received: asyncio.Queue[JobEvent] = asyncio.Queue()
        unsubscribe = await reader.subscribe(received.put_nowait)
        before = JobEvent.job_start(queue, 1, "test")
        await writer.publish(before)
        assert await next_event(received, skip=HINTS) == before
        proxy.cut()  # the reader's LISTEN connection drops and cannot come back
        missed = [JobEvent.job_complete(queue, n, {"n": n}, "test") for n in range(2, 202)]
        big = JobEvent.job_complete(queue, 202, {"text": "ü" * 20_000}, "test")
        for event in [*missed, big]:
            await writer.publish(event)
        proxy.restore()
        after = JobEvent.job_error(queue, 203, "late", "PermanentJobError", "test")
        await writer.publish(after)
        got = [await next_event(received, skip=HINTS) for _ in range(len(missed) + 2)]
        await unsubscribe()
    print(f"cut off for {len(missed) + 1} events: {len(got)} delivered once, in order")
    assert got == [*missed, big, after]
    assert received.empty() or all(event.name == "job_available" for event in _drain(received)), (
        "an event was delivered twice"
    )


def _drain(events: asyncio.Queue[JobEvent]) -> list[JobEvent]:
    drained = []
    while not events.empty():
        drained.append(events.get_nowait())
    return drained
