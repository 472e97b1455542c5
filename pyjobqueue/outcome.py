"""Pure decisions: what happens to a job after it ran, or after its lease expired.

The worker and the server compute an `Outcome` here, with the time passed in, and a
storage applies it atomically with `QueueStorage.finish`.
"""

from __future__ import annotations

import dataclasses
import enum
import random
import traceback as tracebacks
from datetime import datetime, timedelta
from typing import Any

from ._json import validate_json
from .errors import (
    AbortSignalJobError,
    JobSnooze,
    JobTimeoutError,
    PermanentJobError,
    RetryableJobError,
)
from .job import Job, JobStatus
from .limits import MAX_TRACEBACK_LENGTH, storable_text

MAX_RETRIES_REACHED = "Max retries reached"
DEADLINE_EXCEEDED = "Deadline exceeded"
LEASE_EXPIRED = "Worker lease expired"
TIMED_OUT = "Timed out"


class AbortReason(enum.StrEnum):
    """Why a running job's signal fired."""

    USER = "Job aborted"
    DEADLINE = DEADLINE_EXCEEDED
    STOP = "Server stopping"
    LEASE_LOST = "Lease lost to another worker"
    TIMEOUT = "timeout"


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
    # The formatted traceback of the exception that ended the attempt (FAIL, RETRY).
    traceback: str | None = None
    # A REQUEUE the job asked for (JobSnooze): announced as job_retry.
    snoozed: bool = False

    @property
    def status(self) -> JobStatus:
        """The job status this outcome leads to."""
        if self.kind is OutcomeKind.COMPLETE:
            return JobStatus.COMPLETED
        if self.kind is OutcomeKind.FAIL:
            return JobStatus.FAILED
        return JobStatus.PENDING


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """When a retryable failure runs again (SPEC 8.5): the class's retry_* settings."""

    delay_ms: float = 0
    backoff: float = 2.0
    max_delay_ms: float = 3_600_000
    jitter: float = 0.1
    retry_on: tuple[type[BaseException], ...] = ()

    @classmethod
    def of(cls, job_class: type[Job[Any, Any]]) -> RetryPolicy:
        """The policy a job class declares."""
        return cls(
            delay_ms=job_class.retry_delay_ms,
            backoff=job_class.retry_backoff,
            max_delay_ms=job_class.max_retry_delay_ms,
            jitter=job_class.retry_jitter,
            retry_on=tuple(job_class.retry_on),
        )

    def delay(self, retry: int, draw: float) -> timedelta:
        """The delay before retry `retry` (1 after the first failed attempt); `draw`, in
        [0, 1), picks the jitter factor in [1 - jitter, 1 + jitter]."""
        if self.delay_ms <= 0:
            return timedelta(0)
        exponent = max(0, retry - 1)
        try:
            base = min(self.max_delay_ms, self.delay_ms * self.backoff**exponent)
        except OverflowError:
            base = self.max_delay_ms
        factor = 1 - self.jitter + 2 * self.jitter * draw
        return timedelta(milliseconds=max(0.0, base * factor))

    def retries(self, error: BaseException) -> bool:
        """Whether `error` counts as retryable."""
        return isinstance(error, RetryableJobError) or (
            bool(self.retry_on) and isinstance(error, self.retry_on)
        )


DEFAULT_POLICY = RetryPolicy()


def format_traceback(error: BaseException) -> str:
    """The traceback of `error` as text every storage keeps (its end, when it is long)."""
    text = "".join(tracebacks.format_exception(error))
    return storable_text(text, MAX_TRACEBACK_LENGTH)


def _fail(
    now: datetime, error: str, code: str, aborted: bool = False, traceback: str | None = None
) -> Outcome:
    return Outcome(
        OutcomeKind.FAIL, now, error=error, error_code=code, aborted=aborted, traceback=traceback
    )


def _retry_or_fail(
    job: Job[Any, Any],
    now: datetime,
    error: str,
    run_after: datetime,
    code: str = RetryableJobError.__name__,
    traceback: str | None = None,
) -> Outcome:
    if job.run_attempts > job.max_retries:
        return _fail(now, MAX_RETRIES_REACHED, PermanentJobError.__name__, traceback=traceback)
    return Outcome(
        OutcomeKind.RETRY,
        now,
        error=error,
        error_code=code,
        run_after=max(run_after, now),
        traceback=traceback,
    )


def decide_outcome(
    job: Job[Any, Any],
    *,
    now: datetime,
    output: Any = None,
    error: BaseException | None = None,
    abort_reason: AbortReason | None = None,
    next_available: datetime | None = None,
    policy: RetryPolicy = DEFAULT_POLICY,
    draw: float | None = None,
) -> Outcome:
    """Decide the outcome of an attempt that returned `output` or raised `error`.

    A retry without a date of its own waits as `policy` says (its jitter drawn from
    `draw`, or at random), and never less than until the limiter's `next_available`.
    """
    if abort_reason is AbortReason.STOP:
        return Outcome(OutcomeKind.REQUEUE, now, run_after=now)
    if abort_reason is AbortReason.DEADLINE:
        return _fail(now, DEADLINE_EXCEEDED, PermanentJobError.__name__)
    if abort_reason is AbortReason.USER:
        message = str(error) if isinstance(error, AbortSignalJobError) and str(error) else None
        return _fail(now, message or AbortReason.USER.value, AbortSignalJobError.__name__, True)

    def retry_at() -> datetime:
        wait = policy.delay(job.run_attempts, random.random() if draw is None else draw)
        return max(now + wait, next_available or now)

    if abort_reason is AbortReason.TIMEOUT:
        trace = None if error is None else format_traceback(error)
        return _retry_or_fail(job, now, TIMED_OUT, retry_at(), JobTimeoutError.__name__, trace)
    if error is None:
        try:
            validate_json(output, "output")
        except (TypeError, ValueError) as invalid:
            return _fail(now, str(invalid), type(invalid).__name__)
        return Outcome(OutcomeKind.COMPLETE, now, output=output)
    if isinstance(error, JobSnooze):
        return Outcome(OutcomeKind.REQUEUE, now, run_after=now + error.delay, snoozed=True)
    trace = format_traceback(error)
    if policy.retries(error):
        retry_date = error.retry_date if isinstance(error, RetryableJobError) else None
        code = RetryableJobError.__name__
        if not isinstance(error, RetryableJobError):
            code = type(error).__name__
        elif isinstance(error, JobTimeoutError):
            code = JobTimeoutError.__name__
        return _retry_or_fail(job, now, str(error), retry_date or retry_at(), code, trace)
    aborted = isinstance(error, AbortSignalJobError)
    return _fail(now, str(error), type(error).__name__, aborted, trace)


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
