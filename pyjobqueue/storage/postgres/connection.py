"""The PostgreSQL connection pool of a storage, its schema, and clear connection errors."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import socket
from typing import Any
from urllib.parse import urlsplit

from ...errors import StorageClosedError, StorageConnectionError
from .. import migrations as schema
from ..url import redact_url
from . import queries as sql
from .migrations import MIGRATIONS

INSTALL_HINT = 'pip install "pyjobqueue[postgres]"'
POOL_MIN_SIZE = 1
POOL_MAX_SIZE = 10
CONNECT_TIMEOUT_SECONDS = 15.0
CLOSE_TIMEOUT_SECONDS = 10.0


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
