"""A network outage between a server and PostgreSQL, made with a proxy the test cuts."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pyjobqueue import Job, JobContext, JobQueueClient, JobQueueServer, JobStatus

from .backend_postgres import CuttableProxy, require_dsn, unavailable_reason

pytestmark = pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason()))

if unavailable_reason() is None:
    from pyjobqueue.storage.postgres import PostgresQueueStorage

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
