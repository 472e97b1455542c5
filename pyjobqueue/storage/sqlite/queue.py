"""The SQLite queue: each operation one statement (or one BEGIN IMMEDIATE transaction).

The rules of `pyjobqueue.transitions` are written in SQL in `queries.py`; the storage
contract suite runs them against the pure functions. A claim is one
`UPDATE ... RETURNING`, which holds the file's write lock from choosing the rows to
changing them, so no other process can claim them too.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..._options import require_ms
from ...errors import AbortSignalJobError
from ...events import JobEvent
from ...job import Job, JobStatus
from ...outcome import AbortReason, Outcome, OutcomeKind
from ..base import check_queue_name
from ..core import BaseQueueStorage, start_events
from . import queries as sql
from .codec import encode_json, encode_optional_time, encode_time, job_from_row, job_to_row
from .connection import (
    DEFAULT_BUSY_TIMEOUT_MS,
    MEMORY_PATH,
    Database,
    Params,
    check_path,
    execute,
    fetch_rows,
    fetch_value,
    is_transient,
    require_driver,
)
from .feed import EventFeed, event_row

if TYPE_CHECKING:
    import aiosqlite


def _finish_statement(outcome: Outcome) -> tuple[str, Params]:
    """The guarded UPDATE that applies `outcome`, and its outcome-specific parameters."""
    at = encode_time(outcome.at)
    if outcome.kind is OutcomeKind.COMPLETE:
        return sql.FINISH_COMPLETE, {"output": encode_json(outcome.output), "at": at}
    if outcome.kind is OutcomeKind.FAIL:
        return sql.FINISH_FAIL, {"error": outcome.error, "error_code": outcome.error_code, "at": at}
    run_after = encode_time(outcome.run_after or outcome.at)
    if outcome.kind is OutcomeKind.RETRY:
        params = {"error": outcome.error, "error_code": outcome.error_code, "run_after": run_after}
        return sql.FINISH_RETRY, params
    return sql.FINISH_REQUEUE, {"run_after": run_after}


class SqliteQueueEngine:
    """The jobs of one queue in a SQLite file."""

    events_with_writes = True
    hints_with_writes = False
    supports_push = False

    def __init__(self, database: Database, queue_name: str, poll_interval: float) -> None:
        self.queue_name = queue_name
        self.shared_across_processes = database.path != MEMORY_PATH
        self._database = database
        self._queue = {"queue_name": queue_name}
        self.feed = EventFeed(database, queue_name, poll_interval)

    async def open(self) -> None:
        """Open the file (WAL mode) and create or migrate the schema."""
        await self._database.open()

    async def close(self) -> None:
        """Close the connection."""
        await self._database.close()

    def is_transient(self, error: BaseException) -> bool:
        """See `connection.is_transient`."""
        return is_transient(error)

    async def _jobs(self, statement: str, params: Params) -> list[Job[Any, Any]]:
        return [job_from_row(row) for row in await self._database.rows(statement, params)]

    async def _job(self, statement: str, params: Params) -> Job[Any, Any] | None:
        jobs = await self._jobs(statement, params)
        return jobs[0] if jobs else None

    # -- adding and reading --------------------------------------------------------

    async def insert(self, jobs: Sequence[Job[Any, Any]]) -> list[int]:
        """One INSERT for one job; a batch in one transaction."""
        # Encode everything first: a bad value stores nothing.
        rows = [job_to_row(self.queue_name, job) for job in jobs]
        if len(rows) == 1:
            return [int(await self._database.value(sql.INSERT_JOB_RETURNING_ID, rows[0]))]

        async def insert(connection: aiosqlite.Connection) -> list[int]:
            after = await fetch_value(connection, sql.LAST_JOB_ID)
            await connection.executemany(sql.INSERT_JOB, rows)
            # Under the write lock every id above `after` is one of this batch.
            ids = await fetch_rows(connection, sql.JOB_IDS_AFTER, {**self._queue, "after": after})
            return [row[0] for row in ids]

        return await self._database.transaction(insert)

    async def get(self, job_id: int) -> Job[Any, Any] | None:
        """The job, or None."""
        return await self._job(sql.GET_JOB, {**self._queue, "id": job_id})

    async def peek(self, status: JobStatus, num: int) -> list[Job[Any, Any]]:
        """Jobs with `status` in claim order."""
        params = {**self._queue, "status": status.value, "limit": num}
        return await self._jobs(sql.PEEK_JOBS, params)

    async def count(self, status: JobStatus | None) -> int:
        """How many jobs have `status`."""
        if status is None:
            return int(await self._database.value(sql.COUNT_JOBS, self._queue))
        params = {**self._queue, "status": status.value}
        return int(await self._database.value(sql.COUNT_JOBS_BY_STATUS, params))

    async def by_run_id(self, job_run_id: str) -> list[Job[Any, Any]]:
        """The jobs of a run."""
        return await self._jobs(sql.JOBS_OF_RUN, {**self._queue, "job_run_id": job_run_id})

    async def completed_by_fingerprint(self, fingerprint: str) -> Job[Any, Any] | None:
        """The latest completed job with this fingerprint."""
        params = {**self._queue, "fingerprint": fingerprint}
        return await self._job(sql.COMPLETED_BY_FINGERPRINT, params)

    # -- running -------------------------------------------------------------------

    async def claim(
        self,
        worker_id: str,
        now: datetime,
        lease_until: datetime,
        limit: int,
        start_origin: str | None,
    ) -> list[Job[Any, Any]]:
        """One UPDATE ... RETURNING (its rows come in no particular order)."""
        params = {
            **self._queue,
            "worker_id": worker_id,
            "now": encode_time(now),
            "lease_until": encode_time(lease_until),
            "limit": limit,
        }
        if start_origin is None:
            return await self._jobs(sql.CLAIM_JOBS, params)

        async def claim_and_announce(connection: aiosqlite.Connection) -> list[Job[Any, Any]]:
            # One transaction: a claim is never stored without its job_start events (a
            # failure rolls both back, and no job is left claimed by nobody).
            rows = await fetch_rows(connection, sql.CLAIM_JOBS, params)
            jobs = [job_from_row(row) for row in rows]
            events = start_events(self.queue_name, jobs, now, start_origin)
            if events:
                statement = sql.insert_events(len(events))
                values = {
                    f"{name}_{index}": value
                    for index, event in enumerate(events)
                    for name, value in event_row(event).items()
                }
                await execute(connection, statement, values)
            return jobs

        jobs = await self._database.transaction(claim_and_announce)
        if jobs:
            self.feed.stored(prune_soon=True)
        return jobs

    def _attempt(self, job_id: int, worker_id: str, attempt: int) -> Params:
        return {**self._queue, "id": job_id, "worker_id": worker_id, "attempt": attempt}

    async def renew_lease(
        self, job_id: int, worker_id: str, attempt: int, lease_until: datetime
    ) -> JobStatus | None:
        """Renew the lease of an attempt."""
        params = {
            **self._attempt(job_id, worker_id, attempt),
            "lease_until": encode_time(lease_until),
        }
        status = await self._database.value(sql.RENEW_LEASE, params)
        return None if status is None else JobStatus(status)

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
        params = {
            **self._attempt(job_id, worker_id, attempt),
            "progress": progress,
            "message": message,
            "details": encode_json(details),
        }
        return await self._database.count(sql.SAVE_PROGRESS, params) == 1

    async def finish(
        self,
        job_id: int,
        worker_id: str,
        attempt: int,
        outcome: Outcome,
        lease_expired_before: datetime | None,
        event: JobEvent | None,
    ) -> bool:
        """The guarded UPDATE of the outcome's kind."""
        statement, outcome_params = _finish_statement(outcome)
        params = {
            **self._attempt(job_id, worker_id, attempt),
            **outcome_params,
            "expired_before": encode_optional_time(lease_expired_before),
            "event": None if event is None else event_row(event)["payload"],
        }
        # One statement stores the outcome and, by a trigger, its event.
        applied = await self._database.count(statement, params) == 1
        if applied and event is not None:
            self.feed.stored(prune_soon=True)
        return applied

    # -- control -------------------------------------------------------------------

    def _abort_params(self, now: datetime) -> Params:
        return {
            **self._queue,
            "now": encode_time(now),
            "error": AbortReason.USER.value,
            "error_code": AbortSignalJobError.__name__,
        }

    async def abort(self, job_id: int, now: datetime) -> JobStatus | None:
        """Abort one job."""
        rows = await self._database.rows(sql.ABORT_JOB, {**self._abort_params(now), "id": job_id})
        return JobStatus(rows[0]["status"]) if rows else None

    async def abort_run(self, job_run_id: str, now: datetime) -> list[tuple[int, JobStatus]]:
        """Abort the jobs of a run."""
        params = {**self._abort_params(now), "job_run_id": job_run_id}
        rows = await self._database.rows(sql.ABORT_JOB_RUN, params)
        return [(row["id"], JobStatus(row["status"])) for row in rows]

    async def disable(self, job_id: int, now: datetime) -> bool:
        """Disable a PENDING job."""
        params = {**self._queue, "id": job_id, "now": encode_time(now)}
        return await self._database.count(sql.DISABLE_JOB, params) == 1

    async def retry(self, job_id: int, now: datetime) -> bool:
        """Run a finished job again."""
        params = {**self._queue, "id": job_id, "now": encode_time(now)}
        return await self._database.count(sql.RETRY_JOB, params) == 1

    async def expired_leases(self, now: datetime) -> list[Job[Any, Any]]:
        """The running jobs whose lease expired."""
        return await self._jobs(sql.EXPIRED_LEASES, {**self._queue, "now": encode_time(now)})

    # -- deleting ------------------------------------------------------------------

    async def delete_finished(self, status: JobStatus, completed_before: datetime) -> int:
        """Delete old finished jobs."""
        params = {
            **self._queue,
            "status": status.value,
            "completed_before": encode_time(completed_before),
        }
        return await self._database.count(sql.DELETE_FINISHED, params)

    async def delete(self, job_id: int) -> bool:
        """Delete one job."""
        return await self._database.count(sql.DELETE_JOB, {**self._queue, "id": job_id}) == 1

    async def delete_all(self) -> None:
        """Delete the queue's jobs and events in one transaction."""

        async def delete(connection: aiosqlite.Connection) -> None:
            await execute(connection, sql.DELETE_QUEUE_JOBS, self._queue)
            await execute(connection, sql.DELETE_QUEUE_EVENTS, self._queue)

        await self._database.transaction(delete)


class SqliteQueueStorage(BaseQueueStorage):
    """Jobs of one queue in a SQLite file that every process on this machine can share.

    `path` is a file path (created if missing, in an existing directory) or
    ":memory:" (private to this storage object). Events from other processes arrive
    within `poll_interval_ms`; a busy file is waited for up to `busy_timeout_ms`
    per attempt, and retried.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        queue_name: str,
        *,
        poll_interval_ms: float = 100,
        busy_timeout_ms: float = DEFAULT_BUSY_TIMEOUT_MS,
    ) -> None:
        check_queue_name(queue_name)
        self.path = check_path(path)
        poll_interval = require_ms("poll_interval_ms", poll_interval_ms, positive=True) / 1000
        busy_timeout = require_ms("busy_timeout_ms", busy_timeout_ms)
        require_driver()
        self._database = Database(self.path, busy_timeout)
        engine = SqliteQueueEngine(self._database, queue_name, poll_interval)
        self._feed = engine.feed
        super().__init__(queue_name, engine)

    def __repr__(self) -> str:
        return f"SqliteQueueStorage({self.path!r}, {self.queue_name!r})"
