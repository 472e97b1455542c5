"""SQLite storage (CPython, aiosqlite): one file that every process on the machine shares.

The file runs in WAL mode, so readers never block the writer. Every write takes the
file's write lock before it reads anything: a lone statement (a claim is one
`UPDATE ... RETURNING`) is its own transaction and does so by itself, several
statements run in `BEGIN IMMEDIATE`. That makes claims exclusive across processes,
and a busy file is waited for (busy_timeout, then a short backoff) instead of
surfacing "database is locked". SQLite has no push channel: events go through a
table that each subscribed storage polls every `poll_interval_ms`, and an idle poll
is one `PRAGMA data_version` (no table read). All SQL is in `sqlite_queries.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .. import _json
from .._options import require_ms
from ..errors import AbortSignalJobError
from ..events import JOB_AVAILABLE, JobEvent
from ..job import FINISHED_STATUSES, Job, JobStatus
from ..outcome import AbortReason, Outcome, OutcomeKind
from . import sqlite_queries as sql
from .base import (
    EventListener,
    StorageLifecycle,
    Unsubscribe,
    check_queue_name,
    start_events,
)

if TYPE_CHECKING:
    import aiosqlite

logger = logging.getLogger("pyjobqueue")

T = TypeVar("T")
# sqlite3 binds named parameters from a dict only (not any Mapping).
Params = dict[str, Any]
Body = Callable[["aiosqlite.Connection"], Awaitable[T]]

MEMORY_PATH = ":memory:"
MINIMUM_SQLITE_VERSION = (3, 35, 0)  # UPDATE ... RETURNING
DEFAULT_BUSY_TIMEOUT_MS = 5_000
# After busy_timeout, keep retrying a busy write this long before giving up.
BUSY_RETRY_SECONDS = 60.0
EVENT_RETENTION = timedelta(minutes=5)
EVENT_PRUNE_EVERY_SECONDS = 60.0
_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class SqliteStorageError(OSError):
    """A SQLite file that cannot be used: missing directory, read-only, not a database."""


def _require_driver() -> None:
    if sqlite3.sqlite_version_info < MINIMUM_SQLITE_VERSION:
        raise RuntimeError(
            f"the SQLite storage needs SQLite 3.35 or newer, this Python has "
            f"{sqlite3.sqlite_version}"
        )
    try:
        import aiosqlite  # noqa: F401
    except ImportError as error:
        raise ImportError(
            'the SQLite storage needs aiosqlite: pip install "pyjobqueue[sqlite]"'
        ) from error


def _check_path(path: object) -> str:
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"path must be a str or a path, got {type(path).__name__}")
    text = os.fspath(path)
    if not isinstance(text, str) or not text:
        raise ValueError(f"path must be a file path or {MEMORY_PATH!r}, got {path!r}")
    return text


# -- values in and out of SQL ----------------------------------------------------------


def to_db_time(when: datetime) -> int:
    """A timezone-aware datetime as integer microseconds since the epoch."""
    if when.tzinfo is None:
        raise ValueError(f"datetime {when!r} must be timezone-aware")
    return (when - _EPOCH) // _MICROSECOND


def _db_time(when: datetime | None) -> int | None:
    return None if when is None else to_db_time(when)


def from_db_time(value: int | None) -> datetime | None:
    """What `to_db_time` stored, back as a UTC datetime."""
    return None if value is None else _EPOCH + timedelta(microseconds=value)


def _required_time(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


def _json_or_null(value: Any) -> str | None:
    return None if value is None else _json.dumps(value)


def _job_params(queue_name: str, job: Job[Any, Any]) -> dict[str, Any]:
    return {
        "queue_name": queue_name,
        "input": _json.dumps(job.input),
        "output": _json_or_null(job.output),
        "status": JobStatus(job.status).value,
        "progress": float(job.progress),
        "progress_message": job.progress_message,
        "progress_details": _json_or_null(job.progress_details),
        "max_retries": job.max_retries,
        "run_attempts": job.run_attempts,
        "error": job.error,
        "error_code": job.error_code,
        "created_at": to_db_time(job.created_at),
        "completed_at": _db_time(job.completed_at),
        "run_after": to_db_time(job.run_after),
        "deadline_at": _db_time(job.deadline_at),
        "last_ran_at": _db_time(job.last_ran_at),
        "job_run_id": job.job_run_id,
        "fingerprint": job.fingerprint,
    }


def _job_from_row(row: sqlite3.Row) -> Job[Any, Any]:
    return Job(
        id=row["id"],
        queue_name=row["queue_name"],
        input=_json.loads(row["input"]),
        output=_json.loads(row["output"]),
        status=JobStatus(row["status"]),
        progress=float(row["progress"]),
        progress_message=row["progress_message"],
        progress_details=_json.loads(row["progress_details"]),
        max_retries=row["max_retries"],
        run_attempts=row["run_attempts"],
        error=row["error"],
        error_code=row["error_code"],
        created_at=_required_time(row["created_at"]),
        completed_at=from_db_time(row["completed_at"]),
        run_after=_required_time(row["run_after"]),
        deadline_at=from_db_time(row["deadline_at"]),
        last_ran_at=from_db_time(row["last_ran_at"]),
        job_run_id=row["job_run_id"],
        fingerprint=row["fingerprint"],
        worker_id=row["worker_id"],
        lease_expires_at=from_db_time(row["lease_expires_at"]),
    )


def _finish_statement(outcome: Outcome) -> tuple[str, dict[str, Any]]:
    """The guarded UPDATE that applies `outcome`, and its outcome-specific parameters."""
    at = to_db_time(outcome.at)
    if outcome.kind is OutcomeKind.COMPLETE:
        return sql.FINISH_COMPLETE, {"output": _json.dumps(outcome.output), "at": at}
    if outcome.kind is OutcomeKind.FAIL:
        return sql.FINISH_FAIL, {"error": outcome.error, "error_code": outcome.error_code, "at": at}
    run_after = to_db_time(outcome.run_after or outcome.at)
    if outcome.kind is OutcomeKind.RETRY:
        params = {"error": outcome.error, "error_code": outcome.error_code, "run_after": run_after}
        return sql.FINISH_RETRY, params
    return sql.FINISH_REQUEUE, {"run_after": run_after}


# -- statements on a connection ----------------------------------------------------------


async def _run(
    connection: aiosqlite.Connection, statement: str, params: Params | None = None
) -> int:
    """Execute one statement; how many rows it returned (writes say RETURNING id)."""
    return len(await _rows(connection, statement, params))


async def _rows(
    connection: aiosqlite.Connection, statement: str, params: Params | None = None
) -> list[sqlite3.Row]:
    """Execute one statement and fetch its rows, in one trip to the connection's thread."""
    return list(await connection.execute_fetchall(statement, params or {}))


async def _value(
    connection: aiosqlite.Connection, statement: str, params: Params | None = None
) -> Any:
    """The first column of the first row (None when there is no row)."""
    rows = await _rows(connection, statement, params)
    return rows[0][0] if rows else None


def _is_busy(error: sqlite3.OperationalError) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)
    text = str(error)
    return "locked" in text or "busy" in text


async def _retrying_busy(attempt: Callable[[], Awaitable[T]]) -> T:
    """Run `attempt`, again after a short pause while the file stays busy."""
    deadline = time.monotonic() + BUSY_RETRY_SECONDS
    pause = 0.001
    while True:
        try:
            return await attempt()
        except sqlite3.OperationalError as error:
            if not _is_busy(error) or time.monotonic() > deadline:
                raise
            logger.debug("SQLite file busy (%s); trying again in %.3f s", error, pause)
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.05)


async def _transaction(connection: aiosqlite.Connection, body: Body[T]) -> T:
    """Run `body` in one BEGIN IMMEDIATE transaction; retried whole while busy."""

    async def attempt() -> T:
        await _run(connection, "BEGIN IMMEDIATE")
        try:
            result = await body(connection)
            await _run(connection, "COMMIT")
        except BaseException:
            if connection.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    await _run(connection, "ROLLBACK")
            raise
        return result

    return await _retrying_busy(attempt)


# -- opening a file, with clear errors ---------------------------------------------------


def _check_location(path: str) -> None:
    file = Path(path)
    directory = file.absolute().parent
    if not directory.exists():
        raise SqliteStorageError(
            f"cannot open SQLite database {path!r}: directory {str(directory)!r} does not exist"
        )
    if not directory.is_dir():
        raise SqliteStorageError(
            f"cannot open SQLite database {path!r}: {str(directory)!r} is not a directory"
        )
    if file.is_dir():
        raise SqliteStorageError(f"cannot open SQLite database {path!r}: it is a directory")


def _writable(path: str) -> bool:
    file = Path(path)
    if not os.access(file.absolute().parent, os.W_OK):
        return False
    return not file.exists() or os.access(file, os.W_OK)


def _explain(path: str, error: sqlite3.Error) -> SqliteStorageError:
    """A one-line error naming the file and the likely cause of a driver error."""
    text = str(error)
    lowered = text.lower()
    if "not a database" in lowered or "malformed" in lowered or "encrypted" in lowered:
        reason = "is not a SQLite database (or it is corrupt)"
    elif "readonly" in lowered or "read-only" in lowered or not _writable(path):
        reason = (
            "is read-only: the file and its directory must be writable "
            "(SQLite keeps -wal and -shm files next to it)"
        )
    elif "unable to open" in lowered:
        reason = "cannot be opened or created there: is the location a writable directory?"
    else:
        reason = "cannot be used"
    return SqliteStorageError(f"SQLite database {path!r} {reason} ({text})")


def _try_open(path: str) -> None:
    """Open the file once with the stdlib driver, to explain a failure clearly.

    (aiosqlite leaves its worker thread behind when its own connect fails.)
    """
    try:
        sqlite3.connect(path).close()
    except sqlite3.Error as error:
        raise _explain(path, error) from None


class _Database:
    """One aiosqlite connection to a file: schema set-up, serialised reads and writes."""

    def __init__(self, path: str, busy_timeout_ms: float) -> None:
        self.path = path
        self.busy_timeout_ms = int(busy_timeout_ms)
        self._connection: aiosqlite.Connection | None = None
        # One connection runs one transaction at a time: two coroutines must not
        # interleave their BEGIN ... COMMIT on it.
        self._lock = asyncio.Lock()
        self._opening = asyncio.Lock()
        self._closed = False

    async def open(self) -> None:
        """Connect, switch to WAL, and create or migrate the schema."""
        async with self._opening:
            if self._closed:
                raise RuntimeError(f"the SQLite storage of {self.path!r} is closed")
            if self._connection is not None:
                return
            if self.path != MEMORY_PATH:
                _check_location(self.path)
                await asyncio.to_thread(_try_open, self.path)
            import aiosqlite

            connection = await aiosqlite.connect(self.path, isolation_level=None)
            try:
                await self._prepare(connection)
            except BaseException as error:
                await connection.close()
                if isinstance(error, sqlite3.Error):
                    raise _explain(self.path, error) from None
                raise
            self._connection = connection

    async def _prepare(self, connection: aiosqlite.Connection) -> None:
        connection.row_factory = sqlite3.Row
        # PRAGMAs take no parameters; this is our own integer.
        await _run(connection, f"PRAGMA busy_timeout = {self.busy_timeout_ms}")
        await _retrying_busy(lambda: _value(connection, "PRAGMA journal_mode = WAL"))
        # In WAL mode NORMAL survives a crashed process; only power loss can drop
        # the last commits.
        await _run(connection, "PRAGMA synchronous = NORMAL")
        await self._migrate(connection)

    async def _migrate(self, connection: aiosqlite.Connection) -> None:
        if await self._schema_version(connection) == sql.LATEST_SCHEMA_VERSION:
            return

        async def migrate(connection: aiosqlite.Connection) -> None:
            await _run(connection, sql.SCHEMA_VERSION_TABLE)
            # Read again under the write lock: another process may have migrated.
            current = await self._schema_version(connection)
            for version in range(current + 1, sql.LATEST_SCHEMA_VERSION + 1):
                for statement in sql.MIGRATIONS[version - 1]:
                    await _run(connection, statement)
                now = to_db_time(datetime.now(UTC))
                await _run(
                    connection, sql.RECORD_SCHEMA_VERSION, {"version": version, "applied_at": now}
                )

        await _transaction(connection, migrate)

    async def _schema_version(self, connection: aiosqlite.Connection) -> int:
        if not await _value(connection, sql.SCHEMA_VERSION_TABLE_EXISTS):
            return 0
        version = int(await _value(connection, sql.CURRENT_SCHEMA_VERSION))
        if version > sql.LATEST_SCHEMA_VERSION:
            raise SqliteStorageError(
                f"SQLite database {self.path!r} has schema version {version}, newer than "
                f"this pyjobqueue knows ({sql.LATEST_SCHEMA_VERSION}): upgrade pyjobqueue"
            )
        return version

    async def _ready(self) -> aiosqlite.Connection:
        if self._connection is not None:
            return self._connection
        if self._closed:
            raise RuntimeError(f"the SQLite storage of {self.path!r} is closed")
        raise RuntimeError(
            f"the SQLite storage of {self.path!r} is not set up: "
            "await storage.setup_database() first (or use `async with storage:`)"
        )

    async def rows(self, statement: str, params: Params | None = None) -> list[sqlite3.Row]:
        """Run one statement, a read or a write, as its own transaction; its rows.

        A lone write statement in autocommit mode takes the write lock before it reads
        anything, exactly like BEGIN IMMEDIATE, so it is atomic across processes,
        waits for a busy file, and costs one trip to the connection's thread.
        """
        connection = await self._ready()
        async with self._lock:
            return await _retrying_busy(lambda: _rows(connection, statement, params))

    async def value(self, statement: str, params: Params | None = None) -> Any:
        """The first column of the first row of one statement, or None."""
        rows = await self.rows(statement, params)
        return rows[0][0] if rows else None

    async def count(self, statement: str, params: Params | None = None) -> int:
        """Run one write statement (RETURNING id); how many rows it changed."""
        return len(await self.rows(statement, params))

    async def transaction(self, body: Body[T]) -> T:
        """Run `body` in one BEGIN IMMEDIATE transaction; it ends whole even if cancelled."""
        connection = await self._ready()

        async def locked() -> T:
            async with self._lock:
                return await _transaction(connection, body)

        # Shielded: cancelling the caller must not leave a transaction half done on
        # the shared connection.
        task = asyncio.ensure_future(locked())
        task.add_done_callback(_retrieve_exception)
        return await asyncio.shield(task)

    async def close(self) -> None:
        """Wait for the running statement, then close the connection."""
        self._closed = True
        async with self._opening, self._lock:
            if self._connection is not None:
                connection, self._connection = self._connection, None
                await connection.close()


def _retrieve_exception(task: asyncio.Future[Any]) -> None:
    # The caller may have been cancelled and never see this exception: mark it seen.
    if not task.cancelled():
        task.exception()


# -- the change feed ---------------------------------------------------------------------


class _EventFeed:
    """Polls the events table for one queue and hands new events to local listeners."""

    def __init__(self, database: _Database, queue_name: str, poll_interval: float) -> None:
        self._database = database
        self._queue_name = queue_name
        self._poll_interval = poll_interval
        # token -> (listener, id of the last event before it subscribed)
        self._listeners: dict[int, tuple[EventListener, int]] = {}
        self._tokens = itertools.count()
        self._position = 0
        self._data_version: int | None = None
        self._own_write = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # Held while reading and delivering, and while a listener registers, so a new
        # listener starts exactly after the last event it was not meant to see.
        self._reading = asyncio.Lock()

    async def subscribe(self, listener: EventListener) -> Unsubscribe:
        token = next(self._tokens)
        async with self._reading:
            start = int(await self._database.value(sql.LAST_EVENT_ID))
            if self._task is None:
                self._position, self._data_version = start, None
                self._task = asyncio.create_task(self._poll(), name="pyjobqueue sqlite feed")
            self._listeners[token] = (listener, start)

        async def unsubscribe() -> None:
            self._listeners.pop(token, None)
            if not self._listeners:
                await self.stop()

        return unsubscribe

    def poke(self) -> None:
        """This connection wrote an event: read now (data_version only shows others')."""
        self._own_write = True
        self._wake.set()

    def announce_available(self) -> None:
        """Tell this storage's listeners that jobs can be claimed (no round trip)."""
        if self._listeners:
            self._deliver(0, JobEvent(JOB_AVAILABLE, self._queue_name, 0))

    async def _poll(self) -> None:
        # `stop` forgets the task before cancelling it: leave even if a cancellation
        # is swallowed on the way.
        while self._task is asyncio.current_task():
            self._wake.clear()
            try:
                await self._read_new()
            except Exception:
                logger.exception("reading the events of queue %r failed", self._queue_name)
            # asyncio.timeout, not wait_for: wait_for drops a cancellation that
            # arrives as the event is set (Python 3.11).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll_interval):
                    await self._wake.wait()

    async def _read_new(self) -> None:
        async with self._reading:
            version = await self._database.value(sql.DATA_VERSION)
            if version == self._data_version and not self._own_write:
                return
            self._data_version, self._own_write = version, False
            rows = await self._database.rows(
                sql.EVENTS_AFTER, {"after": self._position, "queue_name": self._queue_name}
            )
            for event_id, payload in rows:
                self._position = max(self._position, event_id)
                if payload is not None:
                    self._deliver_payload(event_id, payload)

    def _deliver_payload(self, event_id: int, payload: str) -> None:
        try:
            event = JobEvent.from_json(_json.loads(payload))
        except (ValueError, KeyError, TypeError):
            logger.warning("skipping unreadable event %s of queue %r", event_id, self._queue_name)
            return
        self._deliver(event_id, event)

    def _deliver(self, event_id: int, event: JobEvent) -> None:
        for listener, start in list(self._listeners.values()):
            if event_id and event_id <= start:
                continue
            try:
                listener(event)
            except Exception:
                logger.exception("storage event listener failed")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def close(self) -> None:
        self._listeners.clear()
        await self.stop()


# -- the storages ------------------------------------------------------------------------


class SqliteQueueStorage(StorageLifecycle):
    """Jobs of one queue in a SQLite file that every process on this machine can share.

    `path` is a file path (created if missing, in an existing directory) or
    ":memory:" (private to this storage object). Events from other processes arrive
    within `poll_interval_ms`; a busy file is waited for up to `busy_timeout_ms`
    per attempt, and retried.
    """

    supports_push = False
    shared_across_processes = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        queue_name: str,
        *,
        poll_interval_ms: float = 100,
        busy_timeout_ms: float = DEFAULT_BUSY_TIMEOUT_MS,
    ) -> None:
        self.queue_name = check_queue_name(queue_name)
        self.path = _check_path(path)
        poll_interval = require_ms("poll_interval_ms", poll_interval_ms, positive=True) / 1000
        busy_timeout = require_ms("busy_timeout_ms", busy_timeout_ms)
        _require_driver()
        if self.path == MEMORY_PATH:
            self.shared_across_processes = False
        self._database = _Database(self.path, busy_timeout)
        self._feed = _EventFeed(self._database, self.queue_name, poll_interval)
        self._next_event_prune = 0.0

    def __repr__(self) -> str:
        return f"SqliteQueueStorage({self.path!r}, {self.queue_name!r})"

    @property
    def _queue(self) -> dict[str, Any]:
        return {"queue_name": self.queue_name}

    async def setup_database(self) -> None:
        """Open the file (WAL mode) and create or migrate the schema."""
        await self._database.open()

    async def close(self) -> None:
        """Stop the event feed and close the connection."""
        await self._feed.close()
        await self._database.close()

    async def _jobs(self, statement: str, params: Params) -> list[Job[Any, Any]]:
        return [_job_from_row(row) for row in await self._database.rows(statement, params)]

    # -- adding and reading --------------------------------------------------------------

    async def add(self, job: Job[Any, Any]) -> int:
        params = _job_params(self.queue_name, job)
        job_id = int(await self._database.value(sql.INSERT_JOB_RETURNING_ID, params))
        self._feed.announce_available()
        return job_id

    async def add_batch(self, jobs: Sequence[Job[Any, Any]]) -> list[int]:
        # Encode everything first: a bad value stores nothing.
        rows = [_job_params(self.queue_name, job) for job in jobs]
        if not rows:
            return []

        async def insert(connection: aiosqlite.Connection) -> list[int]:
            after = await _value(connection, sql.LAST_JOB_ID)
            await connection.executemany(sql.INSERT_JOB, rows)
            # Under the write lock every id above `after` is one of this batch.
            ids = await _rows(connection, sql.JOB_IDS_AFTER, {**self._queue, "after": after})
            return [row[0] for row in ids]

        ids = await self._database.transaction(insert)
        self._feed.announce_available()
        return ids

    async def get(self, job_id: int) -> Job[Any, Any] | None:
        jobs = await self._jobs(sql.GET_JOB, {**self._queue, "id": job_id})
        return jobs[0] if jobs else None

    async def peek(self, status: JobStatus, num: int) -> list[Job[Any, Any]]:
        params = {**self._queue, "status": JobStatus(status).value, "limit": num}
        return await self._jobs(sql.PEEK_JOBS, params)

    async def size(self, status: JobStatus | None = None) -> int:
        if status is None:
            return int(await self._database.value(sql.COUNT_JOBS, self._queue))
        params = {**self._queue, "status": JobStatus(status).value}
        return int(await self._database.value(sql.COUNT_JOBS_BY_STATUS, params))

    async def get_by_run_id(self, job_run_id: str) -> list[Job[Any, Any]]:
        return await self._jobs(sql.JOBS_OF_RUN, {**self._queue, "job_run_id": job_run_id})

    async def find_completed_by_fingerprint(self, fingerprint: str) -> Job[Any, Any] | None:
        params = {**self._queue, "fingerprint": fingerprint}
        jobs = await self._jobs(sql.COMPLETED_BY_FINGERPRINT, params)
        return jobs[0] if jobs else None

    # -- running -------------------------------------------------------------------------

    async def claim(
        self,
        worker_id: str,
        now: datetime,
        lease_until: datetime,
        limit: int,
        start_origin: str | None = None,
    ) -> list[Job[Any, Any]]:
        if limit <= 0:
            return []
        params = {
            **self._queue,
            "worker_id": worker_id,
            "now": to_db_time(now),
            "lease_until": to_db_time(lease_until),
            "limit": limit,
        }

        # One UPDATE ... RETURNING: it holds the file's write lock from choosing the
        # rows to changing them, so no other process can claim them too.
        # RETURNING gives no order; claims are oldest first.
        jobs = sorted(
            await self._jobs(sql.CLAIM_JOBS, params), key=lambda job: (job.run_after, job.id or 0)
        )
        if start_origin is not None:
            for event in start_events(self.queue_name, jobs, now, start_origin):
                await self.publish(event)
        return jobs

    def _attempt(self, job_id: int, worker_id: str, attempt: int) -> dict[str, Any]:
        return {**self._queue, "id": job_id, "worker_id": worker_id, "attempt": attempt}

    async def renew_lease(
        self, job_id: int, worker_id: str, attempt: int, lease_until: datetime
    ) -> JobStatus | None:
        params = {
            **self._attempt(job_id, worker_id, attempt),
            "lease_until": to_db_time(lease_until),
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
        params = {
            **self._attempt(job_id, worker_id, attempt),
            "progress": float(progress),
            "message": message,
            "details": _json_or_null(details),
        }

        return await self._database.count(sql.SAVE_PROGRESS, params) == 1

    async def finish(
        self,
        job_id: int,
        worker_id: str,
        attempt: int,
        outcome: Outcome,
        lease_expired_before: datetime | None = None,
        event: JobEvent | None = None,
    ) -> bool:
        statement, outcome_params = _finish_statement(outcome)
        params = {
            **self._attempt(job_id, worker_id, attempt),
            **outcome_params,
            "expired_before": _db_time(lease_expired_before),
        }

        applied = await self._database.count(statement, params) == 1
        if applied and event is not None:
            await self.publish(event)  # before the job can start again: events stay in order
        if applied and outcome.kind in (OutcomeKind.RETRY, OutcomeKind.REQUEUE):
            self._feed.announce_available()
        return applied

    # -- control -------------------------------------------------------------------------

    def _abort_params(self, now: datetime) -> dict[str, Any]:
        return {
            **self._queue,
            "now": to_db_time(now),
            "error": AbortReason.USER.value,
            "error_code": AbortSignalJobError.__name__,
        }

    async def abort(self, job_id: int, now: datetime) -> JobStatus | None:
        params = {**self._abort_params(now), "id": job_id}
        rows = await self._database.rows(sql.ABORT_JOB, params)
        return JobStatus(rows[0]["status"]) if rows else None

    async def abort_job_run(self, job_run_id: str, now: datetime) -> list[tuple[int, JobStatus]]:
        params = {**self._abort_params(now), "job_run_id": job_run_id}
        rows = await self._database.rows(sql.ABORT_JOB_RUN, params)
        return sorted((row["id"], JobStatus(row["status"])) for row in rows)

    async def disable(self, job_id: int, now: datetime) -> bool:
        params = {**self._queue, "id": job_id, "now": to_db_time(now)}

        return await self._database.count(sql.DISABLE_JOB, params) == 1

    async def retry(self, job_id: int, now: datetime) -> bool:
        params = {**self._queue, "id": job_id, "now": to_db_time(now)}

        retried = await self._database.count(sql.RETRY_JOB, params) == 1
        if retried:
            self._feed.announce_available()
        return retried

    async def expired_leases(self, now: datetime) -> list[Job[Any, Any]]:
        return await self._jobs(sql.EXPIRED_LEASES, {**self._queue, "now": to_db_time(now)})

    # -- deleting ------------------------------------------------------------------------

    async def delete_finished(self, status: JobStatus, completed_before: datetime) -> int:
        if status not in FINISHED_STATUSES:
            raise ValueError(f"only finished jobs can be deleted by age, not {status}")
        params = {
            **self._queue,
            "status": JobStatus(status).value,
            "completed_before": to_db_time(completed_before),
        }

        return await self._database.count(sql.DELETE_FINISHED, params)

    async def delete(self, job_id: int) -> bool:
        return await self._database.count(sql.DELETE_JOB, {**self._queue, "id": job_id}) == 1

    async def delete_all(self) -> None:
        async def delete(connection: aiosqlite.Connection) -> None:
            await _run(connection, sql.DELETE_QUEUE_JOBS, self._queue)
            await _run(connection, sql.DELETE_QUEUE_EVENTS, self._queue)

        await self._database.transaction(delete)

    # -- events --------------------------------------------------------------------------

    async def publish(self, event: JobEvent) -> None:
        now = datetime.now(UTC)
        params = {
            "queue_name": event.queue_name,
            "payload": _json.dumps(event.to_json()),
            "created_at": to_db_time(now),
        }
        await self._database.rows(sql.INSERT_EVENT, params)
        self._feed.poke()
        if time.monotonic() >= self._next_event_prune:
            self._next_event_prune = time.monotonic() + EVENT_PRUNE_EVERY_SECONDS
            before = to_db_time(now - EVENT_RETENTION)
            await self._database.rows(sql.PRUNE_EVENTS, {"before": before})

    async def subscribe(self, listener: EventListener) -> Unsubscribe:
        return await self._feed.subscribe(listener)


class SqliteRateLimiterStorage(StorageLifecycle):
    """RateLimiter execution records in a SQLite file: limits every process that shares it."""

    def __init__(
        self, path: str | os.PathLike[str], *, busy_timeout_ms: float = DEFAULT_BUSY_TIMEOUT_MS
    ) -> None:
        self.path = _check_path(path)
        busy_timeout = require_ms("busy_timeout_ms", busy_timeout_ms)
        _require_driver()
        self._database = _Database(self.path, busy_timeout)

    def __repr__(self) -> str:
        return f"SqliteRateLimiterStorage({self.path!r})"

    async def setup_database(self) -> None:
        """Open the file (WAL mode) and create or migrate the schema."""
        await self._database.open()

    async def close(self) -> None:
        """Close the connection."""
        await self._database.close()

    async def try_record_execution(
        self, queue_name: str, max_executions: int, window_start: datetime, now: datetime
    ) -> bool:
        params = {
            "queue_name": queue_name,
            "max_executions": max_executions,
            "window_start": to_db_time(window_start),
            "now": to_db_time(now),
        }
        # One INSERT ... SELECT: the count and the insert happen under one write lock.
        return await self._database.count(sql.RECORD_EXECUTION_IF_ROOM, params) == 1

    async def execution_count(self, queue_name: str, since: datetime) -> int:
        params = {"queue_name": queue_name, "since": to_db_time(since)}
        return int(await self._database.value(sql.COUNT_EXECUTIONS, params))

    async def oldest_execution_time(self, queue_name: str, since: datetime) -> datetime | None:
        params = {"queue_name": queue_name, "since": to_db_time(since)}
        return from_db_time(await self._database.value(sql.OLDEST_EXECUTION, params))

    async def get_next_available_time(self, queue_name: str) -> datetime | None:
        return from_db_time(await self._database.value(sql.GET_HOLD, {"queue_name": queue_name}))

    async def set_next_available_time(self, queue_name: str, when: datetime | None) -> None:
        if when is None:
            await self._database.rows(sql.CLEAR_HOLD, {"queue_name": queue_name})
        else:
            params = {"queue_name": queue_name, "until": to_db_time(when)}
            await self._database.rows(sql.SET_HOLD, params)

    async def prune(self, queue_name: str, before: datetime) -> int:
        params = {"queue_name": queue_name, "before": to_db_time(before)}
        return await self._database.count(sql.PRUNE_EXECUTIONS, params)

    async def clear(self, queue_name: str) -> None:
        async def clear(connection: aiosqlite.Connection) -> None:
            await _run(connection, sql.CLEAR_EXECUTIONS, {"queue_name": queue_name})
            await _run(connection, sql.CLEAR_HOLD, {"queue_name": queue_name})

        await self._database.transaction(clear)
