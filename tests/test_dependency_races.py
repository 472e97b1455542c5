"""Dependencies (SPEC 8.7) across connections: a dependant submitted while its
dependency's outcome is being stored, on two storages of one database (two PostgreSQL
pools, two SQLite connections), is never left WAITING for a job that completed, nor
PENDING behind one that failed. Whichever write goes first, the other sees it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pyjobqueue import JobStatus
from pyjobqueue.outcome import Outcome, OutcomeKind
from pyjobqueue.storage import QueueStorage, open_storage

from . import backend_postgres
from .jobs import new_job

ROUNDS = 60
LEASE = timedelta(seconds=30)


@pytest.fixture(params=["sqlite", "postgres"])
async def two_storages(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[QueueStorage, QueueStorage]]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'jobs.db'}"
    else:
        reason = backend_postgres.unavailable_reason()
        if reason is not None:
            pytest.skip(reason)
        url = backend_postgres.require_dsn()
    queue = f"races-{uuid.uuid4().hex[:12]}"
    first, second = open_storage(url, queue), open_storage(url, queue)
    await first.setup_database()
    await second.setup_database()
    try:
        yield first, second
    finally:
        await first.close()
        await second.close()


async def _claimed(storage: QueueStorage) -> Any:
    job_id = await storage.add(new_job())
    at = datetime.now(UTC)
    (job,) = await storage.claim("w", at, at + LEASE, 1)
    assert job.id == job_id
    return job


@pytest.mark.parametrize("kind", [OutcomeKind.COMPLETE, OutcomeKind.FAIL])
async def test_a_dependant_submitted_during_the_outcome_is_settled(
    two_storages: tuple[QueueStorage, QueueStorage], kind: OutcomeKind
) -> None:
    finisher, submitter = two_storages
    expected = JobStatus.PENDING if kind is OutcomeKind.COMPLETE else JobStatus.FAILED
    for _ in range(ROUNDS):
        dependency = await _claimed(finisher)
        outcome = Outcome(kind, datetime.now(UTC), output=1, error="x", error_code="E")
        finished, added = await asyncio.gather(
            finisher.finish(dependency.id, "w", 1, outcome),
            submitter.add_jobs([new_job(depends_on=[dependency.id])]),
        )
        assert finished
        dependant = await finisher.get(added[0].id)
        assert dependant is not None
        assert dependant.status is expected, (dependant.status, dependant.dependencies_left)
        if expected is JobStatus.PENDING:
            # Make room: the next round's claim must take its own dependency.
            assert await finisher.delete(dependant.id or 0)


async def test_a_grand_dependant_submitted_during_a_failure_is_failed(
    two_storages: tuple[QueueStorage, QueueStorage],
) -> None:
    """A fails while E is submitted depending on D, which waits on A: the failure
    reaches E however the two interleave (each level sees what committed before it)."""
    finisher, submitter = two_storages
    for _ in range(ROUNDS):
        dependency = await _claimed(finisher)
        (waiting,) = await finisher.add_batch([new_job(depends_on=[dependency.id])])
        outcome = Outcome(OutcomeKind.FAIL, datetime.now(UTC), error="x", error_code="E")
        finished, added = await asyncio.gather(
            finisher.finish(dependency.id, "w", 1, outcome),
            submitter.add_jobs([new_job(depends_on=[waiting])]),
        )
        assert finished
        for job_id in (waiting, added[0].id):
            job = await finisher.get(job_id)
            assert job is not None and job.status is JobStatus.FAILED, (job_id, job)
