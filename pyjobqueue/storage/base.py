"""The storage interface: job operations every backend implements (no SQL here).

A storage serves one queue (`queue_name`); storages at the same location with other
queue names share tables but never see each other's jobs. Every method is one atomic
operation on the backend (one transaction), so workers in other processes, machines
or tabs can race safely.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, NamedTuple, Protocol, Self, runtime_checkable

from ..events import JobEvent
from ..job import Job, JobStatus
from ..limits import check_name
from ..outcome import Outcome
from ..presence import ServerInfo
from ..schedules import ScheduleState
from .feed import EventListener, EventNames, Unsubscribe

__all__ = [
    "Added",
    "EventListener",
    "QueueStorage",
    "RateLimiterStorage",
    "StorageLifecycle",
    "Unsubscribe",
    "check_queue_name",
]


class Added(NamedTuple):
    """What `add_jobs` did with one job: its id, and whether it stored it (False: a job
    of the queue already held its unique key, and `id` is that job's)."""

    id: int
    created: bool


@runtime_checkable
class QueueStorage(Protocol):
    """Where the jobs of one queue live; see each method for its exact contract."""

    queue_name: str
    # True when `subscribe` delivers events from other processes at once (a push
    # channel); False when the backend polls for them (every poll_interval_ms).
    supports_push: bool
    # True when other processes / tabs can see this storage's jobs and events.
    shared_across_processes: bool

    async def setup_database(self) -> None:
        """Create tables / object stores if missing and migrate older schemas."""

    async def close(self) -> None:
        """Release connections and subscriptions; the storage is unusable afterwards."""

    async def __aenter__(self) -> Self:
        """Set up the database and return the storage."""

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Close the storage."""

    async def add(self, job: Job[Any, Any]) -> int:
        """Store a new PENDING job (its id is ignored) and return the new id."""

    async def add_batch(self, jobs: Sequence[Job[Any, Any]]) -> list[int]:
        """Store several new jobs in one round trip / transaction; ids in order."""

    async def add_jobs(
        self, jobs: Sequence[Job[Any, Any]], connection: object | None = None
    ) -> list[Added]:
        """Store new jobs in one transaction, honouring unique keys; one `Added` each.

        With `connection` (an `asyncpg` connection for PostgreSQL, an `aiosqlite` one
        for SQLite; TypeError for other backends), the jobs are written on it, inside
        the caller's transaction: they exist if and only if that transaction commits.

        A job whose `unique_key` is held (`transitions.holds_unique_key`) by a job of the
        queue, or by an earlier job of the same call, is not stored: its `Added` carries
        the holder's id and created=False. Atomic across processes and tabs: any number
        of concurrent calls with one key store exactly one job.
        """

    async def get(self, job_id: int) -> Job[Any, Any] | None:
        """The job with this id in this queue, or None."""

    async def peek(
        self, status: JobStatus, num: int, kind: str | None = None
    ) -> list[Job[Any, Any]]:
        """Up to `num` jobs with `status` (and `kind`, when given), in claim order."""

    async def size(self, status: JobStatus | None = None, kind: str | None = None) -> int:
        """How many jobs have `status` (any status when None) and `kind` (any: None)."""

    async def counts(self) -> dict[tuple[str | None, JobStatus], int]:
        """How many jobs of the queue there are of each (kind, status); none left out
        but those with no job."""

    async def get_by_run_id(self, job_run_id: str) -> list[Job[Any, Any]]:
        """Every job of a job run, by id."""

    async def find_completed_by_fingerprint(self, fingerprint: str) -> Job[Any, Any] | None:
        """The most recently completed COMPLETED job with this input fingerprint."""

    async def claim(
        self,
        worker_id: str,
        now: datetime,
        lease_until: datetime,
        limit: int,
        start_origin: str | None = None,
        kinds: Collection[str] | None = None,
    ) -> list[Job[Any, Any]]:
        """Claim up to `limit` claimable jobs (`transitions.is_claimable`: PENDING, with
        run_after <= now, and of one of `kinds` or of no kind) in claim order; nothing
        while the queue is paused (checked in the same atomic operation).

        Claimed jobs become PROCESSING with worker_id, run_attempts + 1,
        last_ran_at = now, lease_expires_at = lease_until, progress 0. Exclusive: no
        two claims, in any process, ever return the same attempt of a job.

        With `start_origin`, the storage also publishes `job_start` (from that origin)
        for every claimed job whose deadline has not passed at `now` (those are failed
        at once instead: see `start_events`), with the claim itself where the backend
        can (PostgreSQL: in the same statement).
        """

    async def renew_lease(
        self, job_id: int, worker_id: str, attempt: int, lease_until: datetime
    ) -> JobStatus | None:
        """Extend the lease of an attempt; its status, or None when the lease is lost."""

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

    async def finish(
        self,
        job_id: int,
        worker_id: str,
        attempt: int,
        outcome: Outcome,
        lease_expired_before: datetime | None = None,
        event: JobEvent | None = None,
    ) -> bool:
        """Apply an outcome to a PROCESSING/ABORTING attempt owned by worker_id.

        Applies only while the job is still that attempt (worker_id and run_attempts
        match) and, when `lease_expired_before` is given, only if the lease expired
        before that time. Returns whether it applied. COMPLETE stores output,
        progress 100 and completed_at; FAIL stores error, error_code, completed_at;
        RETRY makes it PENDING at run_after with the error kept; REQUEUE makes it
        PENDING at run_after and gives the attempt back (run_attempts - 1). Worker
        and lease are cleared in every case.

        `event`, the event that announces the outcome, is published if and only if
        the outcome applied, as `publish` would. Where the backend can, it goes out
        with the write itself (PostgreSQL: in the same statement), so subscribers
        never miss it when the writer dies just after the write, and it costs no
        extra round trip.
        """

    async def schedule_states(self) -> list[ScheduleState]:
        """The stored state of every schedule of the queue, by name (one cheap read)."""

    async def advance_schedule(
        self, name: str, spec: str, due: datetime | None, next_tick: datetime, job: Job[Any, Any]
    ) -> int | None:
        """Apply `schedules.decide_step` to the schedule's stored state, atomically: START
        records `spec` and `next_tick` (no job), ENQUEUE records `due` as the last tick and
        `next_tick`, and inserts `job`, in one transaction; the new job's id, or None."""

    async def record_server(self, server: ServerInfo) -> None:
        """Store a server's heartbeat (replacing its previous one), and forget servers
        whose heartbeat expired more than `presence.FORGET_AFTER` ago."""

    async def remove_server(self, server_id: str) -> None:
        """Forget a server (it stopped)."""

    async def servers(self, now: datetime) -> list[ServerInfo]:
        """The servers of the queue whose heartbeat has not expired at `now`."""

    async def set_paused(self, paused: bool) -> bool:
        """Pause (True) or resume (False) the queue, for every server of it; whether that
        changed anything. Publishes `queue_paused` / `queue_resumed` when it did."""

    async def is_paused(self) -> bool:
        """Whether the queue is paused."""

    async def abort(self, job_id: int, now: datetime) -> JobStatus | None:
        """Abort a job: PENDING -> FAILED (AbortSignalJobError), PROCESSING -> ABORTING.

        Returns the new status, or None when nothing changed (finished, already
        aborting, disabled or unknown).
        """

    async def abort_job_run(self, job_run_id: str, now: datetime) -> list[tuple[int, JobStatus]]:
        """Abort every job of a run as `abort` does; (id, new status) of those changed."""

    async def disable(self, job_id: int, now: datetime) -> bool:
        """PENDING -> DISABLED (completed_at = now); False when the job was not PENDING."""

    async def retry(self, job_id: int, now: datetime) -> bool:
        """FAILED/DISABLED -> PENDING at `now` as a fresh job: attempts 0, error, output,
        progress and completed_at cleared. False when the job was in another status."""

    async def expired_leases(self, now: datetime) -> list[Job[Any, Any]]:
        """PROCESSING/ABORTING jobs whose lease expired before `now`."""

    async def delete_finished(self, status: JobStatus, completed_before: datetime) -> int:
        """Delete jobs in a finished status that finished before the cutoff; the count."""

    async def delete(self, job_id: int) -> bool:
        """Delete one job; whether it existed."""

    async def delete_all(self) -> None:
        """Delete every job of this queue (and its events)."""

    async def publish(self, event: JobEvent) -> None:
        """Send a job event to every subscriber of this queue, in any process."""

    async def subscribe(self, listener: EventListener, *, names: EventNames = None) -> Unsubscribe:
        """Deliver every event published on this queue from now on (this process's too).

        Also delivers `job_available` hints when jobs become claimable, if the backend
        can. With `names` (event names), only events of those names: the backend may
        then skip reading the others. Returns an async function that ends the
        subscription.
        """

    def is_transient(self, error: BaseException) -> bool:
        """Whether `error`, raised by this storage, may go away by itself (a busy file, a
        dropped connection, a database restarting), so the operation is worth retrying.

        Permanent failures (a read-only or corrupt file, a dropped table, a login
        refused) are raised as `StorageError` subclasses and are not transient.
        """

    async def list_jobs(
        self,
        status: JobStatus | None = None,
        kind: str | None = None,
        before_id: int | None = None,
        limit: int = 50,
    ) -> list[Job[Any, Any]]:
        """Up to `limit` jobs with `status` and `kind` (None: any), newest (highest id)
        first, of ids below `before_id` when given: a page of a listing, and the next
        one starts before the last id of this one (keyset paging, as fast on the last
        page as on the first)."""


@runtime_checkable
class RateLimiterStorage(Protocol):
    """Execution records for RateLimiter, shared by every process that uses the store."""

    async def setup_database(self) -> None:
        """Create tables / object stores if missing."""

    async def close(self) -> None:
        """Release connections."""

    async def try_record_execution(
        self, queue_name: str, max_executions: int, window_start: datetime, now: datetime
    ) -> bool:
        """Atomically: if fewer than `max_executions` since `window_start`, record one."""

    async def execution_count(self, queue_name: str, since: datetime) -> int:
        """How many executions were recorded at or after `since`."""

    async def oldest_execution_time(self, queue_name: str, since: datetime) -> datetime | None:
        """The earliest execution at or after `since`, or None."""

    async def get_next_available_time(self, queue_name: str) -> datetime | None:
        """The stored backoff time before which no job should start, or None."""

    async def set_next_available_time(self, queue_name: str, when: datetime | None) -> None:
        """Store (or clear with None) the backoff time."""

    async def prune(self, queue_name: str, before: datetime) -> int:
        """Delete execution records older than `before`; the count."""

    async def clear(self, queue_name: str) -> None:
        """Forget every execution and the backoff time of this queue."""


class StorageLifecycle:
    """Mixin: `async with storage:` sets the database up and closes it."""

    async def setup_database(self) -> None:
        """Create what the backend needs."""

    async def close(self) -> None:
        """Release what the backend holds."""

    async def __aenter__(self) -> Self:
        await self.setup_database()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()


def check_queue_name(queue_name: object) -> str:
    """Validate a queue name: a non-empty str within the limits of `pyjobqueue.limits`."""
    return check_name("queue_name", queue_name)
