"""In-memory storage: one process, no persistence; the reference for every backend."""

from __future__ import annotations

import copy
import dataclasses
import heapq
import itertools
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ..errors import AbortSignalJobError
from ..events import JOB_AVAILABLE, JobEvent
from ..job import ACTIVE_STATUSES, FINISHED_STATUSES, Job, JobStatus
from ..outcome import AbortReason, Outcome, OutcomeKind
from .base import (
    EventListener,
    StorageLifecycle,
    Unsubscribe,
    check_queue_name,
    start_events,
)

logger = logging.getLogger("pyjobqueue")


class InMemoryQueueStorage(StorageLifecycle):
    """Jobs in a dict of this process; events delivered to this process's subscribers."""

    supports_push = True
    shared_across_processes = False

    def __init__(self, queue_name: str) -> None:
        self.queue_name = check_queue_name(queue_name)
        self._jobs: dict[int, Job[Any, Any]] = {}
        self._ids = itertools.count(1)
        self._listeners: list[EventListener] = []
        # Claim order of PENDING jobs; entries go stale when a job changes and are
        # skipped when popped (checked against the job's current state).
        self._claimable: list[tuple[datetime, int]] = []

    def _copy(self, job: Job[Any, Any]) -> Job[Any, Any]:
        return dataclasses.replace(job)

    def _store(self, job: Job[Any, Any]) -> int:
        record = job.record()
        record.id = next(self._ids)
        record.queue_name = self.queue_name
        record.input = copy.deepcopy(record.input)
        self._jobs[record.id] = record
        self._mark_claimable(record)
        return record.id

    def _mark_claimable(self, job: Job[Any, Any]) -> None:
        assert job.id is not None
        heapq.heappush(self._claimable, (job.run_after, job.id))

    async def add(self, job: Job[Any, Any]) -> int:
        job_id = self._store(job)
        self._announce_available()
        return job_id

    async def add_batch(self, jobs: Sequence[Job[Any, Any]]) -> list[int]:
        ids = [self._store(job) for job in jobs]
        if ids:
            self._announce_available()
        return ids

    async def get(self, job_id: int) -> Job[Any, Any] | None:
        job = self._jobs.get(job_id)
        return None if job is None else self._copy(job)

    def _ordered(self, status: JobStatus) -> list[Job[Any, Any]]:
        jobs = [job for job in self._jobs.values() if job.status is status]
        return sorted(jobs, key=lambda job: (job.run_after, job.id))

    async def peek(self, status: JobStatus, num: int) -> list[Job[Any, Any]]:
        return [self._copy(job) for job in self._ordered(status)[:num]]

    async def size(self, status: JobStatus | None = None) -> int:
        if status is None:
            return len(self._jobs)
        return sum(1 for job in self._jobs.values() if job.status is status)

    async def get_by_run_id(self, job_run_id: str) -> list[Job[Any, Any]]:
        jobs = [job for job in self._jobs.values() if job.job_run_id == job_run_id]
        return [self._copy(job) for job in sorted(jobs, key=lambda job: job.id or 0)]

    async def find_completed_by_fingerprint(self, fingerprint: str) -> Job[Any, Any] | None:
        matches = [
            job
            for job in self._jobs.values()
            if job.fingerprint == fingerprint and job.status is JobStatus.COMPLETED
        ]
        if not matches:
            return None
        return self._copy(max(matches, key=lambda job: (job.completed_at, job.id or 0)))

    async def claim(
        self,
        worker_id: str,
        now: datetime,
        lease_until: datetime,
        limit: int,
        start_origin: str | None = None,
    ) -> list[Job[Any, Any]]:
        claimed: list[Job[Any, Any]] = []
        while self._claimable and len(claimed) < limit:
            run_after, job_id = self._claimable[0]
            job = self._jobs.get(job_id)
            if job is None or job.status is not JobStatus.PENDING or job.run_after != run_after:
                heapq.heappop(self._claimable)  # stale entry
                continue
            if run_after > now:
                break
            heapq.heappop(self._claimable)
            job.status = JobStatus.PROCESSING
            job.worker_id = worker_id
            job.run_attempts += 1
            job.last_ran_at = now
            job.lease_expires_at = lease_until
            job.progress, job.progress_message, job.progress_details = 0.0, "", None
            claimed.append(self._copy(job))
        if start_origin is not None:
            for event in start_events(self.queue_name, claimed, now, start_origin):
                self._deliver(event)
        return claimed

    def _attempt(self, job_id: int, worker_id: str, attempt: int) -> Job[Any, Any] | None:
        job = self._jobs.get(job_id)
        if (
            job is None
            or job.status not in ACTIVE_STATUSES
            or job.worker_id != worker_id
            or job.run_attempts != attempt
        ):
            return None
        return job

    async def renew_lease(
        self, job_id: int, worker_id: str, attempt: int, lease_until: datetime
    ) -> JobStatus | None:
        job = self._attempt(job_id, worker_id, attempt)
        if job is None:
            return None
        job.lease_expires_at = lease_until
        return job.status

    async def save_progress(
        self,
        job_id: int,
        worker_id: str,
        attempt: int,
        progress: float,
        message: str,
        details: dict[str, Any] | None,
    ) -> bool:
        job = self._attempt(job_id, worker_id, attempt)
        if job is None:
            return False
        job.progress, job.progress_message = progress, message
        job.progress_details = copy.deepcopy(details)
        return True

    async def finish(
        self,
        job_id: int,
        worker_id: str,
        attempt: int,
        outcome: Outcome,
        lease_expired_before: datetime | None = None,
        event: JobEvent | None = None,
    ) -> bool:
        job = self._attempt(job_id, worker_id, attempt)
        if job is None:
            return False
        if lease_expired_before is not None and (
            job.lease_expires_at is None or job.lease_expires_at >= lease_expired_before
        ):
            return False
        apply_outcome(job, outcome)
        if event is not None:
            self._deliver(event)
        if outcome.kind in (OutcomeKind.RETRY, OutcomeKind.REQUEUE):
            self._mark_claimable(job)
            self._announce_available()
        return True

    async def abort(self, job_id: int, now: datetime) -> JobStatus | None:
        job = self._jobs.get(job_id)
        if job is None:
            return None
        return abort_job(job, now)

    async def abort_job_run(self, job_run_id: str, now: datetime) -> list[tuple[int, JobStatus]]:
        changed = []
        for job in sorted(self._jobs.values(), key=lambda job: job.id or 0):
            if job.job_run_id == job_run_id and (status := abort_job(job, now)) is not None:
                changed.append((job.id or 0, status))
        return changed

    async def disable(self, job_id: int, now: datetime) -> bool:
        job = self._jobs.get(job_id)
        if job is None or job.status is not JobStatus.PENDING:
            return False
        job.status = JobStatus.DISABLED
        job.completed_at = now
        return True

    async def retry(self, job_id: int, now: datetime) -> bool:
        job = self._jobs.get(job_id)
        if job is None or job.status not in (JobStatus.FAILED, JobStatus.DISABLED):
            return False
        job.status = JobStatus.PENDING
        job.run_attempts = 0
        job.run_after = now
        job.error = job.error_code = job.output = job.completed_at = None
        job.progress, job.progress_message, job.progress_details = 0.0, "", None
        self._mark_claimable(job)
        self._announce_available()
        return True

    async def expired_leases(self, now: datetime) -> list[Job[Any, Any]]:
        return [
            self._copy(job)
            for job in self._jobs.values()
            if job.status in ACTIVE_STATUSES
            and job.lease_expires_at is not None
            and job.lease_expires_at < now
        ]

    async def delete_finished(self, status: JobStatus, completed_before: datetime) -> int:
        if status not in FINISHED_STATUSES:
            raise ValueError(f"only finished jobs can be deleted by age, not {status}")
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
        return self._jobs.pop(job_id, None) is not None

    async def delete_all(self) -> None:
        self._jobs.clear()
        self._claimable.clear()

    async def publish(self, event: JobEvent) -> None:
        self._deliver(event)

    async def subscribe(self, listener: EventListener) -> Unsubscribe:
        self._listeners.append(listener)

        async def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def _deliver(self, event: JobEvent) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                logger.exception("storage event listener failed")

    def _announce_available(self) -> None:
        if self._listeners:
            self._deliver(JobEvent(JOB_AVAILABLE, self.queue_name, 0))

    async def close(self) -> None:
        self._listeners.clear()


def apply_outcome(job: Job[Any, Any], outcome: Outcome) -> None:
    """Apply an outcome to a job record in place (the memory form of `finish`)."""
    job.status = outcome.status
    job.worker_id = None
    job.lease_expires_at = None
    if outcome.kind is OutcomeKind.COMPLETE:
        job.output = copy.deepcopy(outcome.output)
        job.progress = 100.0
        job.error = job.error_code = None
        job.completed_at = outcome.at
    elif outcome.kind is OutcomeKind.FAIL:
        job.error, job.error_code = outcome.error, outcome.error_code
        job.completed_at = outcome.at
    else:
        if outcome.kind is OutcomeKind.REQUEUE:
            job.run_attempts = max(0, job.run_attempts - 1)
        else:
            job.error, job.error_code = outcome.error, outcome.error_code
        job.run_after = outcome.run_after or outcome.at


def abort_job(job: Job[Any, Any], now: datetime) -> JobStatus | None:
    """Abort a job record in place (the memory form of `abort`); its new status or None."""
    if job.status is JobStatus.PENDING:
        job.status = JobStatus.FAILED
        job.error = AbortReason.USER.value
        job.error_code = AbortSignalJobError.__name__
        job.completed_at = now
        return JobStatus.FAILED
    if job.status is JobStatus.PROCESSING:
        job.status = JobStatus.ABORTING
        return JobStatus.ABORTING
    return None


class InMemoryRateLimiterStorage(StorageLifecycle):
    """RateLimiter execution records in this process."""

    def __init__(self) -> None:
        self._executions: dict[str, list[datetime]] = {}
        self._next_available: dict[str, datetime | None] = {}

    async def try_record_execution(
        self, queue_name: str, max_executions: int, window_start: datetime, now: datetime
    ) -> bool:
        times = self._executions.setdefault(queue_name, [])
        if sum(1 for when in times if when >= window_start) >= max_executions:
            return False
        times.append(now)
        return True

    async def execution_count(self, queue_name: str, since: datetime) -> int:
        return sum(1 for when in self._executions.get(queue_name, ()) if when >= since)

    async def oldest_execution_time(self, queue_name: str, since: datetime) -> datetime | None:
        return min(
            (when for when in self._executions.get(queue_name, ()) if when >= since), default=None
        )

    async def get_next_available_time(self, queue_name: str) -> datetime | None:
        return self._next_available.get(queue_name)

    async def set_next_available_time(self, queue_name: str, when: datetime | None) -> None:
        self._next_available[queue_name] = when

    async def prune(self, queue_name: str, before: datetime) -> int:
        times = self._executions.get(queue_name, [])
        kept = [when for when in times if when >= before]
        self._executions[queue_name] = kept
        return len(times) - len(kept)

    async def clear(self, queue_name: str) -> None:
        self._executions.pop(queue_name, None)
        self._next_available.pop(queue_name, None)
