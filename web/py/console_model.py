"""What the page's console knows of its queue, in memory: every job's status, kind and
retried attempts, the counts by (kind, status), and the run times of completed jobs.

It is kept by applying job events (each says what the job's status now is), so the
page reads storage only for jobs it has not seen. Every tab keeps its own, from the
stored jobs and the events every tab receives: its figures (retries, average run time)
do not depend on which tab's server leads. Plain Python: it runs on CPython too.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from typing import Any, NamedTuple

from pyjobqueue import Job, JobStatus
from pyjobqueue.events import STATUS_AFTER, EventName, JobEvent
from pyjobqueue.job import ACTIVE_STATUSES

RUNNING = ACTIVE_STATUSES
# A job in these statuses has no attempt running or finished: every attempt it made so
# far failed and was retried (or it never ran).
BETWEEN_ATTEMPTS = frozenset({JobStatus.WAITING, JobStatus.PENDING, JobStatus.DISABLED})
# A job that starts from these statuses was retried (`client.retry`): it runs as new,
# with no attempt, error or output of before.
RETRIED_AS_NEW = frozenset({JobStatus.FAILED, JobStatus.DISABLED})


class JobState(NamedTuple):
    """What the model keeps of one job (interned: jobs in one state share one tuple)."""

    status: JobStatus
    kind: str | None
    retried: int  # attempts that failed and were retried


def retried_attempts(job: Job[Any, Any]) -> int:
    """How many of a stored job's attempts failed and were retried."""
    if job.status in BETWEEN_ATTEMPTS:
        return job.run_attempts
    return max(job.run_attempts - 1, 0)


def run_time_ms(job: Job[Any, Any]) -> float | None:
    """How long a completed job's last attempt ran, in milliseconds."""
    if job.status is not JobStatus.COMPLETED or job.last_ran_at is None:
        return None
    if job.completed_at is None:
        return None
    return max((job.completed_at - job.last_ran_at).total_seconds() * 1000, 0.0)


class QueueModel:
    """Every job of one queue as far as counts and figures go, kept by events."""

    def __init__(self) -> None:
        self.jobs: dict[int, JobState] = {}
        self.counts: Counter[tuple[str | None, JobStatus]] = Counter()
        self.retried = 0
        self.newest_id = 0  # every job up to this id is known (or was deleted)
        self.started: dict[int, float] = {}  # running jobs: when their attempt began (s)
        self.run_times: dict[int, float] = {}  # completed jobs: how long they ran (ms)
        self.run_time_total = 0.0
        self._states: dict[JobState, JobState] = {}
        self._rebuilding: set[int] | None = None  # jobs changed while a rebuild reads

    # -- changes ------------------------------------------------------------------------

    def _set(self, job_id: int, state: JobState | None) -> None:
        old = self.jobs.pop(job_id, None)
        if old is not None:
            self.counts[old.kind, old.status] -= 1
            if not self.counts[old.kind, old.status]:
                del self.counts[old.kind, old.status]
            self.retried -= old.retried
        if state is not None:
            state = self._states.setdefault(state, state)
            self.jobs[job_id] = state
            self.counts[state.kind, state.status] += 1
            self.retried += state.retried
            self.newest_id = max(self.newest_id, job_id)
        if state is None or state.status not in RUNNING:
            self.started.pop(job_id, None)
        if state is None or state.status is not JobStatus.COMPLETED:
            self._set_run_time(job_id, None)
        if self._rebuilding is not None:
            self._rebuilding.add(job_id)

    def _set_run_time(self, job_id: int, run_time: float | None) -> None:
        self.run_time_total -= self.run_times.pop(job_id, 0.0)
        if run_time is not None:
            self.run_times[job_id] = run_time
            self.run_time_total += run_time

    def learn(self, job: Job[Any, Any]) -> None:
        """Take a job as read from storage."""
        if job.id is None:
            return
        self._set(job.id, JobState(job.status, job.kind, retried_attempts(job)))
        if job.status in RUNNING and job.last_ran_at is not None:
            self.started[job.id] = job.last_ran_at.timestamp()
        self._set_run_time(job.id, run_time_ms(job))

    def apply(self, name: str, job_id: int, now: float) -> bool:
        """Apply job event `name` (one of STATUS_AFTER) received at `now` (epoch
        seconds); False when the job is unknown (it has to be read)."""
        old = self.jobs.get(job_id)
        if old is None:
            return False
        retried = old.retried + (1 if name == EventName.JOB_RETRY else 0)
        if name == EventName.JOB_START and old.status in RETRIED_AS_NEW:
            retried = 0  # retried in another tab (no event says so): it starts as new
        started = self.started.get(job_id)
        self._set(job_id, JobState(STATUS_AFTER[name], old.kind, retried))
        if name == EventName.JOB_START:
            self.started[job_id] = now
        elif name == EventName.JOB_COMPLETE and started is not None:
            self._set_run_time(job_id, max(now - started, 0.0) * 1000)
        return True

    def forget(self, job_ids: Iterable[int]) -> None:
        """Jobs that were deleted."""
        for job_id in list(job_ids):
            self._set(job_id, None)

    # -- rebuilding from a full read ----------------------------------------------------

    def begin_rebuild(self) -> None:
        """A full read of the queue starts: note what events change meanwhile."""
        self._rebuilding = set()

    def end_rebuild(self, jobs: Iterable[Job[Any, Any]]) -> None:
        """Take the full read: jobs that changed while it ran keep their newer state, the
        others take the stored one, and those it did not find were deleted."""
        changed = self._rebuilding or set()
        self._rebuilding = None
        found: set[int] = set()
        for job in jobs:
            if job.id is None:
                continue
            found.add(job.id)
            if job.id not in changed:
                self.learn(job)
        kept = found | changed
        self.forget([job_id for job_id in self.jobs if job_id not in kept])

    # -- what the page shows ------------------------------------------------------------

    def waiting(self) -> int:
        """How many jobs wait for others (WAITING)."""
        return sum(n for (_kind, status), n in self.counts.items() if status is JobStatus.WAITING)

    def with_status(self, status: JobStatus) -> set[int]:
        """The ids of the jobs with `status` (a walk over every job: for rare checks)."""
        return {job_id for job_id, state in self.jobs.items() if state.status is status}

    def count_rows(self) -> list[list[Any]]:
        """[kind, status, count] of every (kind, status) the queue holds."""
        return [[kind, status.value, count] for (kind, status), count in self.counts.items()]

    def stats(self) -> dict[str, Any]:
        """Retried attempts and the average run time of completed jobs (ms, or None)."""
        timed = len(self.run_times)
        return {
            "retried_jobs": self.retried,
            "average_processing_time": self.run_time_total / timed if timed else None,
        }


def patch_shown(job: dict[str, Any], event: JobEvent, now: datetime) -> bool:
    """Apply a job event to a job as the page shows it (`Job.as_dict()`); False when the
    event does not carry what the card shows (a failed attempt's traceback: read it)."""
    at = now.isoformat()
    if event.name == EventName.JOB_START:
        if job.get("status") in {status.value for status in RETRIED_AS_NEW}:
            job.update(run_attempts=0, output=None, completed_at=None)
            job.update(error=None, error_code=None, error_traceback=None)
        job.update(status="PROCESSING", last_ran_at=at, progress=0.0, progress_message="")
        job["run_attempts"] = int(job.get("run_attempts") or 0) + 1
    elif event.name == EventName.JOB_COMPLETE:
        job.update(status="COMPLETED", output=event.output, progress=100.0, completed_at=at)
        job.update(error=None, error_code=None, error_traceback=None)
    elif event.name == EventName.JOB_ABORTING:
        job["status"] = "ABORTING"
    elif event.name == EventName.JOB_DISABLED:
        job.update(status="DISABLED", completed_at=at)
    else:
        return False
    return True
