"""The SQLite connection: opening a file with clear errors, WAL, the schema, retries.

One aiosqlite connection per storage runs one statement or transaction at a time. A
lone write statement in autocommit mode takes the file's write lock before it reads
anything (as BEGIN IMMEDIATE does), so it is atomic across processes; several
statements run in `BEGIN IMMEDIATE`. A busy file is waited for (busy_timeout, then a
short backoff) instead of surfacing "database is locked".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ...errors import (
    StorageClosedError,
    StorageConnectionError,
    StorageCorruptError,
    StorageError,
)
from .. import migrations as schema
from . import queries as sql
from .codec import encode_time
from .migrations import LEGACY_MIGRATIONS_TABLE, MIGRATIONS

if TYPE_CHECKING:
    import aiosqlite

logger = logging.getLogger(__name__)

T = TypeVar("T")
# sqlite3 binds named parameters from a dict only (not any Mapping).
Params = dict[str, Any]
Body = Callable[["aiosqlite.Connection"], Awaitable[T]]

MEMORY_PATH = ":memory:"
MINIMUM_SQLITE_VERSION = (3, 35, 0)  # UPDATE ... RETURNING
DEFAULT_BUSY_TIMEOUT_MS = 5_000
# After busy_timeout, keep retrying a busy write this long before giving up.
BUSY_RETRY_SECONDS = 60.0
_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6


def require_driver() -> None:
    """Refuse a too old SQLite, and say which extra installs aiosqlite."""
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


def check_path(path: object) -> str:
    """A file path or ":memory:", as a str."""
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"path must be a str or a path, got {type(path).__name__}")
    text = os.fspath(path)
    if not isinstance(text, str) or not text:
        raise ValueError(f"path must be a file path or {MEMORY_PATH!r}, got {path!r}")
    return text


# -- statements on a connection ----------------------------------------------------------


async def execute(
    connection: aiosqlite.Connection, statement: str, params: Params | None = None
) -> int:
    """Execute one statement; how many rows it returned (writes say RETURNING id)."""
    return len(await fetch_rows(connection, statement, params))


async def fetch_rows(
    connection: aiosqlite.Connection, statement: str, params: Params | None = None
) -> list[sqlite3.Row]:
    """Execute one statement and fetch its rows, in one trip to the connection's thread."""
    return list(await connection.execute_fetchall(statement, params or {}))


async def fetch_value(
    connection: aiosqlite.Connection, statement: str, params: Params | None = None
) -> Any:
    """The first column of the first row (None when there is no row)."""
    rows = await fetch_rows(connection, statement, params)
    return rows[0][0] if rows else None


def _is_busy(error: sqlite3.OperationalError) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)
    text = str(error)
    return "locked" in text or "busy" in text


async def retrying_busy(attempt: Callable[[], Awaitable[T]]) -> T:
    """Run `attempt` (one statement), again after a short pause while the file stays busy."""
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
        await execute(connection, "BEGIN IMMEDIATE")
        try:
            result = await body(connection)
            await execute(connection, "COMMIT")
        except BaseException:
            if connection.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    await execute(connection, "ROLLBACK")
            raise
        return result

    return await retrying_busy(attempt)


# -- opening a file, with clear errors ---------------------------------------------------


def _check_location(path: str) -> None:
    file = Path(path)
    directory = file.absolute().parent
    if not directory.exists():
        raise StorageConnectionError(
            f"cannot open SQLite database {path!r}: directory {str(directory)!r} does not exist"
        )
    if not directory.is_dir():
        raise StorageConnectionError(
            f"cannot open SQLite database {path!r}: {str(directory)!r} is not a directory"
        )
    if file.is_dir():
        raise StorageConnectionError(f"cannot open SQLite database {path!r}: it is a directory")


def _writable(path: str) -> bool:
    file = Path(path)
    if not os.access(file.absolute().parent, os.W_OK):
        return False
    return not file.exists() or os.access(file, os.W_OK)


def _explain(path: str, error: sqlite3.Error) -> StorageError:
    """A one-line error naming the file and the likely cause of a driver error."""
    text = str(error)
    lowered = text.lower()
    if "not a database" in lowered or "malformed" in lowered or "encrypted" in lowered:
        reason = "is not a SQLite database (or it is corrupt)"
        return StorageCorruptError(f"SQLite database {path!r} {reason} ({text})")
    if "readonly" in lowered or "read-only" in lowered or not _writable(path):
        reason = (
            "is read-only: the file and its directory must be writable "
            "(SQLite keeps -wal and -shm files next to it)"
        )
    elif "unable to open" in lowered:
        reason = "cannot be opened or created there: is the location a writable directory?"
    else:
        reason = "cannot be used"
    return StorageConnectionError(f"SQLite database {path!r} {reason} ({text})")


def _try_open(path: str) -> None:
    """Open the file once with the stdlib driver, to explain a failure clearly.

    (aiosqlite leaves its worker thread behind when its own connect fails.)
    """
    try:
        sqlite3.connect(path).close()
    except sqlite3.Error as error:
        raise _explain(path, error) from None


class Database:
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
                raise StorageClosedError(f"the SQLite storage of {self.path!r} is closed")
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
        await execute(connection, f"PRAGMA busy_timeout = {self.busy_timeout_ms}")
        await retrying_busy(lambda: fetch_value(connection, "PRAGMA journal_mode = WAL"))
        # In WAL mode NORMAL survives a crashed process; only power loss can drop
        # the last commits.
        await execute(connection, "PRAGMA synchronous = NORMAL")
        await self._migrate(connection)

    async def _migrate(self, connection: aiosqlite.Connection) -> None:
        if await self._schema_version(connection) == len(MIGRATIONS):
            return

        async def migrate(connection: aiosqlite.Connection) -> None:
            # Under the write lock: another process may have migrated meanwhile.
            if await self._has_table(connection, LEGACY_MIGRATIONS_TABLE):
                await execute(connection, sql.RENAME_LEGACY_MIGRATIONS_TABLE)
            await execute(connection, sql.CREATE_MIGRATIONS_TABLE)
            current = await self._schema_version(connection)
            for migration in schema.pending(MIGRATIONS, current, self._where):
                for statement in migration.steps:
                    await execute(connection, statement)
                applied_at = encode_time(datetime.now(UTC))
                params = {"version": migration.version, "applied_at": applied_at}
                await execute(connection, sql.RECORD_MIGRATION, params)

        await _transaction(connection, migrate)

    @property
    def _where(self) -> str:
        return f"SQLite database {self.path!r}"

    @staticmethod
    async def _has_table(connection: aiosqlite.Connection, name: str) -> bool:
        return bool(await fetch_value(connection, sql.TABLE_EXISTS, {"name": name}))

    async def _schema_version(self, connection: aiosqlite.Connection) -> int:
        """The applied version (0 for a new file); SchemaVersionError when too new."""
        if await self._has_table(connection, schema.MIGRATIONS_TABLE):
            version = int(await fetch_value(connection, sql.SCHEMA_VERSION))
        elif await self._has_table(connection, LEGACY_MIGRATIONS_TABLE):
            version = int(await fetch_value(connection, sql.LEGACY_SCHEMA_VERSION))
        else:
            return 0
        schema.pending(MIGRATIONS, version, self._where)
        return version

    async def _ready(self) -> aiosqlite.Connection:
        if self._connection is not None:
            return self._connection
        if self._closed:
            raise StorageClosedError(f"the SQLite storage of {self.path!r} is closed")
        raise StorageClosedError(
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
            return await retrying_busy(lambda: fetch_rows(connection, statement, params))

    async def value(self, statement: str, params: Params | None = None) -> Any:
        """The first column of the first row of one statement, or None."""
        rows = await self.rows(statement, params)
        return rows[0][0] if rows else None

    async def count(self, statement: str, params: Params | None = None) -> int:
        """Run one write statement (RETURNING id); how many rows it changed."""
        return len(await self.rows(statement, params))

    async def transaction(self, body: Body[T]) -> T:
        """Run `body` in one BEGIN IMMEDIATE transaction; it ends whole even if cancelled."""
        return await self._locked(lambda connection: _transaction(connection, body))

    async def in_turn(self, body: Body[T]) -> T:
        """Run `body`'s statements one after the other (each its own transaction, each
        retried while the file is busy, see `retrying_busy`) with no other statement of
        this connection in between; it ends whole even if cancelled."""
        return await self._locked(body)

    async def _locked(self, body: Body[T]) -> T:
        connection = await self._ready()

        async def locked() -> T:
            async with self._lock:
                return await body(connection)

        # Shielded: cancelling the caller must not leave a body half done on the
        # shared connection.
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
