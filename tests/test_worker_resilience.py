"""The worker rides out a storage that fails for a while."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pyjobqueue import JobQueueClient, JobQueueServer
from pyjobqueue.events import JobEvent
from pyjobqueue.outcome import Outcome
from pyjobqueue.storage import InMemoryQueueStorage

from .jobs import ScriptedJob, new_probe


class OutcomeWritesFail(InMemoryQueueStorage):
    """A storage whose first `failures` outcome writes fail, as during a database outage."""

    def __init__(self, queue_name: str, failures: int) -> None:
        super().__init__(queue_name)
        self.failures = failures

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
        return await super().finish(
            job_id, worker_id, attempt, outcome, lease_expired_before, event
        )


async def test_an_outcome_write_is_retried_instead_of_running_the_job_again() -> None:
    storage = OutcomeWritesFail("outage", failures=3)
    probe = new_probe()
    client: JobQueueClient[dict[str, Any], Any] = JobQueueClient(storage=storage)
    async with JobQueueServer(ScriptedJob, storage=storage, poll_interval_ms=20) as server:
        client.attach(server)
        handle = await client.submit({"probe": probe.key, "value": "kept"})
        assert await handle.wait_for() == {"echo": "kept", "attempt": 1}
    assert storage.failures == 0
    assert len(probe.runs) == 1
