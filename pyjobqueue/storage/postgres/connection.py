"""The PostgreSQL connection pool of a storage, its schema, and clear connection errors.

`is_transient` tells failures that go away by themselves (a restart, a dropped
connection) from permanent ones, which every statement run through `Database` raises as
`StorageError` subclasses naming the database (`permanent_error`).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit

from ...errors import (
    StorageClosedError,
    StorageConnectionError,
    StorageCorruptError,
    StorageError,
    StorageOperationError,
)
from .. import migrations as schema
from ..url import redact_url
from . import queries as sql
from .migrations import MIGRATIONS

INSTALL_HINT = 'pip install "pyjobqueue[postgres]"'
POOL_MIN_SIZE = 1
POOL_MAX_SIZE = 10
CONNECT_TIMEOUT_SECONDS = 15.0
CLOSE_TIMEOUT_SECONDS = 10.0

# SQLSTATE classes and codes of failures that go away by themselves: connection
# exceptions, a server shutting down, crashed or starting up (57P01-57P03), a
# statement cancelled by a timeout (57014), too many connections or a full disk (53),
# a serialization failure or deadlock (40001, 40P01), a lock not available (55P03).
_TRANSIENT_CLASSES = ("08", "53")
_TRANSIENT_STATES = frozenset(("57P01", "57P02", "57P03", "57014", "40001", "40P01", "55P03"))
# Permanent failures: (SQLSTATE or class, the StorageError, what it means).
_PERMANENT: tuple[tuple[str, type[StorageError], str], ...] = (
    ("28", StorageConnectionError, "the server refused the login"),
    ("3D000", StorageConnectionError, "the database does not exist"),
    ("42501", StorageOperationError, "permission denied"),
    ("25006", StorageOperationError, "the database is read-only"),
    ("42P01", StorageCorruptError, "a pyjobqueue table is missing (dropped by hand?)"),
    ("42703", StorageCorruptError, "a pyjobqueue column is missing (altered by hand?)"),
    ("42883", StorageCorruptError, "a function the pyjobqueue schema needs is missing"),
    ("3F000", StorageCorruptError, "the schema of the pyjobqueue tables is missing"),
    ("XX001", StorageCorruptError, "the database is corrupt"),
    ("XX002", StorageCorruptError, "an index is corrupt"),
)


def _sqlstate(error: BaseException) -> str:
    state = getattr(error, "sqlstate", None)
    return state if isinstance(state, str) else ""


def is_transient(error: BaseException) -> bool:
    """Whether a failure of the PostgreSQL storage may go away by itself.

    Transient: a connection refused, reset, closed or timed out, the server shutting
    down or starting up, asyncpg's InternalClientError (seen after the postmaster is
    killed), InterfaceError and ConnectionDoesNotExistError of a dropped connection,
    and the SQLSTATEs above. A `StorageError` is transient when the failure it explains
    is (a connection refused at setup is; a login refused is not).
    """
    if isinstance(error, StorageError):
        cause = error.__cause__ or error.__context__
        return (
            isinstance(error, StorageConnectionError)
            and cause is not None
            and (is_transient(cause))
        )
    if isinstance(error, OSError | TimeoutError):
        return True
    state = _sqlstate(error)
    if state:
        return state[:2] in _TRANSIENT_CLASSES or state in _TRANSIENT_STATES
    names = {cls.__name__ for cls in type(error).__mro__}
    return bool(names & {"InternalClientError", "InterfaceError"})


def permanent_error(where: str, error: BaseException) -> StorageError | None:
    """The `StorageError` for a server's answer that no retry can fix, or None."""
    state = _sqlstate(error)
    if not state or is_transient(error):
        return None
    for code, kind, meaning in _PERMANENT:
        if state == code or (len(code) == 2 and state[:2] == code):
            message = " ".join(str(error).split())
            return kind(f"PostgreSQL at {where}: {meaning} ({message})")
    return None


def driver() -> Any:
    """The asyncpg module, imported only when a PostgreSQL storage is made."""
    try:
        return importlib.import_module("asyncpg")
    except ImportError as error:
        raise ImportError(f"the PostgreSQL storage needs asyncpg: {INSTALL_HINT}") from error


def check_dsn(dsn: str) -> str:
    """Refuse at construction what is clearly not a PostgreSQL URL (asyncpg parses the rest)."""
    if urlsplit(dsn).scheme not in ("postgres", "postgresql"):
        raise ValueError(
            f"invalid PostgreSQL DSN {redact_url(dsn)!r}: expected "
            "postgresql://user:password@host:port/database"
        )
    return dsn


def affected(status: str) -> int:
    """The row count of a command status such as 'DELETE 3'."""
    return int(status.rsplit(" ", 1)[-1])


async def _keep_session(_connection: Any) -> None:
    """Our pool's connections need no server-side reset between uses.

    The storage leaves no session state behind: its advisory locks end with their
    transaction and the LISTEN connection unlistens before it goes back. Skipping
    asyncpg's default reset query saves a round trip on every operation.
    """


class Database:
    """The pool of a storage (made from a DSN, or given), and the schema it needs."""

    def __init__(self, dsn_or_pool: object) -> None:
        self.driver = driver()
        self.dsn: str | None = None
        self.pool: Any = None
        if isinstance(dsn_or_pool, str):
            self.dsn = check_dsn(dsn_or_pool)
            self.where = redact_url(dsn_or_pool)
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
            where = f"the pyjobqueue schema in {self.where}"
            for migration in schema.pending(MIGRATIONS, current, where):
                await connection.execute(migration.steps)
                await connection.execute(sql.RECORD_MIGRATION, migration.version)

    def explain(self, error: BaseException) -> StorageConnectionError | None:
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
        return StorageConnectionError(f"cannot connect to PostgreSQL at {where}: {reason}")

    @contextlib.contextmanager
    def explaining(self) -> Iterator[None]:
        """Raise a permanent failure inside the block as its `StorageError`."""
        try:
            yield
        except Exception as error:
            explained = permanent_error(self.where, error)
            if explained is None:
                raise
            raise explained from error

    async def fetch(self, statement: str, *args: Any) -> list[Any]:
        """The rows of one statement, on a connection of the pool."""
        with self.explaining():
            rows: list[Any] = await self.require().fetch(statement, *args)
            return rows

    async def fetchrow(self, statement: str, *args: Any) -> Any:
        """The first row of one statement, or None."""
        with self.explaining():
            return await self.require().fetchrow(statement, *args)

    async def fetchval(self, statement: str, *args: Any) -> Any:
        """The first column of the first row of one statement, or None."""
        with self.explaining():
            return await self.require().fetchval(statement, *args)

    async def execute(self, statement: str, *args: Any) -> str:
        """Run one statement; its command status (such as 'DELETE 3')."""
        with self.explaining():
            status: str = await self.require().execute(statement, *args)
            return status

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Any]:
        """A connection of the pool inside a transaction (committed when the block ends)."""
        with self.explaining():
            async with self.require().acquire() as connection, connection.transaction():
                yield connection

    def require(self) -> Any:
        """The pool; a clear error before setup_database() or after close()."""
        if self.pool is None or not self.ready:
            raise StorageClosedError(
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
