"""The shared half of every queue storage: what all backends do alike, written once.

A backend supplies a `QueueEngine`: each storage operation applied atomically with the
rules of `pyjobqueue.transitions`, and its change feed. `BaseQueueStorage` wraps an
engine into a `QueueStorage` and adds what is the same everywhere: argument checks,
claim order, the `job_available` announcement after a job becomes claimable (added,
retried, re-queued), an outcome's event published if and only if the outcome applied,
the `job_start` events of a claim, the finished-status check of cleanup. A backend that
sends events with its writes (PostgreSQL: `pg_notify` inside the statement; SQLite: the
event row written with the change, before anyone else can use the connection) says so
with `events_with_writes`, and gets the events to send instead; one whose writes wake
idle workers themselves says `hints_with_writes`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any, Protocol

from .. import transitions
from ..errors import JobNotFoundError, StoredValueError
from ..events import JobEvent
from ..job import FINISHED_STATUSES, Job, JobStatus
from ..limits import check_aware, check_name
from ..outcome import Outcome, OutcomeKind
from ..presence import FORGET_AFTER, ServerInfo
from ..schedules import ScheduleState
from .base import Added, StorageLifecycle, check_queue_name
from .feed import ChangeFeed, EventListener, EventNames, Unsubscribe
from .group_commit import GroupCommit

logger = logging.getLogger(__name__)

# Cleanup deletes at most this many jobs per write: between two, claims and outcomes get
# the storage (SQLite's one connection, IndexedDB's jobs store, the event loop), so
# deleting 200,000 finished jobs never stalls the queue.
CLEANUP_CHUNK = 1_000

# What `add_jobs(connection=...)` says on a backend that has no connections to join.
NO_CALLER_TRANSACTIONS = (
    "{storage} cannot join a transaction of yours: submit(connection=...) needs "
    "SqliteQueueStorage (an aiosqlite connection) or PostgresQueueStorage (an asyncpg one)"
)


@dataclasses.dataclass(frozen=True, slots=True)
class Finish:
    """One attempt's outcome to write: applied only while the job is still that attempt
    (and, with `lease_expired_before`, its lease expired before then); `event` announces
    it, for an engine whose writes carry their events."""

    job_id: int
    worker_id: str
    attempt: int
    outcome: Outcome
    lease_expired_before: datetime | None = None
    event: JobEvent | None = None


class QueueEngine(Protocol):
    """A backend's operations on the jobs of one queue, each one atomic.

    Arguments arrive checked (times timezone-aware, limits positive, statuses as
    `JobStatus`). Each method applies the rule of the `transitions` function of the
    same name, guards included, and announces nothing unless it says it does.
    """

    @property
    def feed(self) -> ChangeFeed:
        """The backend's change feed."""

    # True when the events of a write go out with the write itself: then `claim` gets
    # `start_origin` and `finish` its event, to publish if and only if the write applied.
    events_with_writes: bool
    # True when outcomes are worth writing together (`GroupCommit`): a write costs a
    # round trip or a transaction, which the outcomes that arrive meanwhile share.
    groups_finishes: bool
    # True when every write that makes a job claimable wakes idle workers by itself.
    hints_with_writes: bool
    # True when `subscribe` delivers other processes' events at once (push, not polling).
    supports_push: bool
    # True when other processes / tabs see this storage's jobs and events.
    shared_across_processes: bool

    async def open(self) -> None:
        """Connect, and create or migrate the schema."""

    async def close(self) -> None:
        """Release connections; the engine is unusable afterwards."""

    async def insert(self, jobs: Sequence[Job[Any, Any]]) -> list[Added]:
        """Store new jobs (their ids ignored) in one transaction; one `Added` each, in
        order. A job whose unique key is held (`transitions.holds_unique_key`) by a job
        of the queue or by an earlier job of `jobs` is not stored (see QueueStorage).
        A job with `depends_on` gets its status from `transitions.submit_waiting` on
        those jobs, read in the same transaction (JobNotFoundError, and nothing stored,
        when one is not in the queue); one failed at once has its job_error event."""

    async def insert_in(self, connection: object, jobs: Sequence[Job[Any, Any]]) -> list[Added]:
        """`insert` on the caller's own connection, inside its transaction (the jobs
        exist iff it commits); TypeError for a connection this backend cannot use."""

    async def get(self, job_id: int) -> Job[Any, Any] | None:
        """The job with this id in this queue, or None."""

    async def peek(self, status: JobStatus, num: int, kind: str | None) -> list[Job[Any, Any]]:
        """Up to `num` (> 0) jobs with `status` (and `kind` unless None) in claim order."""

    async def count(self, status: JobStatus | None, kind: str | None) -> int:
        """How many jobs have `status` and `kind` (None: any)."""

    async def counts(self) -> dict[tuple[str | None, JobStatus], int]:
        """How many jobs there are of each (kind, status) present."""

    async def by_run_id(self, job_run_id: str) -> list[Job[Any, Any]]:
        """The jobs of a job run, by id."""

    async def completed_by_fingerprint(self, fingerprint: str) -> Job[Any, Any] | None:
        """The latest COMPLETED job with this fingerprint (highest id among equal times)."""

    async def claim(
        self,
        worker_id: str,
        now: datetime,
        lease_until: datetime,
        limit: int,
        start_origin: str | None,
        kinds: frozenset[str] | None,
    ) -> list[Job[Any, Any]]:
        """`transitions.claim` on up to `limit` (> 0) jobs for which
        `transitions.is_claimable(job, now, kinds)` holds, in claim order; none while
        the queue is paused, in the same transaction."""

    async def renew_lease(
        self, job_id: int, worker_id: str, attempt: int, lease_until: datetime
    ) -> JobStatus | None:
        """`transitions.renew_lease` when `is_attempt`; else None."""

    async def save_progress(
        self,
        job_id: int,
        worker_id: str,
        attempt: int,
        progress: float,
        message: str,
        details: dict[str, Any] | None,
    ) -> bool:
        """`transitions.save_progress` when `is_attempt`; whether it applied."""

    async def finish_all(self, finishes: Sequence[Finish]) -> list[bool]:
        """`transitions.finish` of each when `is_attempt` and `lease_expired`, together
        (no two of one job); whether each applied, in order."""

    async def schedule_states(self) -> list[ScheduleState]:
        """Every stored schedule state of the queue."""

    async def advance_schedule(
        self, name: str, spec: str, due: datetime | None, next_tick: datetime, job: Job[Any, Any]
    ) -> int | None:
        """In one transaction: read the schedule's state, apply `schedules.decide_step`
        (START: store spec and next_tick, keeping last_tick; ENQUEUE: store due as
        last_tick and next_tick, and insert `job`); the inserted job's id, or None."""

    async def record_server(self, server: ServerInfo, forget_before: datetime) -> None:
        """Upsert the server's heartbeat; delete those that expired before `forget_before`."""

    async def remove_server(self, server_id: str) -> None:
        """Delete the server's heartbeat."""

    async def servers(self) -> list[ServerInfo]:
        """Every stored heartbeat of the queue (alive or not)."""

    async def set_paused(self, paused: bool, event: JobEvent | None) -> bool:
        """Store whether the queue is paused; whether it changed. An engine with
        `events_with_writes` gets the `queue_paused` / `queue_resumed` event and logs it
        in the same write (so no job_start of a resumed queue is logged before it)."""

    async def is_paused(self) -> bool:
        """Whether the queue is paused."""

    async def abort(self, job_id: int, now: datetime) -> JobStatus | None:
        """`transitions.abort` on one job."""

    async def abort_run(self, job_run_id: str, now: datetime) -> list[tuple[int, JobStatus]]:
        """`transitions.abort` on every job of a run; (id, new status) of those changed."""

    async def disable(self, job_id: int, now: datetime) -> bool:
        """`transitions.disable`."""

    async def retry(self, job_id: int, now: datetime) -> bool:
        """`transitions.retry`."""

    async def expired_leases(self, now: datetime) -> list[Job[Any, Any]]:
        """The jobs for which `transitions.lease_has_expired` holds at `now`."""

    async def delete_finished(
        self, status: JobStatus, completed_before: datetime, limit: int
    ) -> int:
        """Delete up to `limit` jobs of a finished `status` completed before the cutoff
        (a job kept for its unfinished dependants is not one of them); the count."""

    async def delete(self, job_id: int) -> bool:
        """Delete one job; whether it existed."""

    async def delete_all(self) -> None:
        """Delete every job and stored event of the queue."""

    def is_transient(self, error: BaseException) -> bool:
        """Whether `error` from this backend may go away by itself (see QueueStorage)."""

    async def page(
        self, status: JobStatus | None, kind: str | None, before_id: int, limit: int
    ) -> list[Job[Any, Any]]:
        """Up to `limit` (> 0) jobs with `status` and `kind` (None: any) and an id below
        `before_id`, highest id first: keyset paging, newest first."""


def dependency_failed_events(queue_name: str, jobs: Sequence[Job[Any, Any]]) -> list[JobEvent]:
    """The job_error event of each job failed because a job it depends on did not
    complete (`transitions.dependency_failed`). The SQL backends' triggers write the
    same JSON (`JobEvent.to_json`) themselves."""
    return [
        JobEvent.job_error(
            queue_name,
            job.id,
            transitions.DEPENDENCY_FAILED,
            transitions.DEPENDENCY_FAILED_CODE,
        )
        for job in jobs
        if job.id is not None
    ]


# Above every job id on every backend (the SQL ones store signed 64-bit integers): the
# bound of the first page of `list_jobs`.
LARGEST_ID = 2**63 - 1


def dependency_ids(jobs: Sequence[Job[Any, Any]]) -> list[int]:
    """Every id the new jobs depend on, once each, in order: what an insert reads."""
    return sorted({job_id for job in jobs for job_id in job.depends_on})


def with_dependencies(
    jobs: Sequence[Job[Any, Any]], found: dict[int, Job[Any, Any]]
) -> list[tuple[Job[Any, Any], bool]]:
    """Inside an insert's transaction, with the dependencies it read (`found`, by id):
    each new job's record, its status from `transitions.submit_waiting`, and whether
    it would take its unique key (`transitions.holds_unique_key` of the job as
    submitted: a job failed at once still finds an unfinished holder of its key).
    JobNotFoundError when a dependency is not in the queue: nothing is stored."""
    wanted = dependency_ids(jobs)
    missing = [job_id for job_id in wanted if job_id not in found]
    if missing:
        raise JobNotFoundError(
            f"depends_on names no job of this queue: {', '.join(map(str, missing))}"
        )
    records = []
    for job in jobs:
        record = job.record()
        record.id = None
        takes_key = transitions.holds_unique_key(record)
        if record.depends_on:
            dependencies = [found[job_id] for job_id in record.depends_on]
            transitions.submit_waiting(record, dependencies, record.created_at)
        records.append((record, takes_key))
    return records


def start_events(
    queue_name: str, jobs: Sequence[Job[Any, Any]], now: datetime, origin: str
) -> list[JobEvent]:
    """The job_start events of a claim with `start_origin`: one per claimed job that
    will run, that is, whose deadline has not passed at `now`."""
    return [
        JobEvent.job_start(queue_name, job.id, origin)
        for job in jobs
        if job.id is not None and (job.deadline_at is None or job.deadline_at > now)
    ]


def _job_of(finish: Finish) -> int:
    return finish.job_id


class BaseQueueStorage(StorageLifecycle):
    """A `QueueStorage` made of a backend's engine and the rules every backend shares."""

    def __init__(self, queue_name: str, engine: QueueEngine) -> None:
        self.queue_name = check_queue_name(queue_name)
        self._engine = engine
        self.supports_push = engine.supports_push
        self.shared_across_processes = engine.shared_across_processes
        self._finishes = (
            GroupCommit(engine.finish_all, key=_job_of, name="pyjobqueue finish")
            if engine.groups_finishes
            else None
        )

    async def setup_database(self) -> None:
        """Connect, and create or migrate the schema (safe from several processes)."""
        await self._engine.open()

    async def close(self) -> None:
        """Stop the change feed and release connections; unusable afterwards."""
        await self._engine.feed.close()
        await self._engine.close()

    def _announce_available(self) -> None:
        if not self._engine.hints_with_writes:
            self._engine.feed.announce_available()

    # -- adding and reading ------------------------------------------------------

    async def add(self, job: Job[Any, Any]) -> int:
        """Store a new PENDING job (its id is ignored); the new id (or, when its unique
        key is held, the holder's)."""
        ((job_id, _created),) = await self.add_jobs([job])
        return job_id

    async def add_batch(self, jobs: Sequence[Job[Any, Any]]) -> list[int]:
        """Store several new jobs in one transaction; their ids, in order."""
        return [added.id for added in await self.add_jobs(jobs)]

    async def add_jobs(
        self, jobs: Sequence[Job[Any, Any]], connection: object | None = None
    ) -> list[Added]:
        """Store new jobs in one transaction, honouring unique keys (see QueueStorage);
        with `connection`, in the caller's transaction on it."""
        jobs = list(jobs)
        if not jobs:
            return []
        if connection is not None:
            # Servers hear of the jobs when the caller commits (PostgreSQL: the NOTIFY
            # of the insert goes out at commit; SQLite: their next poll).
            return await self._engine.insert_in(connection, jobs)
        added = await self._engine.insert(jobs)
        if any(created for _id, created in added):
            self._announce_available()
        return added

    async def get(self, job_id: int) -> Job[Any, Any] | None:
        """The job with this id in this queue, or None."""
        return await self._engine.get(job_id)

    async def peek(
        self, status: JobStatus, num: int, kind: str | None = None
    ) -> list[Job[Any, Any]]:
        """Up to `num` jobs with `status` (and `kind`), in claim order."""
        if kind is not None:
            check_name("kind", kind)
        if num <= 0:
            return []
        return await self._engine.peek(JobStatus(status), num, kind)

    async def size(self, status: JobStatus | None = None, kind: str | None = None) -> int:
        """How many jobs have `status` (all statuses when None) and `kind` (any: None)."""
        if kind is not None:
            check_name("kind", kind)
        return await self._engine.count(None if status is None else JobStatus(status), kind)

    async def counts(self) -> dict[tuple[str | None, JobStatus], int]:
        """How many jobs there are of each (kind, status) present."""
        return await self._engine.counts()

    async def get_by_run_id(self, job_run_id: str) -> list[Job[Any, Any]]:
        """Every job of a job run, by id."""
        return await self._engine.by_run_id(job_run_id)

    async def find_completed_by_fingerprint(self, fingerprint: str) -> Job[Any, Any] | None:
        """The most recently completed COMPLETED job with this input fingerprint."""
        return await self._engine.completed_by_fingerprint(fingerprint)

    # -- running -----------------------------------------------------------------

    async def claim(
        self,
        worker_id: str,
        now: datetime,
        lease_until: datetime,
        limit: int,
        start_origin: str | None = None,
        kinds: Collection[str] | None = None,
    ) -> list[Job[Any, Any]]:
        """Claim up to `limit` claimable jobs in claim order (see QueueStorage.claim)."""
        check_aware("now", now)
        check_aware("lease_until", lease_until)
        if limit <= 0:
            return []
        kind_set = None if kinds is None else frozenset(kinds)
        with_claim = start_origin if self._engine.events_with_writes else None
        claimed = await self._engine.claim(worker_id, now, lease_until, limit, with_claim, kind_set)
        claimed.sort(key=transitions.claim_order)
        jobs = [job for job in claimed if job.unreadable is None]
        for job in claimed:
            if job.unreadable is not None:
                try:
                    await self._fail_unreadable(job, worker_id, now, start_origin or worker_id)
                except Exception:  # its lease expires and recovery fails it; the rest run
                    logger.exception("queue %r: could not fail job %s", self.queue_name, job.id)
        if start_origin is not None and with_claim is None:
            for event in start_events(self.queue_name, jobs, now, start_origin):
                await self.publish(event)
        return jobs

    async def _fail_unreadable(
        self, job: Job[Any, Any], worker_id: str, now: datetime, origin: str
    ) -> None:
        """A claimed job whose stored values cannot be read fails at once, alone."""
        assert job.id is not None and job.unreadable is not None
        logger.error("queue %r: job %s fails: %s", self.queue_name, job.id, job.unreadable)
        code = StoredValueError.__name__
        outcome = Outcome(OutcomeKind.FAIL, now, error=job.unreadable, error_code=code)
        event = JobEvent.job_error(self.queue_name, job.id, job.unreadable, code, origin)
        await self.finish(job.id, worker_id, job.run_attempts, outcome, event=event)

    async def renew_lease(
        self, job_id: int, worker_id: str, attempt: int, lease_until: datetime
    ) -> JobStatus | None:
        """Extend the lease of an attempt; its status, or None when the lease is lost."""
        check_aware("lease_until", lease_until)
        return await self._engine.renew_lease(job_id, worker_id, attempt, lease_until)

    async def save_progress(
        self,
        job_id: int,
        worker_id: str,
        attempt: int,
        progress: float,
        message: str,
        details: dict[str, Any] | None,
    ) -> bool:
        """Record progress of a running attempt; False when the lease is lost."""
        return await self._engine.save_progress(
            job_id, worker_id, attempt, float(progress), message, details
        )

    async def finish(
        self,
        job_id: int,
        worker_id: str,
        attempt: int,
        outcome: Outcome,
        lease_expired_before: datetime | None = None,
        event: JobEvent | None = None,
    ) -> bool:
        """Apply an outcome to an attempt, and publish `event` iff it applied."""
        if lease_expired_before is not None:
            check_aware("lease_expired_before", lease_expired_before)
        with_write = self._engine.events_with_writes
        finish = Finish(
            job_id, worker_id, attempt, outcome, lease_expired_before, event if with_write else None
        )
        if self._finishes is not None:
            applied = await self._finishes.submit(finish)
        else:
            [applied] = await self._engine.finish_all([finish])
        if applied and event is not None and not with_write:
            await self.publish(event)  # before the job can start again: events stay in order
        if applied and transitions.makes_claimable(outcome):
            self._announce_available()
        return applied

    # -- control -----------------------------------------------------------------

    async def set_paused(self, paused: bool) -> bool:
        """Pause or resume the queue; whether it changed (then it is announced)."""
        if not isinstance(paused, bool):
            raise TypeError(f"paused must be a bool, got {type(paused).__name__}")
        event = JobEvent.queue_paused(self.queue_name, paused)
        with_write = self._engine.events_with_writes
        changed = await self._engine.set_paused(paused, event if with_write else None)
        if changed:
            if not with_write:
                await self.publish(event)
            if not paused:
                self._engine.feed.announce_available()  # idle servers claim again
        return changed

    async def is_paused(self) -> bool:
        """Whether the queue is paused."""
        return await self._engine.is_paused()

    # -- servers -----------------------------------------------------------------

    async def record_server(self, server: ServerInfo) -> None:
        """Store a server's heartbeat; forget long-expired ones (see QueueStorage)."""
        check_aware("expires_at", server.expires_at)
        await self._engine.record_server(server, server.last_seen - FORGET_AFTER)

    async def remove_server(self, server_id: str) -> None:
        """Forget a server that stopped."""
        await self._engine.remove_server(server_id)

    async def servers(self, now: datetime) -> list[ServerInfo]:
        """The servers whose heartbeat has not expired at `now`, oldest first."""
        check_aware("now", now)
        alive = [server for server in await self._engine.servers() if server.alive(now)]
        return sorted(alive, key=lambda server: (server.started_at, server.server_id))

    # -- schedules ---------------------------------------------------------------

    async def schedule_states(self) -> list[ScheduleState]:
        """The stored state of every schedule of the queue, by name."""
        return sorted(await self._engine.schedule_states(), key=lambda state: state.name)

    async def advance_schedule(
        self, name: str, spec: str, due: datetime | None, next_tick: datetime, job: Job[Any, Any]
    ) -> int | None:
        """Enqueue a schedule's due tick once, however many servers try (see QueueStorage)."""
        check_name("schedule name", name)
        check_aware("next_tick", next_tick)
        if due is not None:
            check_aware("due", due)
        job_id = await self._engine.advance_schedule(name, spec, due, next_tick, job)
        if job_id is not None:
            self._announce_available()
        return job_id

    async def abort(self, job_id: int, now: datetime) -> JobStatus | None:
        """PENDING -> FAILED, PROCESSING -> ABORTING; the new status, or None."""
        return await self._engine.abort(job_id, check_aware("now", now))

    async def abort_job_run(self, job_run_id: str, now: datetime) -> list[tuple[int, JobStatus]]:
        """Abort every job of a run as `abort` does; (id, new status) of those changed."""
        return sorted(await self._engine.abort_run(job_run_id, check_aware("now", now)))

    async def disable(self, job_id: int, now: datetime) -> bool:
        """PENDING -> DISABLED; False when the job was not PENDING."""
        return await self._engine.disable(job_id, check_aware("now", now))

    async def retry(self, job_id: int, now: datetime) -> bool:
        """FAILED/DISABLED -> PENDING as a fresh job; False in any other status."""
        retried = await self._engine.retry(job_id, check_aware("now", now))
        if retried:
            self._announce_available()
        return retried

    async def expired_leases(self, now: datetime) -> list[Job[Any, Any]]:
        """PROCESSING/ABORTING jobs whose lease expired before `now`, by id."""
        jobs = await self._engine.expired_leases(check_aware("now", now))
        return sorted(jobs, key=lambda job: job.id or 0)

    # -- deleting ----------------------------------------------------------------

    async def delete_finished(self, status: JobStatus, completed_before: datetime) -> int:
        """Delete jobs of a finished status that finished before the cutoff; the count."""
        if status not in FINISHED_STATUSES:
            raise ValueError(f"only finished jobs can be deleted by age, not {status}")
        cutoff = check_aware("completed_before", completed_before)
        total = 0
        while True:
            deleted = await self._engine.delete_finished(JobStatus(status), cutoff, CLEANUP_CHUNK)
            total += deleted
            if deleted < CLEANUP_CHUNK:
                return total
            await asyncio.sleep(0)  # the memory engine never waits: let the others in

    async def delete(self, job_id: int) -> bool:
        """Delete one job; whether it existed."""
        return await self._engine.delete(job_id)

    async def delete_all(self) -> None:
        """Delete every job of this queue (and its events)."""
        await self._engine.delete_all()

    def is_transient(self, error: BaseException) -> bool:
        """Whether `error` may go away by itself; the backend decides (see QueueStorage)."""
        return self._engine.is_transient(error)

    # -- events ------------------------------------------------------------------

    async def publish(self, event: JobEvent) -> None:
        """Send a job event to every subscriber of this queue, in any process."""
        await self._engine.feed.publish(event)

    async def subscribe(self, listener: EventListener, *, names: EventNames = None) -> Unsubscribe:
        """Deliver every event of this queue from now on (see QueueStorage.subscribe)."""
        return await self._engine.feed.subscribe(listener, names)

    # -- browsing ----------------------------------------------------------------

    async def list_jobs(
        self,
        status: JobStatus | None = None,
        kind: str | None = None,
        before_id: int | None = None,
        limit: int = 50,
    ) -> list[Job[Any, Any]]:
        """One page of jobs, newest first (see QueueStorage.list_jobs)."""
        if kind is not None:
            check_name("kind", kind)
        bad_bound = isinstance(before_id, bool) or not isinstance(before_id, int | None)
        if bad_bound:
            raise TypeError(f"before_id must be an int or None, got {before_id!r}")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
            raise ValueError(f"limit must be a positive int, got {limit!r}")
        status = None if status is None else JobStatus(status)
        below = LARGEST_ID if before_id is None else before_id
        return await self._engine.page(status, kind, below, limit)
