"""The pure decisions of pyjobqueue.outcome, with the time passed in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pyjobqueue import (
    AbortSignalJobError,
    JobSnooze,
    JobStatus,
    JobTimeoutError,
    PermanentJobError,
    RetryableJobError,
    transitions,
)
from pyjobqueue.job import Job
from pyjobqueue.limits import MAX_TRACEBACK_LENGTH
from pyjobqueue.outcome import (
    AbortReason,
    OutcomeKind,
    RetryPolicy,
    decide_deadline,
    decide_outcome,
    decide_recovery,
    format_traceback,
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


# -- SPEC 8.5: retry policies, timeouts, snoozing, tracebacks ------------------------------


def test_a_retry_policy_backs_off_up_to_its_cap_with_jitter_in_bounds() -> None:
    policy = RetryPolicy(delay_ms=1000, backoff=3, max_delay_ms=20_000, jitter=0.25)
    assert policy.delay(1, 0.5) == timedelta(seconds=1)
    assert policy.delay(2, 0.5) == timedelta(seconds=3)
    assert policy.delay(3, 0.5) == timedelta(seconds=9)
    assert policy.delay(4, 0.5) == timedelta(seconds=20)  # capped
    assert policy.delay(10_000, 0.5) == timedelta(seconds=20)  # no overflow
    assert policy.delay(1, 0.0) == timedelta(seconds=0.75)
    assert policy.delay(1, 0.999999) > timedelta(seconds=1.2499)
    assert RetryPolicy().delay(5, 0.9) == timedelta(0)  # the default: the reference's


def test_a_policy_retry_waits_for_the_later_of_its_delay_and_the_limiter() -> None:
    policy = RetryPolicy(delay_ms=2000, backoff=2, jitter=0)
    error = RetryableJobError("busy")
    second = decide_outcome(job(attempts=2), now=NOW, error=error, policy=policy, draw=0.5)
    assert second.kind is OutcomeKind.RETRY and second.run_after == NOW + timedelta(seconds=4)
    limiter = NOW + timedelta(minutes=1)
    held = decide_outcome(
        job(attempts=1), now=NOW, error=error, policy=policy, next_available=limiter
    )
    assert held.run_after == limiter
    dated = RetryableJobError("at noon", NOW + timedelta(hours=2))
    assert decide_outcome(job(), now=NOW, error=dated, policy=policy).run_after == NOW + timedelta(
        hours=2
    )


def test_retry_on_makes_other_errors_retryable_with_their_traceback() -> None:
    policy = RetryPolicy(retry_on=(KeyError,))
    empty: dict[str, int] = {}
    try:
        empty["zz"]
    except KeyError as error:
        caught = error
    outcome = decide_outcome(job(), now=NOW, error=caught, policy=policy)
    assert (outcome.kind, outcome.error, outcome.error_code) == (
        OutcomeKind.RETRY,
        "'zz'",
        "KeyError",
    )
    assert outcome.traceback is not None and outcome.traceback.endswith("KeyError: 'zz'\n")
    last = decide_outcome(job(attempts=4, max_retries=3), now=NOW, error=caught, policy=policy)
    assert (last.kind, last.error) == (OutcomeKind.FAIL, "Max retries reached")
    plain = decide_outcome(job(), now=NOW, error=caught)
    assert plain.kind is OutcomeKind.FAIL and plain.traceback == outcome.traceback


def test_a_timeout_is_a_retryable_failure_until_the_last_attempt() -> None:
    timed_out = decide_outcome(job(), now=NOW, abort_reason=AbortReason.TIMEOUT)
    assert (timed_out.kind, timed_out.error, timed_out.error_code) == (
        OutcomeKind.RETRY,
        "Timed out",
        "JobTimeoutError",
    )
    last = decide_outcome(job(attempts=4, max_retries=3), now=NOW, abort_reason=AbortReason.TIMEOUT)
    assert (last.kind, last.error, last.error_code) == (
        OutcomeKind.FAIL,
        "Max retries reached",
        "PermanentJobError",
    )
    assert issubclass(JobTimeoutError, RetryableJobError)


def test_a_snooze_requeues_later_and_gives_the_attempt_back() -> None:
    outcome = decide_outcome(job(attempts=4, max_retries=3), now=NOW, error=JobSnooze(90))
    assert (outcome.kind, outcome.run_after, outcome.snoozed) == (
        OutcomeKind.REQUEUE,
        NOW + timedelta(seconds=90),
        True,
    )
    assert JobSnooze(timedelta(minutes=2)).delay == timedelta(minutes=2)
    with pytest.raises(ValueError, match="0 or more"):
        JobSnooze(-1)
    with pytest.raises(TypeError, match="timedelta or seconds"):
        JobSnooze("soon")  # type: ignore[arg-type]


def test_a_traceback_is_storable_text_and_keeps_its_end() -> None:
    try:
        raise ValueError("bad \x00 value \udc80 " + "x" * 50_000)
    except ValueError as error:
        caught = error
    trace = format_traceback(caught)
    assert len(trace) <= MAX_TRACEBACK_LENGTH
    assert trace.startswith("...\n") and trace.endswith("x\n")
    assert "\x00" not in trace
    trace.encode("utf-8")  # no lone surrogate left


def test_the_claim_order_kinds_and_unique_key_rules() -> None:
    """The pure rules: claim order and kinds (what every backend's SQL must say too)."""
    base = NOW
    high: Job[object, object] = Job(input={}, priority=2, run_after=base, id=9)
    low: Job[object, object] = Job(input={}, priority=1, run_after=base - timedelta(hours=1), id=1)
    assert sorted([low, high], key=transitions.claim_order) == [high, low]
    typed: Job[object, object] = Job(input={}, kind="resize", run_after=base)
    assert transitions.is_claimable(typed, base, {"resize"})
    assert not transitions.is_claimable(typed, base, {"other"})
    assert transitions.is_claimable(Job(input={}, run_after=base), base, set())
    keyed: Job[object, object] = Job(input={}, unique_key="k")
    assert transitions.holds_unique_key(keyed)
    keyed.status = JobStatus.COMPLETED
    assert not transitions.holds_unique_key(keyed)
