"""The pure decisions of pyjobqueue.outcome, with the time passed in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pyjobqueue import (
    AbortSignalJobError,
    JobStatus,
    PermanentJobError,
    RetryableJobError,
)
from pyjobqueue.job import Job
from pyjobqueue.outcome import (
    AbortReason,
    OutcomeKind,
    decide_deadline,
    decide_outcome,
    decide_recovery,
)

NOW = datetime(2030, 5, 6, 7, 8, 9, tzinfo=UTC)


def job(attempts: int = 1, max_retries: int = 3, **fields: object) -> Job[object, object]:
    return Job(input={}, run_attempts=attempts, max_retries=max_retries, **fields)  # type: ignore[arg-type]


def test_success_completes() -> None:
    outcome = decide_outcome(job(), now=NOW, output={"ok": True})
    assert (outcome.kind, outcome.output, outcome.status) == (
        OutcomeKind.COMPLETE,
        {"ok": True},
        JobStatus.COMPLETED,
    )


def test_retry_uses_retry_date_then_limiter_time_then_now() -> None:
    later = NOW + timedelta(minutes=5)
    limiter_time = NOW + timedelta(seconds=30)
    dated = decide_outcome(job(), now=NOW, error=RetryableJobError("x", later))
    assert (dated.kind, dated.run_after) == (OutcomeKind.RETRY, later)
    undated = decide_outcome(
        job(), now=NOW, error=RetryableJobError("x"), next_available=limiter_time
    )
    assert undated.run_after == limiter_time
    past = decide_outcome(job(), now=NOW, error=RetryableJobError("x", NOW - timedelta(days=1)))
    assert past.run_after == NOW


def test_last_attempt_fails_with_max_retries_reached() -> None:
    # max_retries = 2 allows 3 runs: the 3rd retryable failure is final.
    assert (
        decide_outcome(job(2, 2), now=NOW, error=RetryableJobError("x")).kind is OutcomeKind.RETRY
    )
    final = decide_outcome(job(3, 2), now=NOW, error=RetryableJobError("x"))
    assert (final.kind, final.error, final.error_code) == (
        OutcomeKind.FAIL,
        "Max retries reached",
        "PermanentJobError",
    )
    none_allowed = decide_outcome(job(1, 0), now=NOW, error=RetryableJobError("x"))
    assert none_allowed.kind is OutcomeKind.FAIL


def test_other_errors_are_permanent_with_their_class_name() -> None:
    outcome = decide_outcome(job(), now=NOW, error=KeyError("missing"))
    assert (outcome.kind, outcome.error_code, outcome.error) == (
        OutcomeKind.FAIL,
        "KeyError",
        "'missing'",
    )
    permanent = decide_outcome(job(), now=NOW, error=PermanentJobError("no"))
    assert (permanent.error_code, permanent.aborted) == ("PermanentJobError", False)


def test_aborts_are_told_apart() -> None:
    user = decide_outcome(job(), now=NOW, abort_reason=AbortReason.USER)
    assert (user.kind, user.error_code, user.aborted) == (
        OutcomeKind.FAIL,
        "AbortSignalJobError",
        True,
    )
    raised = decide_outcome(
        job(), now=NOW, error=AbortSignalJobError("bye"), abort_reason=AbortReason.USER
    )
    assert raised.error == "bye"
    stop = decide_outcome(
        job(), now=NOW, abort_reason=AbortReason.STOP, error=AbortSignalJobError("x")
    )
    assert (stop.kind, stop.status) == (OutcomeKind.REQUEUE, JobStatus.PENDING)
    deadline = decide_outcome(job(), now=NOW, abort_reason=AbortReason.DEADLINE)
    assert (deadline.error, deadline.aborted) == ("Deadline exceeded", False)


def test_output_must_be_json() -> None:
    outcome = decide_outcome(job(), now=NOW, output={"x": {1, 2}})
    assert (outcome.kind, outcome.error_code) == (OutcomeKind.FAIL, "TypeError")
    assert "output['x']" in (outcome.error or "")


def test_recovery_and_deadline() -> None:
    assert decide_recovery(job(1, 3), NOW).kind is OutcomeKind.RETRY
    queued_at = NOW - timedelta(minutes=5)
    kept = decide_recovery(job(1, 3, run_after=queued_at), NOW)
    assert kept.run_after == queued_at  # it keeps its place in the queue
    assert decide_recovery(job(4, 3), NOW).error == "Max retries reached"
    aborting = decide_recovery(job(1, 3, status=JobStatus.ABORTING), NOW)
    assert (aborting.kind, aborting.aborted) == (OutcomeKind.FAIL, True)
    assert decide_deadline(job(deadline_at=NOW + timedelta(seconds=1)), NOW) is None
    assert decide_deadline(job(), NOW) is None
    expired = decide_deadline(job(deadline_at=NOW), NOW)
    assert expired is not None and expired.error == "Deadline exceeded"
