"""The SQLite queue: each operation one statement (or one BEGIN IMMEDIATE transaction).

The rules of `pyjobqueue.transitions` are written in SQL in `queries.py`; the storage
contract suite runs them against the pure functions. A claim is one
`UPDATE ... RETURNING`, which holds the file's write lock from choosing the rows to
changing them, so no other process can claim them too, nor pause the queue in between.
Unique keys are kept by a partial unique index, and every insert that may meet a held
key reads the holders under the same write lock as it writes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..._options import require_ms
from ...errors import AbortSignalJobError
from ...events import JobEvent
from ...job import Job, JobStatus
from ...outcome import AbortReason, OutcomeKind
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
from ..records import schedule_from_columns, server_from_columns, storable_text
from . import queries as sql
from .codec import (
    decode_time,
    encode_json,
    encode_optional_time,
    encode_time,
    job_from_row,
    job_to_row,
)
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


def _finish_object(finish: Finish) -> dict[str, Any]:
    """One entry of `queries.FINISH_ATTEMPTS`'s :finishes."""
    outcome = finish.outcome
    kind = outcome.kind
    finished = kind in (OutcomeKind.COMPLETE, OutcomeKind.FAIL)
    failed = kind in (OutcomeKind.FAIL, OutcomeKind.RETRY)
    return {
        "id": finish.job_id,
        "worker_id": finish.worker_id,
        "attempt": finish.attempt,
        "expired_before": encode_optional_time(finish.lease_expired_before),
        "kind": kind.name,
        "status": outcome.status.value,
        "output": encode_json(outcome.output) if kind is OutcomeKind.COMPLETE else None,
        # Texts travel inside JSON, which would cut one at a NUL: see storable_text.
        "error": storable_text(outcome.error) if failed else None,
        "error_code": outcome.error_code if failed else None,
        "traceback": storable_text(outcome.traceback) if failed else None,
        "completed_at": encode_time(outcome.at) if finished else None,
        "run_after": None if finished else encode_time(outcome.run_after or outcome.at),
        "event": None if finish.event is None else event_row(finish.event)["payload"],
    }


def _claim_statement(kinds: frozenset[str] | None) -> tuple[str, Params]:
    """The claim of jobs of `kinds` (None: any kind), and its kind parameters."""
    if kinds is None:
        return sql.CLAIM_JOBS, {}
    names = sorted(kinds)  # one statement text, and one order of parameters, per count
    if len(names) > sql.MAX_KINDS_READ_APART:
        return sql.CLAIM_JOBS_OF_KINDS, {"kinds": encode_json(names)}
    params = {f"kind_{index}": name for index, name in enumerate(names)}
    return sql.claim_jobs_of_each_kind(len(names)), params


class SqliteQueueEngine:
    """The jobs of one queue in a SQLite file."""

    events_with_writes = True
    groups_finishes = True
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

    async def insert(self, jobs: Sequence[Job[Any, Any]]) -> list[Added]:
        """One INSERT for one job; a batch in one transaction."""
        if any(job.depends_on for job in jobs):
            added, logged = await self._database.transaction(
                lambda connection: self._store_dependants(connection, jobs)
            )
            if logged:
                self.feed.stored(prune_soon=True)
            return added
        # Encode everything first: a bad value stores nothing.
        rows = [job_to_row(self.queue_name, job) for job in jobs]
        if len(rows) == 1:
            # A free key (or none) costs one statement; a held one, the transaction
            # below, which finds its holder (or finds that it finished meanwhile).
            job_id = await self._database.value(sql.INSERT_JOB_UNLESS_KEY_HELD, rows[0])
            if job_id is not None:
                return [Added(int(job_id), True)]
        elif all(row["unique_key"] is None for row in rows):
            ids = await self._database.transaction(lambda connection: self._store(connection, rows))
            return [Added(job_id, True) for job_id in ids]
        return await self._database.transaction(
            lambda connection: self._store_unless_held(connection, rows)
        )

    async def insert_in(self, connection: object, jobs: Sequence[Job[Any, Any]]) -> list[Added]:
        """Insert on the caller's aiosqlite connection, in its transaction: row by row,
        each free key taken by the first row that has it (the caller's write lock keeps
        other connections from taking or freeing keys until it commits or rolls back)."""
        import aiosqlite

        if not isinstance(connection, aiosqlite.Connection):
            raise TypeError(
                "SqliteQueueStorage joins the transaction of an aiosqlite.Connection to the "
                f"same file, got {type(connection).__name__}"
            )
        if any(job.depends_on for job in jobs):
            added_dependants, _logged = await self._store_dependants(connection, jobs)
            return added_dependants  # their events are read once the caller commits
        rows = [job_to_row(self.queue_name, job) for job in jobs]  # a bad value: nothing
        added = []
        for row in rows:
            job_id = await fetch_value(connection, sql.INSERT_JOB_UNLESS_KEY_HELD, row)
            if job_id is not None:
                added.append(Added(int(job_id), True))
                continue
            params = {**self._queue, "unique_keys": encode_json([row["unique_key"]])}
            ((_key, holder),) = await fetch_rows(connection, sql.UNIQUE_KEY_HOLDERS, params)
            added.append(Added(int(holder), False))
        return added

    async def _store_dependants(
        self, connection: aiosqlite.Connection, jobs: Sequence[Job[Any, Any]]
    ) -> tuple[list[Added], bool]:
        """Inside a transaction: jobs that depend on others. Their dependencies are read
        (and marked as having dependants) under the write lock, each job's status comes
        from `transitions.submit_waiting`, and one failed at once logs its job_error;
        what became of each job, and whether events were logged."""
        params = {**self._queue, "ids": encode_json(dependency_ids(jobs))}
        found = {
            row["id"]: job_from_row(row)
            for row in await fetch_rows(connection, sql.MARK_DEPENDENCIES, params)
        }
        # (_store_unless_held looks up every row's key: a job failed at once included)
        records = [record for record, _takes_key in with_dependencies(jobs, found)]
        rows = [job_to_row(self.queue_name, record) for record in records]
        added = await self._store_unless_held(connection, rows)
        links, failed = [], []
        for (job_id, created), record in zip(added, records, strict=True):
            if not created:
                continue
            record.id = job_id
            links += [
                {"dependency_id": dependency, "dependant_id": job_id}
                for dependency in record.depends_on
            ]
            if record.status is JobStatus.FAILED:
                failed.append(record)
        await connection.executemany(sql.INSERT_DEPENDENCY, links)
        await self._log(connection, dependency_failed_events(self.queue_name, failed))
        return added, bool(failed)

    async def _log(self, connection: aiosqlite.Connection, events: Sequence[JobEvent]) -> None:
        """Inside a transaction: store events in the events table, in one statement."""
        if not events:
            return
        values = {
            f"{name}_{index}": value
            for index, event in enumerate(events)
            for name, value in event_row(event).items()
        }
        await execute(connection, sql.insert_events(len(events)), values)

    async def _store(self, connection: aiosqlite.Connection, rows: list[Params]) -> list[int]:
        """Inside a transaction: insert the rows; their ids, in order."""
        if not rows:
            return []
        after = await fetch_value(connection, sql.LAST_JOB_ID)
        await connection.executemany(sql.INSERT_JOB, rows)
        # Under the write lock every id above `after` is one of these rows.
        ids = await fetch_rows(connection, sql.JOB_IDS_AFTER, {**self._queue, "after": after})
        return [row[0] for row in ids]

    async def _store_unless_held(
        self, connection: aiosqlite.Connection, rows: list[Params]
    ) -> list[Added]:
        """Inside a transaction: insert the rows whose unique key is free, the first of
        each key only; what became of each row."""
        keys = sorted({row["unique_key"] for row in rows if row["unique_key"] is not None})
        params = {**self._queue, "unique_keys": encode_json(keys)}
        # Under the write lock no other connection takes or frees a key until the commit.
        held = {
            key: Added(holder, False)
            for key, holder in await fetch_rows(connection, sql.UNIQUE_KEY_HOLDERS, params)
        }
        stored: list[Params] = []
        # Per row: what became of it, or (its index in `stored`, whether it is that job).
        places: list[Added | tuple[int, bool]] = []
        taken: dict[str, int] = {}  # a key this batch takes -> its job's index in `stored`
        for row in rows:
            key = row["unique_key"]
            if key in held:
                places.append(held[key])
            elif key in taken:
                places.append((taken[key], False))
            else:
                if key is not None:
                    taken[key] = len(stored)
                places.append((len(stored), True))
                stored.append(row)
        ids = await self._store(connection, stored)
        return [
            place if isinstance(place, Added) else Added(ids[place[0]], place[1])
            for place in places
        ]

    async def get(self, job_id: int) -> Job[Any, Any] | None:
        """The job, or None."""
        return await self._job(sql.GET_JOB, {**self._queue, "id": job_id})

    async def peek(self, status: JobStatus, num: int, kind: str | None) -> list[Job[Any, Any]]:
        """Jobs with `status` (and `kind`) in claim order."""
        params = {**self._queue, "status": status.value, "limit": num}
        if kind is None:
            return await self._jobs(sql.PEEK_JOBS, params)
        return await self._jobs(sql.PEEK_JOBS_OF_KIND, {**params, "kind": kind})

    async def count(self, status: JobStatus | None, kind: str | None) -> int:
        """How many jobs have `status` and `kind` (None: any)."""
        params: Params = {**self._queue}
        if status is not None:
            params["status"] = status.value
        if kind is not None:
            params["kind"] = kind
        statement = {
            (False, False): sql.COUNT_JOBS,
            (True, False): sql.COUNT_JOBS_BY_STATUS,
            (False, True): sql.COUNT_JOBS_OF_KIND,
            (True, True): sql.COUNT_JOBS_BY_STATUS_OF_KIND,
        }[status is not None, kind is not None]
        return int(await self._database.value(statement, params))

    async def counts(self) -> dict[tuple[str | None, JobStatus], int]:
        """How many jobs there are of each (kind, status) present."""
        rows = await self._database.rows(sql.COUNT_JOBS_BY_KIND_AND_STATUS, self._queue)
        return {(row["kind"], JobStatus(row["status"])): int(row["jobs"]) for row in rows}

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
        kinds: frozenset[str] | None,
    ) -> list[Job[Any, Any]]:
        """One UPDATE ... RETURNING (its rows come in no particular order), which stores
        the job_start events too: a claim is never stored without them."""
        claim, kind_params = _claim_statement(kinds)
        params = {
            **self._queue,
            **kind_params,
            "worker_id": worker_id,
            "now": encode_time(now),
            "lease_until": encode_time(lease_until),
            "limit": limit,
            "origin": start_origin,
        }
        jobs = await self._jobs(claim, params)
        if jobs and start_origin is not None:
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

    async def finish_all(self, finishes: Sequence[Finish]) -> list[bool]:
        """One UPDATE for every outcome; a trigger stores each one's event."""
        params = {
            **self._queue,
            # Not ASCII-escaped: SQLite's JSON functions then read back each text as given.
            "finishes": json.dumps(
                [_finish_object(finish) for finish in finishes], ensure_ascii=False
            ),
        }
        applied = {row[0] for row in await self._database.rows(sql.FINISH_ATTEMPTS, params)}
        if any(finish.event is not None and finish.job_id in applied for finish in finishes):
            self.feed.stored(prune_soon=True)
        return [finish.job_id in applied for finish in finishes]

    # -- control -------------------------------------------------------------------

    async def record_server(self, server: ServerInfo, forget_before: datetime) -> None:
        """Upsert the heartbeat and forget long-expired ones, in one write transaction."""
        params = {
            **self._queue,
            "server_id": server.server_id,
            "host": server.host,
            "pid": server.pid,
            "kinds": encode_json(list(server.kinds)),
            "worker_count": server.worker_count,
            "started_at": encode_time(server.started_at),
            "last_seen": encode_time(server.last_seen),
            "expires_at": encode_time(server.expires_at),
            "paused": int(server.paused),
        }
        forget = {**self._queue, "before": encode_time(forget_before)}

        async def record(connection: aiosqlite.Connection) -> None:
            await execute(connection, sql.RECORD_SERVER, params)
            await execute(connection, sql.FORGET_SERVERS, forget)

        await self._database.transaction(record)

    async def remove_server(self, server_id: str) -> None:
        """Delete the heartbeat."""
        await self._database.count(sql.REMOVE_SERVER, {**self._queue, "server_id": server_id})

    async def servers(self) -> list[ServerInfo]:
        """Every heartbeat of the queue."""
        rows = await self._database.rows(sql.SERVERS, self._queue)
        return [server_from_columns(row, decode_time) for row in rows]

    async def schedule_states(self) -> list[ScheduleState]:
        """Every schedule row of the queue."""
        return [
            schedule_from_columns(row, decode_time)
            for row in await self._database.rows(sql.SCHEDULE_STATES, self._queue)
        ]

    async def advance_schedule(
        self, name: str, spec: str, due: datetime | None, next_tick: datetime, job: Job[Any, Any]
    ) -> int | None:
        """Read the schedule's row, apply `decide_step`, write, in one write transaction."""
        row = job_to_row(self.queue_name, job)  # a bad value: nothing happens
        key = {**self._queue, "name": name}

        async def advance(connection: aiosqlite.Connection) -> int | None:
            found = await fetch_rows(connection, sql.GET_SCHEDULE, key)
            state = schedule_from_columns(found[0], decode_time) if found else None
            step = decide_step(state, spec, due)
            if step is Step.NOTHING:
                return None
            last = due if step is Step.ENQUEUE else (None if state is None else state.last_tick)
            await execute(
                connection,
                sql.SET_SCHEDULE,
                {
                    **key,
                    "spec": spec,
                    "last_tick": encode_optional_time(last),
                    "next_tick": encode_time(next_tick),
                },
            )
            if step is Step.START:
                return None
            (job_id,) = await self._store(connection, [row])
            return job_id

        return await self._database.transaction(advance)

    async def set_paused(self, paused: bool, event: JobEvent | None) -> bool:
        """Set the queue's flag and log `event` in one transaction; whether it changed."""
        params = {**self._queue, "now": encode_time(datetime.now(UTC))}
        statement = sql.PAUSE_QUEUE if paused else sql.RESUME_QUEUE

        async def change(connection: aiosqlite.Connection) -> bool:
            changed = await execute(connection, statement, params) == 1
            if changed and event is not None:
                await self._log(connection, [event])
            return changed

        changed = await self._database.transaction(change)
        if changed and event is not None:
            self.feed.stored(prune_soon=True)
        return changed

    async def is_paused(self) -> bool:
        """Whether the queue is paused."""
        return bool(await self._database.value(sql.QUEUE_PAUSED, self._queue))

    def _abort_params(self, now: datetime) -> Params:
        return {
            **self._queue,
            "now": encode_time(now),
            "error": AbortReason.USER.value,
            "error_code": AbortSignalJobError.__name__,
        }

    def _settled(self, changed: bool) -> None:
        """After a write that may have finished a job: the triggers of migration 6 may
        have logged job_error events of jobs waiting on it; this process reads them at
        once (its own writes do not move data_version)."""
        if changed:
            self.feed.stored(prune_soon=True)

    async def abort(self, job_id: int, now: datetime) -> JobStatus | None:
        """Abort one job."""
        rows = await self._database.rows(sql.ABORT_JOB, {**self._abort_params(now), "id": job_id})
        self._settled(bool(rows))
        return JobStatus(rows[0]["status"]) if rows else None

    async def abort_run(self, job_run_id: str, now: datetime) -> list[tuple[int, JobStatus]]:
        """Abort the jobs of a run in one transaction, dependants first (a dependant's id
        is higher than its dependencies'): each is aborted as itself before a trigger
        could fail it for a dependency of the same run (PostgreSQL's triggers, run at
        the end of its one statement, leave it the same)."""
        params = {**self._abort_params(now), "job_run_id": job_run_id}

        async def abort_each(connection: aiosqlite.Connection) -> list[tuple[int, JobStatus]]:
            changed = []
            for (job_id,) in await fetch_rows(connection, sql.ABORTABLE_OF_RUN, params):
                for row in await fetch_rows(connection, sql.ABORT_JOB, {**params, "id": job_id}):
                    changed.append((row["id"], JobStatus(row["status"])))
            return changed

        changed = await self._database.transaction(abort_each)
        self._settled(bool(changed))
        return changed

    async def disable(self, job_id: int, now: datetime) -> bool:
        """Disable a job that has not started."""
        params = {**self._queue, "id": job_id, "now": encode_time(now)}
        disabled = await self._database.count(sql.DISABLE_JOB, params) == 1
        self._settled(disabled)
        return disabled

    async def retry(self, job_id: int, now: datetime) -> bool:
        """Run a finished job again."""
        params = {**self._queue, "id": job_id, "now": encode_time(now)}
        return await self._database.count(sql.RETRY_JOB, params) == 1

    async def expired_leases(self, now: datetime) -> list[Job[Any, Any]]:
        """The running jobs whose lease expired."""
        return await self._jobs(sql.EXPIRED_LEASES, {**self._queue, "now": encode_time(now)})

    # -- deleting ------------------------------------------------------------------

    async def delete_finished(
        self, status: JobStatus, completed_before: datetime, limit: int
    ) -> int:
        """Delete old finished jobs, up to `limit`."""
        params = {
            **self._queue,
            "status": status.value,
            "completed_before": encode_time(completed_before),
            "limit": limit,
        }
        return await self._database.count(sql.DELETE_FINISHED, params)

    async def delete(self, job_id: int) -> bool:
        """Delete one job (an unfinished one fails the jobs waiting on it)."""
        deleted = await self._database.count(sql.DELETE_JOB, {**self._queue, "id": job_id}) == 1
        self._settled(deleted)
        return deleted

    async def delete_all(self) -> None:
        """Delete the queue's jobs and events in one transaction."""

        async def delete(connection: aiosqlite.Connection) -> None:
            await execute(connection, sql.DELETE_QUEUE_JOBS, self._queue)
            await execute(connection, sql.DELETE_QUEUE_EVENTS, self._queue)

        await self._database.transaction(delete)

    async def page(
        self, status: JobStatus | None, kind: str | None, before_id: int, limit: int
    ) -> list[Job[Any, Any]]:
        """Jobs newest first, below `before_id`: a backward walk of the primary key."""
        params: Params = {
            **self._queue,
            "status": None if status is None else status.value,
            "kind": kind,
            "before_id": before_id,
            "limit": limit,
        }
        return await self._jobs(sql.PAGE_JOBS, params)


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
