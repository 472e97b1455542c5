"""Pure decisions: what happens to a job after it ran, or after its lease expired.

The worker and the server compute an `Outcome` here, with the time passed in, and a
storage applies it atomically with `QueueStorage.finish`.
"""

from __future__ import annotations

import dataclasses
import enum
from datetime import datetime
from typing import Any

from ._json import validate_json
from .errors import AbortSignalJobError, PermanentJobError, RetryableJobError
from .job import Job, JobStatus

MAX_RETRIES_REACHED = "Max retries reached"
DEADLINE_EXCEEDED = "Deadline exceeded"
LEASE_EXPIRED = "Worker lease expired"


class AbortReason(enum.StrEnum):
    """Why a running job's signal fired."""

    USER = "Job aborted"
    DEADLINE = DEADLINE_EXCEEDED
    STOP = "Server stopping"
    LEASE_LOST = "Lease lost to another worker"


class OutcomeKind(enum.StrEnum):
    """The four ways an attempt can end."""

    COMPLETE = "complete"  # -> COMPLETED with output
    RETRY = "retry"  # -> PENDING at run_after, attempt kept
    FAIL = "fail"  # -> FAILED with error and error_code
    REQUEUE = "requeue"  # -> PENDING now, attempt given back (a stop, not a failure)


@dataclasses.dataclass(frozen=True)
class Outcome:
    """The state a job moves to when an attempt ends."""

    kind: OutcomeKind
    at: datetime
    output: Any = None
    error: str | None = None
    error_code: str | None = None
    run_after: datetime | None = None
    aborted: bool = False

    @property
    def status(self) -> JobStatus:
        """The job status this outcome leads to."""
        if self.kind is OutcomeKind.COMPLETE:
            return JobStatus.COMPLETED
        if self.kind is OutcomeKind.FAIL:
            return JobStatus.FAILED
        return JobStatus.PENDING


def _fail(now: datetime, error: str, code: str, aborted: bool = False) -> Outcome:
    return Outcome(OutcomeKind.FAIL, now, error=error, error_code=code, aborted=aborted)


def _retry_or_fail(job: Job[Any, Any], now: datetime, error: str, run_after: datetime) -> Outcome:
    if job.run_attempts > job.max_retries:
        return _fail(now, MAX_RETRIES_REACHED, PermanentJobError.__name__)
    return Outcome(
        OutcomeKind.RETRY,
        now,
        error=error,
        error_code=RetryableJobError.__name__,
        run_after=max(run_after, now),
    )


def decide_outcome(
    job: Job[Any, Any],
    *,
    now: datetime,
    output: Any = None,
    error: BaseException | None = None,
    abort_reason: AbortReason | None = None,
    next_available: datetime | None = None,
) -> Outcome:
    """Decide the outcome of an attempt that returned `output` or raised `error`."""
    if abort_reason is AbortReason.STOP:
        return Outcome(OutcomeKind.REQUEUE, now, run_after=now)
    if abort_reason is AbortReason.DEADLINE:
        return _fail(now, DEADLINE_EXCEEDED, PermanentJobError.__name__)
    if abort_reason is AbortReason.USER:
        message = str(error) if isinstance(error, AbortSignalJobError) and str(error) else None
        return _fail(now, message or AbortReason.USER.value, AbortSignalJobError.__name__, True)
    if error is None:
        try:
            validate_json(output, "output")
        except (TypeError, ValueError) as invalid:
            return _fail(now, str(invalid), type(invalid).__name__)
        return Outcome(OutcomeKind.COMPLETE, now, output=output)
    if isinstance(error, RetryableJobError):
        return _retry_or_fail(job, now, str(error), error.retry_date or next_available or now)
    aborted = isinstance(error, AbortSignalJobError)
    return _fail(now, str(error), type(error).__name__, aborted)


def decide_recovery(job: Job[Any, Any], now: datetime) -> Outcome:
    """Decide what becomes of a job whose worker's lease expired (its process died)."""
    if job.status is JobStatus.ABORTING:
        return _fail(now, AbortReason.USER.value, AbortSignalJobError.__name__, True)
    if job.run_attempts > job.max_retries:
        return _fail(now, MAX_RETRIES_REACHED, PermanentJobError.__name__)
    # It keeps its place in the queue: claimed again before the jobs queued after it.
    return Outcome(
        OutcomeKind.RETRY,
        now,
        error=LEASE_EXPIRED,
        error_code=RetryableJobError.__name__,
        run_after=min(job.run_after, now),
    )


def decide_deadline(job: Job[Any, Any], now: datetime) -> Outcome | None:
    """At claim time: fail a job whose deadline has passed, else None."""
    if job.deadline_at is not None and job.deadline_at <= now:
        return _fail(now, DEADLINE_EXCEEDED, PermanentJobError.__name__)
    return None
