"""The in-memory queue: job records in a dict, changed by `pyjobqueue.transitions`."""

from __future__ import annotations

import copy
import dataclasses
import heapq
import itertools
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from ... import transitions
from ...events import JobEvent
from ...job import Job, JobStatus
from ...outcome import Outcome
from ..base import check_queue_name
from ..core import BaseQueueStorage
from .feed import EventFeed

T = TypeVar("T")


def _copy(job: Job[Any, Any]) -> Job[Any, Any]:
    return dataclasses.replace(job)


class MemoryQueueEngine:
    """The jobs of one queue in a dict of this process."""

    events_with_writes = False
    hints_with_writes = False
    supports_push = True
    shared_across_processes = False

    def __init__(self, queue_name: str) -> None:
        self.queue_name = queue_name
        self.feed = EventFeed(queue_name)
        self._jobs: dict[int, Job[Any, Any]] = {}
        self._ids = itertools.count(1)
        # Claim order of PENDING jobs; entries go stale when a job changes and are
        # skipped when popped (checked against the job's current state).
        self._claimable: list[tuple[datetime, int]] = []

    async def open(self) -> None:
        """Nothing to open."""

    async def close(self) -> None:
        """Nothing to release."""

    def is_transient(self, error: BaseException) -> bool:
        """Nothing here fails by itself; a lost connection or a timeout would pass."""
        return isinstance(error, ConnectionError | TimeoutError)

    def _mark_claimable(self, job: Job[Any, Any]) -> None:
        assert job.id is not None
        heapq.heappush(self._claimable, transitions.claim_order(job))

    def _ordered(self, jobs: Any) -> list[Job[Any, Any]]:
        return [_copy(job) for job in sorted(jobs, key=lambda job: job.id or 0)]

    async def insert(self, jobs: Sequence[Job[Any, Any]]) -> list[int]:
        """Store new jobs; their ids."""
        ids = []
        for job in jobs:
            record = job.record()
            record.id = next(self._ids)
            record.queue_name = self.queue_name
            record.input = copy.deepcopy(record.input)
            self._jobs[record.id] = record
            self._mark_claimable(record)
            ids.append(record.id)
        return ids

    async def get(self, job_id: int) -> Job[Any, Any] | None:
        """A copy of the job, or None."""
        job = self._jobs.get(job_id)
        return None if job is None else _copy(job)

    async def peek(self, status: JobStatus, num: int) -> list[Job[Any, Any]]:
        """The first `num` jobs with `status` in claim order."""
        jobs = sorted(
            (job for job in self._jobs.values() if job.status is status),
            key=transitions.claim_order,
        )
        return [_copy(job) for job in jobs[:num]]

    async def count(self, status: JobStatus | None) -> int:
        """How many jobs have `status`."""
        if status is None:
            return len(self._jobs)
        return sum(1 for job in self._jobs.values() if job.status is status)

    async def by_run_id(self, job_run_id: str) -> list[Job[Any, Any]]:
        """The jobs of a run, by id."""
        return self._ordered(job for job in self._jobs.values() if job.job_run_id == job_run_id)

    async def completed_by_fingerprint(self, fingerprint: str) -> Job[Any, Any] | None:
        """The latest completed job with this fingerprint."""
        matches = [
            job
            for job in self._jobs.values()
            if job.fingerprint == fingerprint and job.status is JobStatus.COMPLETED
        ]
        if not matches:
            return None
        return _copy(max(matches, key=lambda job: (job.completed_at, job.id or 0)))

    async def claim(
        self,
        worker_id: str,
        now: datetime,
        lease_until: datetime,
        limit: int,
        start_origin: str | None,
    ) -> list[Job[Any, Any]]:
        """Claim the first claimable jobs of the heap."""
        claimed: list[Job[Any, Any]] = []
        while self._claimable and len(claimed) < limit:
            run_after, job_id = self._claimable[0]
            job = self._jobs.get(job_id)
            if job is None or job.status is not JobStatus.PENDING or job.run_after != run_after:
                heapq.heappop(self._claimable)  # stale entry
                continue
            if not transitions.is_claimable(job, now):
                break
            heapq.heappop(self._claimable)
            transitions.claim(job, worker_id, now, lease_until)
            claimed.append(_copy(job))
        return claimed

    def _attempt(self, job_id: int, worker_id: str, attempt: int) -> Job[Any, Any] | None:
        job = self._jobs.get(job_id)
        if job is None or not transitions.is_attempt(job, worker_id, attempt):
            return None
        return job

    async def renew_lease(
        self, job_id: int, worker_id: str, attempt: int, lease_until: datetime
    ) -> JobStatus | None:
        """Renew the lease of an attempt."""
        job = self._attempt(job_id, worker_id, attempt)
        return None if job is None else transitions.renew_lease(job, lease_until)

    async def save_progress(
        self,
        job_id: int,
        worker_id: str,
        attempt: int,
        progress: float,
        message: str,
        details: dict[str, Any] | None,
    ) -> bool:
        """Save the progress of an attempt."""
        job = self._attempt(job_id, worker_id, attempt)
        if job is None:
            return False
        transitions.save_progress(job, progress, message, details)
        return True

    async def finish(
        self,
        job_id: int,
        worker_id: str,
        attempt: int,
        outcome: Outcome,
        lease_expired_before: datetime | None,
        event: JobEvent | None,
    ) -> bool:
        """Apply an outcome to an attempt."""
        job = self._attempt(job_id, worker_id, attempt)
        if job is None or not transitions.lease_expired(job, lease_expired_before):
            return False
        transitions.finish(job, outcome)
        if transitions.makes_claimable(outcome):
            self._mark_claimable(job)
        return True

    def _change(self, job_id: int, change: Callable[[Job[Any, Any]], T], missing: T) -> T:
        job = self._jobs.get(job_id)
        return missing if job is None else change(job)

    async def abort(self, job_id: int, now: datetime) -> JobStatus | None:
        """Abort one job."""
        return self._change(job_id, lambda job: transitions.abort(job, now), None)

    async def abort_run(self, job_run_id: str, now: datetime) -> list[tuple[int, JobStatus]]:
        """Abort the jobs of a run."""
        changed = []
        for job in self._jobs.values():
            if job.job_run_id == job_run_id and (status := transitions.abort(job, now)):
                changed.append((job.id or 0, status))
        return changed

    async def disable(self, job_id: int, now: datetime) -> bool:
        """Disable a PENDING job."""
        return self._change(job_id, lambda job: transitions.disable(job, now), False)

    async def retry(self, job_id: int, now: datetime) -> bool:
        """Run a finished job again."""

        def retry(job: Job[Any, Any]) -> bool:
            retried = transitions.retry(job, now)
            if retried:
                self._mark_claimable(job)
            return retried

        return self._change(job_id, retry, False)

    async def expired_leases(self, now: datetime) -> list[Job[Any, Any]]:
        """The running jobs whose lease expired."""
        return self._ordered(
            job for job in self._jobs.values() if transitions.lease_has_expired(job, now)
        )

    async def delete_finished(self, status: JobStatus, completed_before: datetime) -> int:
        """Delete old finished jobs."""
        doomed = [
            job_id
            for job_id, job in self._jobs.items()
            if job.status is status
            and job.completed_at is not None
            and job.completed_at < completed_before
        ]
        for job_id in doomed:
            del self._jobs[job_id]
        return len(doomed)

    async def delete(self, job_id: int) -> bool:
        """Delete one job."""
        return self._jobs.pop(job_id, None) is not None

    async def delete_all(self) -> None:
        """Delete every job."""
        self._jobs.clear()
        self._claimable.clear()


class InMemoryQueueStorage(BaseQueueStorage):
    """Jobs in a dict of this process; events delivered to this process's subscribers."""

    def __init__(self, queue_name: str) -> None:
        super().__init__(queue_name, MemoryQueueEngine(check_queue_name(queue_name)))

    def __repr__(self) -> str:
        return f"InMemoryQueueStorage({self.queue_name!r})"
