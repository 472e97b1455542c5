"""What each storage operation does to a job record: every rule of the state machine, once.

`outcome.py` decides where an attempt goes (complete, retry at T, fail, re-queue); this
module says what that, and every other operation (claim, lease renewal, progress,
abort, disable, retry, recovery), changes in the record, and when it may apply (the
guards). The in-memory and IndexedDB storages apply these functions to their records;
SQLite and PostgreSQL express the same rules in SQL, and the storage contract suite
runs one table of transitions on every backend against these functions, so the SQL
cannot drift from them. See docs/job-lifecycle.md for the picture.

Every function edits the record in place and returns what the storage operation
returns. None of them does I/O or reads the clock: the time is passed in.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Generator, Sequence, Set
from datetime import datetime
from typing import Any

from .errors import AbortSignalJobError, DependencyFailedError
from .job import ACTIVE_STATUSES, FINISHED_STATUSES, Job, JobStatus
from .outcome import AbortReason, Outcome, OutcomeKind

# Statuses from which `abort` moves a job, and `retry` brings one back.
ABORTABLE_STATUSES = frozenset({JobStatus.WAITING, JobStatus.PENDING, JobStatus.PROCESSING})
# Statuses from which `disable` moves a job: those of a job that has not started.
DISABLEABLE_STATUSES = frozenset({JobStatus.WAITING, JobStatus.PENDING})
RETRYABLE_STATUSES = frozenset({JobStatus.FAILED, JobStatus.DISABLED})
# While a job is in one of these, no other job of its queue may take its unique key
# (SPEC 8.3). The SQL backends' partial unique indexes name the same statuses, and
# WAITING, the status of a job that waits for others (SPEC 8.7).
UNIQUE_KEY_HOLDING = frozenset(
    {JobStatus.WAITING, JobStatus.PENDING, JobStatus.PROCESSING, JobStatus.ABORTING}
)
# A dependency that ends in one of these fails the jobs that wait for it (SPEC 8.7).
FAILS_DEPENDANTS = frozenset({JobStatus.FAILED, JobStatus.DISABLED})
DEPENDENCY_FAILED = "Dependency failed"
DEPENDENCY_FAILED_CODE = DependencyFailedError.__name__

# A claim's kinds: the kinds a server runs (None: any kind). A job without a kind is
# claimable by every server of its queue, and runs as that server's first job class.
Kinds = Set[str] | None


def claim_order(job: Job[Any, Any]) -> tuple[int, datetime, int]:
    """The order in which PENDING jobs are claimed and peeked: the highest priority
    first, then the earliest run_after, then the lowest id."""
    return -job.priority, job.run_after, job.id or 0


def runs_kind(job: Job[Any, Any], kinds: Kinds) -> bool:
    """Whether a server running `kinds` runs the job."""
    return kinds is None or job.kind is None or job.kind in kinds


def is_claimable(job: Job[Any, Any], now: datetime, kinds: Kinds = None) -> bool:
    """Whether a claim at `now` of a server running `kinds` may take the job (the queue
    is not paused: a paused queue's claims take nothing)."""
    return job.status is JobStatus.PENDING and job.run_after <= now and runs_kind(job, kinds)


def holds_unique_key(job: Job[Any, Any]) -> bool:
    """Whether the job keeps others of its queue from taking its unique key."""
    return job.unique_key is not None and job.status in UNIQUE_KEY_HOLDING


def claim(job: Job[Any, Any], worker_id: str, now: datetime, lease_until: datetime) -> None:
    """PENDING -> PROCESSING: a new attempt of `worker_id`, leased until `lease_until`."""
    job.status = JobStatus.PROCESSING
    job.worker_id = worker_id
    job.run_attempts += 1
    job.last_ran_at = now
    job.lease_expires_at = lease_until
    job.progress, job.progress_message, job.progress_details = 0.0, "", None


def is_attempt(job: Job[Any, Any], worker_id: str, attempt: int) -> bool:
    """The guard of every write a worker makes: the job is still this attempt of it."""
    return (
        job.status in ACTIVE_STATUSES and job.worker_id == worker_id and job.run_attempts == attempt
    )


def lease_expired(job: Job[Any, Any], before: datetime | None) -> bool:
    """The guard of lease recovery: the lease expired before `before` (None: no guard)."""
    if before is None:
        return True
    return job.lease_expires_at is not None and job.lease_expires_at < before


def renew_lease(job: Job[Any, Any], lease_until: datetime) -> JobStatus:
    """Extend the lease of a running attempt; the status the worker should know of."""
    job.lease_expires_at = lease_until
    return job.status


def save_progress(
    job: Job[Any, Any], progress: float, message: str, details: dict[str, Any] | None
) -> None:
    """Record the progress of a running attempt."""
    job.progress, job.progress_message = float(progress), message
    job.progress_details = copy.deepcopy(details)


def finish(job: Job[Any, Any], outcome: Outcome) -> None:
    """End an attempt as `outcome` says; worker and lease are cleared in every case.

    COMPLETE keeps the output (progress 100, error and traceback cleared) and FAIL the
    error and traceback, both with completed_at; RETRY makes the job PENDING at
    run_after with the error and traceback kept; REQUEUE (a stop or a snooze, not a
    failure) makes it PENDING at run_after and gives the attempt back.
    """
    job.status = outcome.status
    job.worker_id = None
    job.lease_expires_at = None
    if outcome.kind is OutcomeKind.COMPLETE:
        job.output = copy.deepcopy(outcome.output)
        job.progress = 100.0
        job.error = job.error_code = job.error_traceback = None
        job.completed_at = outcome.at
    elif outcome.kind is OutcomeKind.FAIL:
        job.error, job.error_code = outcome.error, outcome.error_code
        job.error_traceback = outcome.traceback
        job.completed_at = outcome.at
    else:
        if outcome.kind is OutcomeKind.REQUEUE:
            job.run_attempts = max(0, job.run_attempts - 1)
        else:
            job.error, job.error_code = outcome.error, outcome.error_code
            job.error_traceback = outcome.traceback
        job.run_after = outcome.run_after or outcome.at


def makes_claimable(outcome: Outcome) -> bool:
    """Whether a job is claimable again once `outcome` applied (idle workers should look)."""
    return outcome.kind in (OutcomeKind.RETRY, OutcomeKind.REQUEUE)


def abort(job: Job[Any, Any], now: datetime) -> JobStatus | None:
    """PENDING or WAITING -> FAILED at once (AbortSignalJobError), PROCESSING -> ABORTING
    (its worker ends it); the new status, or None when nothing changed (finished,
    already aborting)."""
    if job.status in DISABLEABLE_STATUSES:
        job.status = JobStatus.FAILED
        job.error = AbortReason.USER.value
        job.error_code = AbortSignalJobError.__name__
        job.completed_at = now
        return JobStatus.FAILED
    if job.status is JobStatus.PROCESSING:
        job.status = JobStatus.ABORTING
        return JobStatus.ABORTING
    return None


def disable(job: Job[Any, Any], now: datetime) -> bool:
    """PENDING or WAITING -> DISABLED (it will not run); whether it applied."""
    if job.status not in DISABLEABLE_STATUSES:
        return False
    job.status = JobStatus.DISABLED
    job.completed_at = now
    return True


def retry(
    job: Job[Any, Any],
    now: datetime,
    key_held_elsewhere: bool = False,
    dependencies_completed: bool = True,
) -> bool:
    """FAILED/DISABLED -> PENDING at `now`, as a fresh job; whether it applied.

    Refused while another job of the queue holds the job's unique key
    (`key_held_elsewhere`): two unfinished jobs never share a key; and unless every job
    it depends on is COMPLETED and still stored (`dependencies_completed`).
    """
    if job.status not in RETRYABLE_STATUSES or key_held_elsewhere:
        return False
    if not dependencies_completed:
        return False
    job.status = JobStatus.PENDING
    job.run_attempts = 0
    job.run_after = now
    job.dependencies_left = 0
    job.error = job.error_code = job.error_traceback = job.output = job.completed_at = None
    job.progress, job.progress_message, job.progress_details = 0.0, "", None
    return True


def lease_has_expired(job: Job[Any, Any], now: datetime) -> bool:
    """Whether lease recovery at `now` should look at the job (its worker went silent)."""
    return (
        job.status in ACTIVE_STATUSES
        and job.lease_expires_at is not None
        and job.lease_expires_at < now
    )


# -- dependencies (SPEC 8.7) -------------------------------------------------------------


def submit_waiting(
    job: Job[Any, Any], dependencies: Sequence[Job[Any, Any]], now: datetime
) -> None:
    """The status of a new job that depends on `dependencies` (every one of them stored):
    FAILED at once when one of them failed or was disabled, PENDING when all completed,
    else WAITING for `dependencies_left` of them."""
    job.dependencies_left = 0
    if any(dependency.status in FAILS_DEPENDANTS for dependency in dependencies):
        _fail_for_dependency(job, now)
        return
    left = sum(1 for dependency in dependencies if dependency.status is not JobStatus.COMPLETED)
    job.status = JobStatus.WAITING if left else JobStatus.PENDING
    job.dependencies_left = left


def dependency_completed(job: Job[Any, Any], at: datetime) -> bool:
    """One job a WAITING `job` depends on completed at `at`: one fewer to wait for, and
    PENDING when none is left, due no sooner than `at` (a claim that began before the
    completion never takes it); whether it became PENDING."""
    if job.status is not JobStatus.WAITING:
        return False
    job.dependencies_left = max(0, job.dependencies_left - 1)
    if job.dependencies_left:
        return False
    job.status = JobStatus.PENDING
    job.run_after = max(job.run_after, at)
    return True


def dependency_failed(job: Job[Any, Any], now: datetime) -> bool:
    """A job a WAITING `job` depends on (directly or not) failed, was disabled or was
    deleted unfinished: WAITING -> FAILED with DependencyFailedError; whether it applied."""
    if job.status is not JobStatus.WAITING:
        return False
    _fail_for_dependency(job, now)
    return True


def _fail_for_dependency(job: Job[Any, Any], now: datetime) -> None:
    job.status = JobStatus.FAILED
    job.error, job.error_code = DEPENDENCY_FAILED, DEPENDENCY_FAILED_CODE
    job.completed_at = now
    job.dependencies_left = 0


@dataclasses.dataclass
class Settled:
    """What became of the jobs that wait for one job: every record changed (to store),
    those released (now PENDING) and those failed (each gets a job_error event)."""

    changed: list[Job[Any, Any]] = dataclasses.field(default_factory=list)
    released: list[Job[Any, Any]] = dataclasses.field(default_factory=list)
    failed: list[Job[Any, Any]] = dataclasses.field(default_factory=list)


# A walk over the jobs that depend on others: it yields a job id and is sent back the
# records of the jobs that depend on it (the storage reads them in its transaction).
Walk = Generator[int, list[Job[Any, Any]], Settled]


def settle_dependants(job: Job[Any, Any], now: datetime, deleted: bool = False) -> Walk:
    """What `job` reaching its status (or, with `deleted`, being deleted) does to the
    jobs that wait for it: a completion counts for each direct dependant (released when
    it was the last); a failure, a disabling or the deletion of an unfinished job fails
    every job waiting on it, transitively. The SQL backends' triggers say the same."""
    settled = Settled()
    if job.id is None:
        return settled
    if job.status is JobStatus.COMPLETED and not deleted:
        completed_at = job.completed_at or now
        for dependant in (yield job.id):
            if dependant.status is JobStatus.WAITING:
                settled.changed.append(dependant)
                if dependency_completed(dependant, completed_at):
                    settled.released.append(dependant)
        return settled
    fails = job.status not in FINISHED_STATUSES if deleted else job.status in FAILS_DEPENDANTS
    if not fails:
        return settled
    frontier = [job.id]
    while frontier:
        job_id = frontier.pop()
        for dependant in (yield job_id):
            if dependency_failed(dependant, now):
                settled.changed.append(dependant)
                settled.failed.append(dependant)
                assert dependant.id is not None
                frontier.append(dependant.id)
    return settled


def walk_with(walk: Walk, dependants_of: Callable[[int], list[Job[Any, Any]]]) -> Settled:
    """Run a walk whose reads need no I/O (`dependants_of(id)` answers at once)."""
    try:
        job_id = next(walk)
        while True:
            job_id = walk.send(dependants_of(job_id))
    except StopIteration as stop:
        settled: Settled = stop.value
        return settled
