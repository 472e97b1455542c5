"""The SQLite connection: opening a file with clear errors, WAL, the schema, retries.

One aiosqlite connection per storage runs one statement or transaction at a time. A
lone write statement in autocommit mode takes the file's write lock before it reads
anything (as BEGIN IMMEDIATE does), so it is atomic across processes; several
statements run in `BEGIN IMMEDIATE`. A busy file is waited for (busy_timeout, then a
short backoff) instead of surfacing "database is locked".

What cannot work (a read-only file, a corrupt file, a table dropped by hand) surfaces as
a `StorageError` subclass naming the file, from setup and from any later statement
(`permanent_error`); `is_transient` tells a busy file or a passing I/O error apart.
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
from .migrations import MIGRATIONS, MIGRATIONS_TABLE

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
# Setup runs PRAGMA quick_check on files up to this size: about 0.15 s per 100 MB on a
# warm cache (1.2 s for 800 MB), too slow to pay on every open of a larger file, where
# a damaged page is found when a statement reads it.
QUICK_CHECK_MAX_BYTES = 128 * 1024 * 1024
# Primary result codes (the low byte of sqlite_errorcode).
_SQLITE_PERM, _SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_NOMEM = 3, 5, 6, 7
_SQLITE_READONLY, _SQLITE_INTERRUPT, _SQLITE_IOERR, _SQLITE_CORRUPT = 8, 9, 10, 11
_SQLITE_FULL, _SQLITE_CANTOPEN, _SQLITE_PROTOCOL, _SQLITE_AUTH = 13, 14, 15, 23
_SQLITE_NOTADB = 26
# A busy file outlasting the retries, or a failure of the moment (memory, an I/O
# error of a network file system, a full disk that may be freed).
_TRANSIENT_CODES = frozenset(
    (
        _SQLITE_BUSY,
        _SQLITE_LOCKED,
        _SQLITE_NOMEM,
        _SQLITE_INTERRUPT,
        _SQLITE_IOERR,
        _SQLITE_FULL,
        _SQLITE_PROTOCOL,
    )
)
_CORRUPT_CODES = frozenset((_SQLITE_CORRUPT, _SQLITE_NOTADB))
_REFUSED_CODES = frozenset((_SQLITE_READONLY, _SQLITE_CANTOPEN, _SQLITE_PERM, _SQLITE_AUTH))


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


def _primary_code(error: sqlite3.Error) -> int | None:
    code = getattr(error, "sqlite_errorcode", None)
    return None if code is None else int(code) & 0xFF


def _is_busy(error: sqlite3.OperationalError) -> bool:
    code = _primary_code(error)
    if code is not None:
        return code in (_SQLITE_BUSY, _SQLITE_LOCKED)
    text = str(error)
    return "locked" in text or "busy" in text


def is_transient(error: BaseException) -> bool:
    """Whether a failure of the SQLite storage may go away by itself.

    Transient: a file still busy after the retries, and failures of the moment
    (I/O error, disk full, out of memory). Permanent, raised as `StorageError`
    subclasses: a read-only file or directory, a corrupt file, a missing table.
    """
    if isinstance(error, StorageError):
        return False
    if isinstance(error, sqlite3.OperationalError) and _is_busy(error):
        return True
    return isinstance(error, sqlite3.Error) and _primary_code(error) in _TRANSIENT_CODES


def _missing_schema(text: str) -> bool:
    return "no such table" in text or "no such column" in text


async def _retrying_busy(attempt: Callable[[], Awaitable[T]]) -> T:
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

    return await _retrying_busy(attempt)


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
    if (
        "not a database" in lowered
        or "malformed" in lowered
        or "encrypted" in lowered
        or _primary_code(error) in _CORRUPT_CODES
    ):
        reason = "is not a SQLite database (or it is corrupt)"
        return StorageCorruptError(f"SQLite database {path!r} {reason} ({text})")
    if _missing_schema(lowered):
        reason = (
            "lacks a pyjobqueue table or column (dropped or altered by hand?); "
            "restore it or use a new file"
        )
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


def permanent_error(path: str, error: BaseException) -> StorageError | None:
    """The `StorageError` for a driver failure that no retry can fix, or None.

    A read that reaches a damaged page fails only then (setup checks small files
    whole): it is a `StorageCorruptError` like any other sign of corruption.
    """
    if not isinstance(error, sqlite3.Error) or is_transient(error):
        return None
    code = _primary_code(error)
    lowered = str(error).lower()
    if (
        code in _CORRUPT_CODES
        or code in _REFUSED_CODES
        or _missing_schema(lowered)
        or "malformed" in lowered
        or "readonly" in lowered
    ):
        return _explain(path, error)
    return None


def _raise_explained(path: str, error: BaseException) -> None:
    """Raise the `StorageError` of a permanent driver failure (chained to it), if it is one."""
    explained = permanent_error(path, error)
    if explained is not None:
        raise explained from error


def _quick_check(path: str, connection: sqlite3.Connection) -> None:
    """StorageCorruptError when a page of the file is damaged (only for small files)."""
    if path == MEMORY_PATH or Path(path).stat().st_size > QUICK_CHECK_MAX_BYTES:
        return
    rows = connection.execute("PRAGMA quick_check(1)").fetchall()
    problem = " ".join(str(rows[0][0]).split()) if rows else "no answer"
    if problem != "ok":
        raise StorageCorruptError(
            f"SQLite database {path!r} is corrupt (PRAGMA quick_check: {problem})"
        )


def _try_open(path: str) -> None:
    """Open the file once with the stdlib driver, to explain a failure clearly.

    (aiosqlite leaves its worker thread behind when its own connect fails.)
    """
    try:
        connection = sqlite3.connect(path)
        try:
            _quick_check(path, connection)
        finally:
            connection.close()
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
        await _retrying_busy(lambda: fetch_value(connection, "PRAGMA journal_mode = WAL"))
        # In WAL mode NORMAL survives a crashed process; only power loss can drop
        # the last commits.
        await execute(connection, "PRAGMA synchronous = NORMAL")
        await self._migrate(connection)

    async def _migrate(self, connection: aiosqlite.Connection) -> None:
        if await self._schema_version(connection) == len(MIGRATIONS):
            return

        async def migrate(connection: aiosqlite.Connection) -> None:
            # Under the write lock: another process may have migrated meanwhile.
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
        if not await self._has_table(connection, MIGRATIONS_TABLE):
            return 0
        version = int(await fetch_value(connection, sql.SCHEMA_VERSION))
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
        try:
            async with self._lock:
                return await _retrying_busy(lambda: fetch_rows(connection, statement, params))
        except sqlite3.Error as error:
            _raise_explained(self.path, error)
            raise

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

    async def _locked(self, body: Body[T]) -> T:
        connection = await self._ready()

        async def locked() -> T:
            async with self._lock:
                return await body(connection)

        # Shielded: cancelling the caller must not leave a body half done on the
        # shared connection.
        task = asyncio.ensure_future(locked())
        task.add_done_callback(_retrieve_exception)
        try:
            return await asyncio.shield(task)
        except sqlite3.Error as error:
            _raise_explained(self.path, error)
            raise

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
