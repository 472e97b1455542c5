"""PostgreSQL storage on asyncpg: one queue shared by every process and machine on a database.

Claims use `FOR UPDATE SKIP LOCKED`; job events and "job available" hints travel by
LISTEN/NOTIFY, which only speeds things up: polling stays the fallback, so a lost
notification delays a job but never loses it. See docs/postgres.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib
import inspect
import json
import logging
import random
import socket
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .. import _json
from ..errors import AbortSignalJobError
from ..events import JOB_AVAILABLE, JobEvent
from ..job import FINISHED_STATUSES, Job, JobStatus
from ..outcome import AbortReason, Outcome, OutcomeKind
from . import postgres_queries as sql
from .base import EventListener, StorageLifecycle, Unsubscribe, check_queue_name

logger = logging.getLogger("pyjobqueue")

INSTALL_HINT = 'pip install "pyjobqueue[postgres]"'
POOL_MIN_SIZE = 1
POOL_MAX_SIZE = 10
CONNECT_TIMEOUT_SECONDS = 15.0
CLOSE_TIMEOUT_SECONDS = 10.0
# NOTIFY refuses payloads of 8000 bytes or more; larger events go through a table.
NOTIFY_PAYLOAD_LIMIT = 7900
STORED_EVENT_RETENTION_SECONDS = 300.0
# The LISTEN connection: a liveness query this often (a silent network drop is not
# noticed otherwise), and reconnect attempts backing off between these bounds.
HEALTH_CHECK_SECONDS = 10.0
HEALTH_CHECK_TIMEOUT_SECONDS = 5.0
RECONNECT_MIN_SECONDS = 0.1
RECONNECT_MAX_SECONDS = 5.0
STOP_GRACE_SECONDS = 1.0

# NOTIFY payloads: a tag, then the data.
HINT_TAG = "A"  # a job became claimable; no data
EVENT_TAG = "E"  # a JobEvent as JSON
STORED_TAG = "R"  # id of a row of pyjobqueue_events holding a large JobEvent


class DatabaseConnectionError(ConnectionError):
    """PostgreSQL cannot be reached or refused to connect; the message says why and where."""


def _driver() -> Any:
    """The asyncpg module, imported only when a PostgreSQL storage is made."""
    try:
        return importlib.import_module("asyncpg")
    except ImportError as error:
        raise ImportError(f"the PostgreSQL storage needs asyncpg: {INSTALL_HINT}") from error


def channel_for(queue_name: str) -> str:
    """The NOTIFY channel of a queue: a hash, so any queue name makes a valid identifier."""
    return "pyjobqueue_" + hashlib.sha256(queue_name.encode("utf-8")).hexdigest()[:40]


def _no_nul(name: str, value: str | None) -> str | None:
    """PostgreSQL text cannot hold NUL characters: refuse them before anything is stored."""
    if value is not None and "\x00" in value:
        raise ValueError(f"{name} contains a NUL character, which PostgreSQL cannot store")
    return value


def _fits_notify(payload: str) -> bool:
    """Whether an event payload fits in one NOTIFY (8000 bytes, less a margin)."""
    return len(payload.encode("utf-8")) < NOTIFY_PAYLOAD_LIMIT


def _text(value: str | None) -> str | None:
    """Messages (errors, progress) keep their NULs visible as U+FFFD instead of failing."""
    return None if value is None else value.replace("\x00", "\ufffd")


def _redacted(dsn: str) -> str:
    """The DSN without its password (in the user part or a ?password=), for messages."""
    parts = urlsplit(dsn)
    if parts.password is not None:
        host = parts.netloc.rsplit("@", 1)[1]
        parts = parts._replace(netloc=f"{parts.username or ''}:***@{host}")
    if "password=" in parts.query:
        query = [
            (key, "***" if key == "password" else value)
            for key, value in parse_qsl(parts.query, keep_blank_values=True)
        ]
        parts = parts._replace(query=urlencode(query, safe="*"))
    return urlunsplit(parts)


def _check_dsn(dsn: str) -> str:
    """Refuse at construction what is clearly not a PostgreSQL URL (asyncpg parses the rest)."""
    if urlsplit(dsn).scheme not in ("postgres", "postgresql"):
        raise ValueError(
            f"invalid PostgreSQL DSN {_redacted(dsn)!r}: expected "
            "postgresql://user:password@host:port/database"
        )
    return dsn


def _affected(status: str) -> int:
    """The row count of a command status such as 'DELETE 3'."""
    return int(status.rsplit(" ", 1)[-1])


async def _keep_session(_connection: Any) -> None:
    """Our pool's connections need no server-side reset between uses.

    The storage leaves no session state behind: its advisory locks end with their
    transaction and the LISTEN connection unlistens before it goes back. Skipping
    asyncpg's default reset query saves a round trip on every operation.
    """


class _Database:
    """The pool of a storage (made from a DSN, or given), and the schema it needs."""

    def __init__(self, dsn_or_pool: object) -> None:
        self.driver = _driver()
        self.dsn: str | None = None
        self.pool: Any = None
        if isinstance(dsn_or_pool, str):
            self.dsn = _check_dsn(dsn_or_pool)
            self.where = _redacted(dsn_or_pool)
        elif isinstance(dsn_or_pool, self.driver.Pool):
            self.pool = dsn_or_pool
            self.where = "the given asyncpg pool"
        else:
            kind = type(dsn_or_pool).__name__
            raise TypeError(f"dsn_or_pool must be a DSN str or an asyncpg.Pool, got {kind}")
        self.owns_pool = self.dsn is not None
        self.ready = False

    async def open(self) -> None:
        """Connect (when given a DSN) and bring the schema up to date."""
        if self.ready:
            return
        try:
            if self.pool is None:
                self.pool = await self._connect()
            await self._migrate()
        except Exception as error:
            explained = self.explain(error)
            if explained is None:
                raise
            await self._discard_pool()
            raise explained from None
        self.ready = True

    async def _connect(self) -> Any:
        try:
            return await self.driver.create_pool(
                self.dsn,
                min_size=POOL_MIN_SIZE,
                max_size=POOL_MAX_SIZE,
                timeout=CONNECT_TIMEOUT_SECONDS,
                **self._reset_option(),
            )
        except ValueError as error:  # asyncpg's ClientConfigurationError is one too
            raise ValueError(f"invalid PostgreSQL DSN {self.where!r}: {error}") from None

    def _reset_option(self) -> dict[str, Any]:
        # asyncpg >= 0.30 lets the pool skip its reset query (older ones always send it).
        if "reset" in inspect.signature(self.driver.create_pool).parameters:
            return {"reset": _keep_session}
        return {}

    async def _migrate(self) -> None:
        # The advisory lock makes concurrent setups (several processes) wait their turn.
        async with self.pool.acquire() as connection, connection.transaction():
            await connection.execute(sql.LOCK_SCHEMA)
            await connection.execute(sql.CREATE_MIGRATIONS_TABLE)
            current = await connection.fetchval(sql.SCHEMA_VERSION)
            if current > sql.LATEST_VERSION:
                raise RuntimeError(
                    f"the pyjobqueue schema in {self.where} is at version {current}, newer "
                    f"than this pyjobqueue knows ({sql.LATEST_VERSION}): upgrade pyjobqueue"
                )
            for version, statements in sql.MIGRATIONS:
                if version > current:
                    await connection.execute(statements)
                    await connection.execute(sql.RECORD_MIGRATION, version)

    def explain(self, error: BaseException) -> DatabaseConnectionError | None:
        """A clear error for a failure to connect, or None for any other failure."""
        driver, where = self.driver, self.where
        parts = urlsplit(self.dsn or "")
        if isinstance(error, driver.InvalidPasswordError):
            reason = f"password authentication failed for user {parts.username or ''!r}"
        elif isinstance(error, driver.InvalidCatalogNameError):
            database = parts.path.lstrip("/") or "(default)"
            reason = f"database {database!r} does not exist (create it first)"
        elif isinstance(error, driver.InvalidAuthorizationSpecificationError):
            reason = f"the server refused the user: {error}"
        elif isinstance(error, driver.CannotConnectNowError):
            reason = f"the server is starting up or shutting down: {error}"
        elif isinstance(error, socket.gaierror):
            reason = f"unknown host {parts.hostname!r}"
        elif isinstance(error, ConnectionRefusedError):
            reason = "connection refused (is PostgreSQL running and listening there?)"
        elif isinstance(error, TimeoutError):
            reason = "timed out while connecting"
        elif isinstance(error, OSError):
            reason = str(error)
        else:
            return None
        return DatabaseConnectionError(f"cannot connect to PostgreSQL at {where}: {reason}")

    def require(self) -> Any:
        """The pool; a clear error before setup_database() or after close()."""
        if self.pool is None or not self.ready:
            raise RuntimeError(
                "the PostgreSQL storage is not set up: await storage.setup_database() "
                "first (or use `async with storage:`), and not after close()"
            )
        return self.pool

    async def close(self) -> None:
        """Close the pool this storage made (never one it was given)."""
        self.ready = False
        if self.owns_pool:
            await self._discard_pool()

    async def _discard_pool(self) -> None:
        if not self.owns_pool or self.pool is None:
            return
        pool, self.pool = self.pool, None
        try:
            await asyncio.wait_for(pool.close(), CLOSE_TIMEOUT_SECONDS)
        except (Exception, asyncio.CancelledError):
            pool.terminate()  # connections still busy after the timeout: cut them


class _Feed:
    """The LISTEN side of a queue storage: one connection shared by its listeners.

    The connection comes from the storage's pool and is replaced, with backoff, when
    it drops or stops answering; while it is down nothing is delivered and nothing
    breaks. After a reconnect listeners get a `job_available` hint, since whatever
    was announced in between is lost and idle workers should look for it.
    """

    def __init__(self, database: _Database, queue_name: str, channel: str) -> None:
        self._database = database
        self._queue_name = queue_name
        self._channel = channel
        self._listeners: list[EventListener] = []
        self._lock = asyncio.Lock()
        self._inbox: asyncio.Queue[str] = asyncio.Queue()
        self._nudge = asyncio.Event()  # set when the connection drops or the feed stops
        self._stopping = False
        self._supervisor: asyncio.Task[None] | None = None
        self._dispatcher: asyncio.Task[None] | None = None

    async def subscribe(self, listener: EventListener) -> Unsubscribe:
        """Add a listener, starting the LISTEN connection for the first one."""
        async with self._lock:
            if self._supervisor is None:
                await self._start()
            self._listeners.append(listener)

        async def unsubscribe() -> None:
            async with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)
                if not self._listeners:
                    await self._stop()

        return unsubscribe

    async def close(self) -> None:
        """Drop every listener and the connection."""
        async with self._lock:
            self._listeners.clear()
            await self._stop()

    async def _start(self) -> None:
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._stopping = False
        self._nudge.clear()
        self._inbox = asyncio.Queue()
        self._supervisor = asyncio.create_task(self._supervise(ready), name="pyjobqueue listen")
        self._dispatcher = asyncio.create_task(self._dispatch(), name="pyjobqueue dispatch")
        try:
            await ready
        except BaseException as error:
            await self._stop()
            explained = self._database.explain(error)
            if explained is not None:
                raise explained from None
            raise

    async def _stop(self) -> None:
        self._stopping = True
        self._nudge.set()
        supervisor, self._supervisor = self._supervisor, None
        dispatcher, self._dispatcher = self._dispatcher, None
        if supervisor is not None:
            # It notices the stop at once, unless it is stuck connecting to a dead server.
            _done, pending = await asyncio.wait({supervisor}, timeout=STOP_GRACE_SECONDS)
            for task in pending:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if dispatcher is not None:
            dispatcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await dispatcher

    # -- the connection ---------------------------------------------------------------------

    async def _supervise(self, ready: asyncio.Future[None]) -> None:
        delay = RECONNECT_MIN_SECONDS
        while not self._stopping:
            first = not ready.done()
            try:
                connection = await self._database.require().acquire()
            except Exception as error:
                if first:
                    ready.set_exception(error)
                    return
                logger.warning("queue %r: LISTEN reconnect failed: %s", self._queue_name, error)
            else:
                if await self._listen(connection, ready):
                    delay = RECONNECT_MIN_SECONDS
                elif first:
                    return  # subscribe() raises the error
            if not self._stopping:
                await self._pause(delay)
                delay = min(delay * 2, RECONNECT_MAX_SECONDS)

    async def _listen(self, connection: Any, ready: asyncio.Future[None]) -> bool:
        """LISTEN on a connection until it drops or the feed stops; whether LISTEN worked."""
        self._nudge.clear()

        def dropped(_connection: Any) -> None:
            self._nudge.set()

        connection.add_termination_listener(dropped)
        listened = False
        try:
            await connection.add_listener(self._channel, self._notified)
            listened = True
            if ready.done():
                self._inbox.put_nowait(HINT_TAG)  # reconnected: look for missed work
            else:
                ready.set_result(None)
            await self._hold(connection)
        except Exception as error:
            if not ready.done():
                ready.set_exception(error)
            else:
                logger.warning("queue %r: LISTEN connection failed: %s", self._queue_name, error)
        finally:
            if not self._closed(connection):
                connection.remove_termination_listener(dropped)
            await self._release(connection, graceful=self._stopping)
        return listened

    async def _hold(self, connection: Any) -> None:
        """Return when the connection dropped, fails a health check, or the feed stops."""
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._nudge.wait(), HEALTH_CHECK_SECONDS)
            if self._stopping or self._closed(connection):
                return
            self._nudge.clear()  # a stale drop notice of an earlier connection
            await asyncio.wait_for(
                connection.fetchval(sql.HEALTH_CHECK), HEALTH_CHECK_TIMEOUT_SECONDS
            )

    def _closed(self, connection: Any) -> bool:
        # asyncpg hands a dropped connection back to its pool by itself, after which
        # the proxy we hold refuses every call.
        try:
            return bool(connection.is_closed())
        except self._database.driver.InterfaceError:
            return True

    async def _release(self, connection: Any, *, graceful: bool) -> None:
        pool = self._database.pool
        if graceful and not self._closed(connection):
            try:
                await asyncio.wait_for(
                    connection.remove_listener(self._channel, self._notified),
                    HEALTH_CHECK_TIMEOUT_SECONDS,
                )
                await asyncio.wait_for(pool.release(connection), HEALTH_CHECK_TIMEOUT_SECONDS)
                return
            except Exception as error:
                logger.warning("queue %r: could not release LISTEN: %s", self._queue_name, error)
        if not self._closed(connection):
            connection.terminate()  # broken or unanswering: never hand it back as it is
        with contextlib.suppress(Exception):
            await pool.release(connection)  # a no-op once asyncpg took it back itself

    async def _pause(self, delay: float) -> None:
        if self._stopping:
            return
        self._nudge.clear()  # a late drop notice must not cut the pause short
        jittered = delay * random.uniform(0.8, 1.2)  # servers restarting together spread out
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._nudge.wait(), jittered)

    def _notified(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        self._inbox.put_nowait(payload)

    # -- delivering -----------------------------------------------------------------------------

    async def _dispatch(self) -> None:
        # One at a time, in arrival order: a stored event is fetched before the next.
        while True:
            payload = await self._inbox.get()
            try:
                event = await self._decode(payload)
            except Exception:
                logger.exception("queue %r: could not read a notification", self._queue_name)
                continue
            if event is None or event.queue_name != self._queue_name:
                continue
            for listener in list(self._listeners):
                try:
                    listener(event)
                except Exception:
                    logger.exception("storage event listener failed")

    async def _decode(self, payload: str) -> JobEvent | None:
        tag, data = payload[:1], payload[1:]
        if tag == HINT_TAG:
            return JobEvent(JOB_AVAILABLE, self._queue_name, 0)
        if tag == EVENT_TAG:
            return JobEvent.from_json(json.loads(data))
        if tag == STORED_TAG:
            pool = self._database.require()
            stored = await pool.fetchval(sql.FETCH_EVENT, int(data), self._queue_name)
            return None if stored is None else JobEvent.from_json(json.loads(stored))
        logger.warning("queue %r: unknown notification %.40r", self._queue_name, payload)
        return None


FinishRow = tuple[Any, ...]  # one attempt's values, in the order of sql.FINISH's arrays
_Waiting = tuple[FinishRow, "asyncio.Future[bool]"]


def _finish_row(
    job_id: int,
    worker_id: str,
    attempt: int,
    outcome: Outcome,
    lease_expired_before: datetime | None,
) -> FinishRow:
    """(id, worker, attempt, expired_before, kind, status, output, error, error_code,
    completed_at, run_after) of one outcome; the payload is appended by the caller."""
    kind = outcome.kind
    finished = kind in (OutcomeKind.COMPLETE, OutcomeKind.FAIL)
    return (
        job_id,
        worker_id,
        attempt,
        lease_expired_before,
        kind.name,
        outcome.status.value,
        _json.dumps(outcome.output) if kind is OutcomeKind.COMPLETE else None,
        _text(outcome.error) if kind in (OutcomeKind.FAIL, OutcomeKind.RETRY) else None,
        outcome.error_code if kind in (OutcomeKind.FAIL, OutcomeKind.RETRY) else None,
        outcome.at if finished else None,
        None if finished else (outcome.run_after or outcome.at),
    )


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class _Finisher:
    """Writes outcomes; those that arrive while a write is on its way share the next one.

    Group commit: a lone outcome costs one statement as before, and workers that finish
    together (a server with many workers, short jobs) pay one round trip between them.
    A batch never holds one job twice, so each outcome is applied or refused on its own.
    """

    def __init__(self, database: _Database, queue_name: str, channel: str) -> None:
        self._database = database
        self._queue_name = queue_name
        self._channel = channel
        self._waiting: list[_Waiting] = []
        self._writer: asyncio.Task[None] | None = None

    async def finish(self, row: FinishRow) -> bool:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieve)  # its caller may be gone (cancelled)
        self._waiting.append((row, future))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write(), name="pyjobqueue finish")
        # Shielded: a cancelled caller's outcome is still written, whole or not at all.
        return await asyncio.shield(future)

    async def _write(self) -> None:
        try:
            while self._waiting:
                batch: list[_Waiting] = []
                later: list[_Waiting] = []
                seen: set[int] = set()
                for entry in self._waiting:
                    job_id = entry[0][0]
                    (later if job_id in seen else batch).append(entry)
                    seen.add(job_id)
                self._waiting = later
                await self._write_batch(batch)
        finally:
            self._writer = None

    async def _write_batch(self, batch: list[_Waiting]) -> None:
        columns = list(zip(*(row for row, _future in batch), strict=True))
        try:
            rows = await self._database.require().fetch(
                sql.FINISH, self._queue_name, *map(list, columns), self._channel, HINT_TAG
            )
        except Exception as error:
            for _row, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        applied = {row["id"] for row in rows}
        for row, future in batch:
            if not future.done():
                future.set_result(row[0] in applied)


def _job_from_row(row: Any) -> Job[Any, Any]:
    return Job(
        id=row["id"],
        queue_name=row["queue_name"],
        input=_json.loads(row["input"]),
        output=_json.loads(row["output"]),
        status=JobStatus(row["status"]),
        progress=row["progress"],
        progress_message=row["progress_message"],
        progress_details=_json.loads(row["progress_details"]),
        max_retries=row["max_retries"],
        run_attempts=row["run_attempts"],
        error=row["error"],
        error_code=row["error_code"],
        created_at=row["created_at"],
        completed_at=row["completed_at"],
        run_after=row["run_after"],
        deadline_at=row["deadline_at"],
        last_ran_at=row["last_ran_at"],
        job_run_id=row["job_run_id"],
        fingerprint=row["fingerprint"],
        worker_id=row["worker_id"],
        lease_expires_at=row["lease_expires_at"],
    )


def _claim_order(job: Job[Any, Any]) -> tuple[datetime, int]:
    return job.run_after, job.id or 0


class PostgresQueueStorage(StorageLifecycle):
    """The jobs of one queue in PostgreSQL, shared by every server and client on the database.

    `dsn_or_pool` is a DSN (postgresql://user:password@host:port/database; the storage
    makes its own pool and closes it) or an `asyncpg.Pool` (used, never closed).
    """

    supports_push = True
    shared_across_processes = True

    def __init__(self, dsn_or_pool: str | Any, queue_name: str) -> None:
        self.queue_name = check_queue_name(queue_name)
        _no_nul("queue_name", queue_name)
        self._database = _Database(dsn_or_pool)
        self._channel = channel_for(queue_name)
        self._feed = _Feed(self._database, queue_name, self._channel)
        self._finisher = _Finisher(self._database, queue_name, self._channel)

    def __repr__(self) -> str:
        return f"PostgresQueueStorage({self._database.where!r}, {self.queue_name!r})"

    async def setup_database(self) -> None:
        """Connect and create or migrate the tables (safe from several processes at once)."""
        await self._database.open()

    async def close(self) -> None:
        """Stop listening and close the pool if this storage made it."""
        await self._feed.close()
        await self._database.close()

    # -- adding and reading -----------------------------------------------------------------

    async def add(self, job: Job[Any, Any]) -> int:
        return (await self.add_batch([job]))[0]

    async def add_batch(self, jobs: Sequence[Job[Any, Any]]) -> list[int]:
        if not jobs:
            return []
        columns: list[list[Any]] = [[] for _ in range(7)]
        for job in jobs:
            values = (
                _json.dumps(job.input),
                job.max_retries,
                job.created_at,
                job.run_after,
                job.deadline_at,
                _no_nul("job_run_id", job.job_run_id),
                job.fingerprint,
            )
            for column, value in zip(columns, values, strict=True):
                column.append(value)
        rows = await self._database.require().fetch(
            sql.INSERT_JOBS, self.queue_name, *columns, self._channel, HINT_TAG
        )
        # Ids come from the sequence in insertion order, which is the input order.
        return sorted(row["id"] for row in rows)

    async def get(self, job_id: int) -> Job[Any, Any] | None:
        row = await self._database.require().fetchrow(sql.GET_JOB, self.queue_name, job_id)
        return None if row is None else _job_from_row(row)

    async def peek(self, status: JobStatus, num: int) -> list[Job[Any, Any]]:
        rows = await self._database.require().fetch(
            sql.PEEK, self.queue_name, JobStatus(status).value, num
        )
        return [_job_from_row(row) for row in rows]

    async def size(self, status: JobStatus | None = None) -> int:
        pool = self._database.require()
        if status is None:
            count: int = await pool.fetchval(sql.SIZE_ALL, self.queue_name)
        else:
            count = await pool.fetchval(sql.SIZE, self.queue_name, JobStatus(status).value)
        return count

    async def get_by_run_id(self, job_run_id: str) -> list[Job[Any, Any]]:
        rows = await self._database.require().fetch(sql.BY_RUN_ID, self.queue_name, job_run_id)
        return [_job_from_row(row) for row in rows]

    async def find_completed_by_fingerprint(self, fingerprint: str) -> Job[Any, Any] | None:
        row = await self._database.require().fetchrow(
            sql.COMPLETED_BY_FINGERPRINT, self.queue_name, fingerprint
        )
        return None if row is None else _job_from_row(row)

    # -- running ------------------------------------------------------------------------------

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
        args: tuple[Any, ...] = (self.queue_name, now, worker_id, lease_until, limit)
        if start_origin is None:
            rows = await self._database.require().fetch(sql.CLAIM, *args)
        else:
            # job_start goes out with the claim: one round trip for both.
            rows = await self._database.require().fetch(
                sql.CLAIM_ANNOUNCING, *args, self._channel, start_origin, EVENT_TAG
            )
        return sorted((_job_from_row(row) for row in rows), key=_claim_order)

    async def renew_lease(
        self, job_id: int, worker_id: str, attempt: int, lease_until: datetime
    ) -> JobStatus | None:
        status = await self._database.require().fetchval(
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
        saved = await self._database.require().fetchval(
            sql.SAVE_PROGRESS,
            job_id,
            self.queue_name,
            worker_id,
            attempt,
            float(progress),
            _text(message),
            None if details is None else _json.dumps(details),
        )
        return saved is not None

    async def finish(
        self,
        job_id: int,
        worker_id: str,
        attempt: int,
        outcome: Outcome,
        lease_expired_before: datetime | None = None,
        event: JobEvent | None = None,
    ) -> bool:
        payload = None if event is None else EVENT_TAG + _json.dumps(event.to_json())
        announce = payload is not None and _fits_notify(payload)
        row = _finish_row(job_id, worker_id, attempt, outcome, lease_expired_before)
        # The event goes out with the outcome, in the same statement and transaction.
        applied = await self._finisher.finish((*row, payload if announce else None))
        if applied and event is not None and not announce:
            await self.publish(event)  # too large for NOTIFY: through the events table
        return applied

    # -- aborting, disabling, cleaning up -------------------------------------------------------

    async def abort(self, job_id: int, now: datetime) -> JobStatus | None:
        rows = await self._abort(sql.ABORT, job_id, now)
        return rows[0][1] if rows else None

    async def abort_job_run(self, job_run_id: str, now: datetime) -> list[tuple[int, JobStatus]]:
        return await self._abort(sql.ABORT_RUN, job_run_id, now)

    async def _abort(
        self, statement: str, key: int | str, now: datetime
    ) -> list[tuple[int, JobStatus]]:
        rows = await self._database.require().fetch(
            statement,
            self.queue_name,
            key,
            AbortReason.USER.value,
            AbortSignalJobError.__name__,
            now,
        )
        return sorted((row["id"], JobStatus(row["status"])) for row in rows)

    async def disable(self, job_id: int, now: datetime) -> bool:
        row = await self._database.require().fetchrow(sql.DISABLE, self.queue_name, job_id, now)
        return row is not None

    async def retry(self, job_id: int, now: datetime) -> bool:
        row = await self._database.require().fetchrow(
            sql.RETRY, self.queue_name, job_id, now, self._channel, HINT_TAG
        )
        return row is not None

    async def expired_leases(self, now: datetime) -> list[Job[Any, Any]]:
        rows = await self._database.require().fetch(sql.EXPIRED_LEASES, self.queue_name, now)
        return [_job_from_row(row) for row in rows]

    async def delete_finished(self, status: JobStatus, completed_before: datetime) -> int:
        if status not in FINISHED_STATUSES:
            raise ValueError(f"only finished jobs can be deleted by age, not {status}")
        result = await self._database.require().execute(
            sql.DELETE_FINISHED, self.queue_name, JobStatus(status).value, completed_before
        )
        return _affected(result)

    async def delete(self, job_id: int) -> bool:
        result = await self._database.require().execute(sql.DELETE_JOB, self.queue_name, job_id)
        return _affected(result) > 0

    async def delete_all(self) -> None:
        await self._database.require().execute(sql.DELETE_QUEUE, self.queue_name)

    # -- events -------------------------------------------------------------------------------

    async def publish(self, event: JobEvent) -> None:
        pool = self._database.require()
        data = _json.dumps(event.to_json())
        payload = EVENT_TAG + data
        if _fits_notify(payload):
            await pool.execute(sql.NOTIFY, self._channel, payload)
            return
        await pool.execute(
            sql.STORE_EVENT,
            self.queue_name,
            data,
            self._channel,
            STORED_TAG,
            STORED_EVENT_RETENTION_SECONDS,
        )

    async def subscribe(self, listener: EventListener) -> Unsubscribe:
        self._database.require()
        return await self._feed.subscribe(listener)


class PostgresRateLimiterStorage(StorageLifecycle):
    """RateLimiter execution records in PostgreSQL: one limit for every server on the database."""

    def __init__(self, dsn_or_pool: str | Any) -> None:
        self._database = _Database(dsn_or_pool)

    def __repr__(self) -> str:
        return f"PostgresRateLimiterStorage({self._database.where!r})"

    async def setup_database(self) -> None:
        """Connect and create or migrate the tables."""
        await self._database.open()

    async def close(self) -> None:
        """Close the pool if this storage made it."""
        await self._database.close()

    async def try_record_execution(
        self, queue_name: str, max_executions: int, window_start: datetime, now: datetime
    ) -> bool:
        async with self._database.require().acquire() as connection, connection.transaction():
            # Count and insert run after the lock, so they see every earlier record.
            await connection.execute(sql.LOCK_RATE_QUEUE, queue_name)
            recorded = await connection.fetchval(
                sql.RECORD_EXECUTION_IF_ROOM, queue_name, max_executions, window_start, now
            )
        return recorded is not None

    async def execution_count(self, queue_name: str, since: datetime) -> int:
        count: int = await self._database.require().fetchval(
            sql.COUNT_EXECUTIONS, queue_name, since
        )
        return count

    async def oldest_execution_time(self, queue_name: str, since: datetime) -> datetime | None:
        oldest: datetime | None = await self._database.require().fetchval(
            sql.OLDEST_EXECUTION, queue_name, since
        )
        return oldest

    async def get_next_available_time(self, queue_name: str) -> datetime | None:
        when: datetime | None = await self._database.require().fetchval(
            sql.GET_NEXT_AVAILABLE, queue_name
        )
        return when

    async def set_next_available_time(self, queue_name: str, when: datetime | None) -> None:
        await self._database.require().execute(sql.SET_NEXT_AVAILABLE, queue_name, when)

    async def prune(self, queue_name: str, before: datetime) -> int:
        result = await self._database.require().execute(sql.PRUNE_EXECUTIONS, queue_name, before)
        return _affected(result)

    async def clear(self, queue_name: str) -> None:
        await self._database.require().execute(sql.CLEAR_RATE_QUEUE, queue_name)
