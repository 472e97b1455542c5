"""The PostgreSQL queue: one statement per operation, events and hints inside the writes.

The rules of `pyjobqueue.transitions` are written in SQL in `queries.py`; the storage
contract suite runs them against the pure functions. Claims use `FOR UPDATE SKIP
LOCKED` and read the queue's pause flag in the same statement; a partial unique index
keeps each unique key to one unfinished job, whoever inserts at the same time. Every
write that makes a job claimable, and every outcome's event, notifies the queue's
channel in the statement itself (`pg_notify` in its RETURNING list), so a refused write
notifies nobody and a crash right after a write loses no event.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ...errors import AbortSignalJobError
from ...events import JobEvent
from ...job import Job, JobStatus
from ...outcome import AbortReason
from ...presence import ServerInfo
from ...schedules import ScheduleState, Step, decide_step
from ..base import Added, check_queue_name
from ..core import (
    BaseQueueStorage,
    Finish,
    dependency_failed_events,
    dependency_ids,
    with_dependencies,
)
from ..records import schedule_from_columns, server_from_columns
from . import finisher
from . import queries as sql
from .codec import encode_json, encode_text, job_from_row, job_to_row
from .connection import Database, affected, is_transient
from .feed import EventFeed, channel_for, log_event
from .queries import HINT_TAG


class PostgresQueueEngine:
    """The jobs of one queue in the `pyjobqueue_jobs` table."""

    events_with_writes = True
    groups_finishes = True
    hints_with_writes = True
    supports_push = True
    shared_across_processes = True

    def __init__(self, database: Database, queue_name: str) -> None:
        self.queue_name = queue_name
        self._database = database
        self._channel = channel_for(queue_name)
        self.feed = EventFeed(database, queue_name, self._channel)

    async def open(self) -> None:
        """Connect and create or migrate the tables (safe from several processes at once)."""
        await self._database.open()

    async def close(self) -> None:
        """Close the pool if this storage made it."""
        await self._database.close()

    def is_transient(self, error: BaseException) -> bool:
        """See `connection.is_transient`."""
        return is_transient(error)

    async def _jobs(self, statement: str, *args: Any) -> list[Job[Any, Any]]:
        rows = await self._database.fetch(statement, self.queue_name, *args)
        return [job_from_row(row) for row in rows]

    async def _job(self, statement: str, *args: Any) -> Job[Any, Any] | None:
        row = await self._database.fetchrow(statement, self.queue_name, *args)
        return None if row is None else job_from_row(row)

    # -- adding and reading -----------------------------------------------------------

    async def insert(self, jobs: Sequence[Job[Any, Any]]) -> list[Added]:
        """One unnest INSERT for any number of jobs; it hints the channel. Jobs with
        unique keys take the path of `_insert_keyed`; those without pay nothing for it."""
        if any(job.depends_on for job in jobs):
            async with self._database.transaction() as connection:
                return await self._insert_dependants(connection, jobs)
        if all(job.unique_key is None for job in jobs):
            rows = await self._database.fetch(
                sql.INSERT_JOBS, self.queue_name, *_columns(jobs), self._channel, HINT_TAG
            )
            # Ids come from the sequence in insertion order, which is the input order.
            return [Added(job_id, True) for job_id in sorted(row["id"] for row in rows)]
        async with self._database.transaction() as connection:
            return await self._insert_keyed(connection, jobs)

    async def insert_in(self, connection: object, jobs: Sequence[Job[Any, Any]]) -> list[Added]:
        """Insert on the caller's asyncpg connection, inside its transaction (a savepoint
        of it for jobs with unique keys). Its NOTIFY goes out when the caller commits,
        and wakes the servers then; a rollback takes the jobs and the NOTIFY back."""
        if not _is_asyncpg_connection(connection):
            raise TypeError(
                "PostgresQueueStorage joins the transaction of an asyncpg connection "
                f"(asyncpg.Connection or one acquired from a pool), got {type(connection).__name__}"
            )
        conn: Any = connection
        if any(job.depends_on for job in jobs):
            async with conn.transaction():
                return await self._insert_dependants(conn, jobs)
        if all(job.unique_key is None for job in jobs):
            rows = await conn.fetch(
                sql.INSERT_JOBS, self.queue_name, *_columns(jobs), self._channel, HINT_TAG
            )
            return [Added(job_id, True) for job_id in sorted(row["id"] for row in rows)]
        async with conn.transaction():
            return await self._insert_keyed(conn, jobs)

    async def _insert_dependants(
        self, connection: Any, jobs: Sequence[Job[Any, Any]]
    ) -> list[Added]:
        """In an open transaction: jobs that depend on others. Their dependencies are
        locked and marked first, each job's status comes from
        `transitions.submit_waiting`, and one failed at once logs its job_error."""
        rows = await connection.fetch(sql.MARK_DEPENDENCIES, self.queue_name, dependency_ids(jobs))
        found = {row["id"]: job_from_row(row) for row in rows}
        # (inserted PENDING, then given their status: a job failed at once still finds
        # an unfinished holder of its unique key)
        records = [record for record, _takes_key in with_dependencies(jobs, found)]
        added = await self._insert_keyed(connection, records)
        created = [
            dataclasses.replace(record, id=job_id)
            for (job_id, is_new), record in zip(added, records, strict=True)
            if is_new and record.depends_on
        ]
        await connection.execute(
            sql.SET_DEPENDANTS,
            self.queue_name,
            [record.id for record in created],
            [record.status.value for record in created],
            # (arrays of arrays must be rectangular: each one travels as its literal)
            ["{" + ",".join(map(str, record.depends_on)) + "}" for record in created],
            [record.dependencies_left for record in created],
            [record.error for record in created],
            [record.error_code for record in created],
            [record.completed_at for record in created],
        )
        links = [(dependency, record.id) for record in created for dependency in record.depends_on]
        await connection.execute(
            sql.INSERT_DEPENDENCIES, [link[0] for link in links], [link[1] for link in links]
        )
        failed = [record for record in created if record.status is JobStatus.FAILED]
        for event in dependency_failed_events(self.queue_name, failed):
            await log_event(connection, self.queue_name, self._channel, event)
        return added

    async def _insert_keyed(self, connection: Any, jobs: Sequence[Job[Any, Any]]) -> list[Added]:
        """In an open transaction: jobs of which some have unique keys. Only the first job
        of each key goes to the database; a later one gets that job's id."""
        first_with_key: dict[str, int] = {}  # a key -> the index of its first job
        for index, job in enumerate(jobs):
            if job.unique_key is not None:
                first_with_key.setdefault(job.unique_key, index)
        sent = [
            index
            for index, job in enumerate(jobs)
            if job.unique_key is None or first_with_key[job.unique_key] == index
        ]
        added = await self._insert_unique(connection, [jobs[index] for index in sent])
        by_index = dict(zip(sent, added, strict=True))
        for index, job in enumerate(jobs):
            if index not in by_index and job.unique_key is not None:
                # A later job with the key of an earlier one: the earlier's job holds it.
                by_index[index] = Added(by_index[first_with_key[job.unique_key]].id, False)
        return [by_index[index] for index in range(len(jobs))]

    async def _insert_unique(self, connection: Any, jobs: list[Job[Any, Any]]) -> list[Added]:
        """Insert jobs (no unique key twice among them) in the open transaction, leaving
        out those whose key is held; one `Added` each, in order.

        The holders of the keys left out are read by the next statement. A holder that
        finished in between (its key free again, no holder found) makes its job go in
        again: the loop ends once each job is stored or has a holder.
        """
        added: dict[int, Added] = {}
        waiting = list(range(len(jobs)))
        while waiting:
            rows = await connection.fetch(
                sql.INSERT_UNIQUE_JOBS,
                self.queue_name,
                *_columns([jobs[index] for index in waiting]),
                self._channel,
                HINT_TAG,
            )
            taken = {row["unique_key"] for row in rows}
            stored = [
                index
                for index in waiting
                if jobs[index].unique_key is None or jobs[index].unique_key in taken
            ]
            # Ids are drawn in input order, whatever order the rows went in.
            for index, job_id in zip(stored, sorted(row["id"] for row in rows), strict=True):
                added[index] = Added(job_id, True)
            held = {jobs[index].unique_key: index for index in waiting if index not in added}
            if not held:
                break
            for row in await self._key_holders(connection, list(held)):
                added[held.pop(row["unique_key"])] = Added(row["id"], False)
            waiting = sorted(held.values())
        return [added[index] for index in range(len(jobs))]

    async def _key_holders(self, connection: Any, keys: list[str | None]) -> list[Any]:
        """The jobs of the queue that hold these unique keys (id, unique_key)."""
        rows: list[Any] = await connection.fetch(sql.UNIQUE_KEY_HOLDERS, self.queue_name, keys)
        return rows

    async def get(self, job_id: int) -> Job[Any, Any] | None:
        """The job, or None."""
        return await self._job(sql.GET_JOB, job_id)

    async def peek(self, status: JobStatus, num: int, kind: str | None) -> list[Job[Any, Any]]:
        """Jobs with `status` (and `kind`) in claim order."""
        if kind is None:
            return await self._jobs(sql.PEEK_JOBS, status.value, num)
        return await self._jobs(sql.PEEK_JOBS_OF_KIND, status.value, num, kind)

    async def count(self, status: JobStatus | None, kind: str | None) -> int:
        """How many jobs have `status` and `kind`."""
        statuses = () if status is None else (status.value,)
        kinds = () if kind is None else (kind,)
        statement = _COUNTS[bool(statuses), bool(kinds)]
        count: int = await self._database.fetchval(statement, self.queue_name, *statuses, *kinds)
        return count

    async def counts(self) -> dict[tuple[str | None, JobStatus], int]:
        """How many jobs there are of each (kind, status)."""
        rows = await self._database.fetch(sql.COUNT_JOBS_BY_KIND_AND_STATUS, self.queue_name)
        return {(row["kind"], JobStatus(row["status"])): row["count"] for row in rows}

    async def by_run_id(self, job_run_id: str) -> list[Job[Any, Any]]:
        """The jobs of a run."""
        return await self._jobs(sql.JOBS_OF_RUN, job_run_id)

    async def completed_by_fingerprint(self, fingerprint: str) -> Job[Any, Any] | None:
        """The latest completed job with this fingerprint."""
        return await self._job(sql.COMPLETED_BY_FINGERPRINT, fingerprint)

    # -- running ------------------------------------------------------------------------

    async def claim(
        self,
        worker_id: str,
        now: datetime,
        lease_until: datetime,
        limit: int,
        start_origin: str | None,
        kinds: frozenset[str] | None,
    ) -> list[Job[Any, Any]]:
        """One SKIP LOCKED claim; with `start_origin`, job_start goes out in it too."""
        args: list[Any] = [now, worker_id, lease_until, limit]
        if start_origin is not None:
            args += [self._channel, start_origin]
        if kinds is not None:
            args.append(sorted(kinds))
        return await self._jobs(_CLAIMS[start_origin is not None, kinds is not None], *args)

    async def renew_lease(
        self, job_id: int, worker_id: str, attempt: int, lease_until: datetime
    ) -> JobStatus | None:
        """Renew the lease of an attempt."""
        status = await self._database.fetchval(
            sql.RENEW_LEASE, job_id, self.queue_name, worker_id, attempt, lease_until
        )
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
        saved = await self._database.fetchval(
            sql.SAVE_PROGRESS,
            job_id,
            self.queue_name,
            worker_id,
            attempt,
            progress,
            encode_text(message),
            encode_json(details),
        )
        return saved is not None

    async def finish_all(self, finishes: Sequence[Finish]) -> list[bool]:
        """The outcomes, and their events logged and notified, in one statement."""
        return await finisher.finish_all(self._database, self.queue_name, self._channel, finishes)

    async def set_paused(self, paused: bool, event: JobEvent | None) -> bool:
        """Set the queue's flag in pyjobqueue_queues, which every claim reads, and log
        and notify `event` in the same transaction."""
        statement = sql.PAUSE_QUEUE if paused else sql.RESUME_QUEUE

        async with self._database.transaction() as connection:
            changed = await connection.fetchval(statement, self.queue_name) is not None
            if changed and event is not None:
                await log_event(connection, self.queue_name, self._channel, event)
        return changed

    async def is_paused(self) -> bool:
        """Whether the queue's flag is set."""
        paused: bool = await self._database.fetchval(sql.IS_PAUSED, self.queue_name)
        return paused

    # -- servers ---------------------------------------------------------------------------

    async def record_server(self, server: ServerInfo, forget_before: datetime) -> None:
        """Upsert the heartbeat and forget long-expired ones, in one statement."""
        await self._database.execute(
            sql.RECORD_SERVER,
            self.queue_name,
            server.server_id,
            encode_text(server.host),
            server.pid,
            json.dumps(list(server.kinds)),
            server.worker_count,
            server.started_at,
            server.last_seen,
            server.expires_at,
            server.paused,
            forget_before,
        )

    async def remove_server(self, server_id: str) -> None:
        """Delete the heartbeat."""
        await self._database.execute(sql.REMOVE_SERVER, self.queue_name, server_id)

    async def servers(self) -> list[ServerInfo]:
        """Every heartbeat of the queue."""
        rows = await self._database.fetch(sql.SERVERS, self.queue_name)
        return [server_from_columns(row, _as_is) for row in rows]

    # -- schedules -------------------------------------------------------------------------

    async def schedule_states(self) -> list[ScheduleState]:
        """Every schedule row of the queue."""
        rows = await self._database.fetch(sql.SCHEDULE_STATES, self.queue_name)
        return [schedule_from_columns(row, _as_is) for row in rows]

    async def advance_schedule(
        self, name: str, spec: str, due: datetime | None, next_tick: datetime, job: Job[Any, Any]
    ) -> int | None:
        """Lock the schedule's row (creating it, spec '' so that it starts), apply
        `decide_step`, write, and insert the tick's job, in one transaction."""
        arrays = _columns([job])  # a bad value: nothing happens
        async with self._database.transaction() as connection:
            await connection.execute(sql.ENSURE_SCHEDULE, self.queue_name, name, next_tick)
            row = await connection.fetchrow(sql.LOCK_SCHEDULE, self.queue_name, name)
            state = schedule_from_columns(row, _as_is) if row["spec"] else None
            step = decide_step(state, spec, due)
            if step is Step.NOTHING:
                return None
            last = due if step is Step.ENQUEUE else (None if state is None else state.last_tick)
            await connection.execute(sql.SET_SCHEDULE, self.queue_name, name, spec, last, next_tick)
            if step is Step.START:
                return None
            rows = await connection.fetch(
                sql.INSERT_JOBS, self.queue_name, *arrays, self._channel, HINT_TAG
            )
            job_id: int = rows[0]["id"]
            return job_id

    # -- aborting, disabling, cleaning up -------------------------------------------------

    async def _abort(
        self, statement: str, key: int | str, now: datetime
    ) -> list[tuple[int, JobStatus]]:
        rows = await self._database.fetch(
            statement,
            self.queue_name,
            key,
            AbortReason.USER.value,
            AbortSignalJobError.__name__,
            now,
        )
        return [(row["id"], JobStatus(row["status"])) for row in rows]

    async def abort(self, job_id: int, now: datetime) -> JobStatus | None:
        """Abort one job."""
        rows = await self._abort(sql.ABORT_JOB, job_id, now)
        return rows[0][1] if rows else None

    async def abort_run(self, job_run_id: str, now: datetime) -> list[tuple[int, JobStatus]]:
        """Abort the jobs of a run."""
        return await self._abort(sql.ABORT_JOB_RUN, job_run_id, now)

    async def disable(self, job_id: int, now: datetime) -> bool:
        """Disable a PENDING job."""
        row = await self._database.fetchrow(sql.DISABLE_JOB, self.queue_name, job_id, now)
        return row is not None

    async def retry(self, job_id: int, now: datetime) -> bool:
        """Run a finished job again; it hints the channel. Refused while another job of
        the queue holds its unique key."""
        try:
            row = await self._database.fetchrow(
                sql.RETRY_JOB, self.queue_name, job_id, now, self._channel, HINT_TAG
            )
        except self._database.driver.UniqueViolationError:
            return False  # a job took the key after the statement's check
        return row is not None

    async def expired_leases(self, now: datetime) -> list[Job[Any, Any]]:
        """The running jobs whose lease expired."""
        return await self._jobs(sql.EXPIRED_LEASES, now)

    async def delete_finished(
        self, status: JobStatus, completed_before: datetime, limit: int
    ) -> int:
        """Delete old finished jobs, up to `limit`."""
        result = await self._database.execute(
            sql.DELETE_FINISHED, self.queue_name, status.value, completed_before, limit
        )
        return affected(result)

    async def delete(self, job_id: int) -> bool:
        """Delete one job."""
        result = await self._database.execute(sql.DELETE_JOB, self.queue_name, job_id)
        return affected(result) > 0

    async def delete_all(self) -> None:
        """Delete the queue's jobs and stored events."""
        await self._database.execute(sql.DELETE_QUEUE, self.queue_name)

    async def page(
        self, status: JobStatus | None, kind: str | None, before_id: int, limit: int
    ) -> list[Job[Any, Any]]:
        """Jobs newest first, below `before_id`: a backward walk of the primary key."""
        status_value = None if status is None else status.value
        return await self._jobs(sql.PAGE_JOBS, status_value, kind, before_id, limit)


# The count statements by (of one status, of one kind).
_COUNTS = {
    (False, False): sql.COUNT_JOBS,
    (True, False): sql.COUNT_JOBS_BY_STATUS,
    (False, True): sql.COUNT_JOBS_OF_KIND,
    (True, True): sql.COUNT_JOBS_BY_STATUS_OF_KIND,
}
# The claim statements by (announcing job_start, of some kinds only).
_CLAIMS = {
    (False, False): sql.CLAIM_JOBS,
    (False, True): sql.CLAIM_JOBS_OF_KINDS,
    (True, False): sql.CLAIM_JOBS_ANNOUNCING,
    (True, True): sql.CLAIM_JOBS_OF_KINDS_ANNOUNCING,
}


def _columns(jobs: Sequence[Job[Any, Any]]) -> list[list[Any]]:
    """The arrays of `queries.INSERT_JOBS`: one per column, one value per job."""
    rows = [job_to_row(job) for job in jobs]
    return [list(column) for column in zip(*rows, strict=True)]


class PostgresQueueStorage(BaseQueueStorage):
    """The jobs of one queue in PostgreSQL, shared by every server and client on the database.

    `dsn_or_pool` is a DSN (postgresql://user:password@host:port/database; the storage
    makes its own pool and closes it) or an `asyncpg.Pool` (used, never closed).
    """

    def __init__(self, dsn_or_pool: str | Any, queue_name: str) -> None:
        check_queue_name(queue_name)
        self._database = Database(dsn_or_pool)
        super().__init__(queue_name, PostgresQueueEngine(self._database, queue_name))

    def __repr__(self) -> str:
        return f"PostgresQueueStorage({self._database.where!r}, {self.queue_name!r})"


def _is_asyncpg_connection(connection: object) -> bool:
    """An asyncpg connection, or the proxy of one that a pool lent."""
    import asyncpg
    from asyncpg.pool import PoolConnectionProxy

    return isinstance(connection, asyncpg.Connection | PoolConnectionProxy)


def _as_is(value: Any) -> Any:
    """asyncpg hands timestamptz columns back as aware datetimes already."""
    return value
