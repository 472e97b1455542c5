"""RateLimiter execution records in a SQLite file, shared by every process that opens it."""

from __future__ import annotations

import os
from datetime import datetime
from typing import TYPE_CHECKING

from ..._options import require_ms
from ..base import StorageLifecycle
from . import queries as sql
from .codec import decode_time, encode_time
from .connection import DEFAULT_BUSY_TIMEOUT_MS, Database, check_path, execute, require_driver

if TYPE_CHECKING:
    import aiosqlite


class SqliteRateLimiterStorage(StorageLifecycle):
    """RateLimiter execution records in a SQLite file: limits every process that shares it."""

    def __init__(
        self, path: str | os.PathLike[str], *, busy_timeout_ms: float = DEFAULT_BUSY_TIMEOUT_MS
    ) -> None:
        self.path = check_path(path)
        busy_timeout = require_ms("busy_timeout_ms", busy_timeout_ms)
        require_driver()
        self._database = Database(self.path, busy_timeout)

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
            "window_start": encode_time(window_start),
            "now": encode_time(now),
        }
        # One INSERT ... SELECT: the count and the insert happen under one write lock.
        return await self._database.count(sql.RECORD_EXECUTION_IF_ROOM, params) == 1

    async def execution_count(self, queue_name: str, since: datetime) -> int:
        params = {"queue_name": queue_name, "since": encode_time(since)}
        return int(await self._database.value(sql.COUNT_EXECUTIONS, params))

    async def oldest_execution_time(self, queue_name: str, since: datetime) -> datetime | None:
        params = {"queue_name": queue_name, "since": encode_time(since)}
        return decode_time(await self._database.value(sql.OLDEST_EXECUTION, params))

    async def get_next_available_time(self, queue_name: str) -> datetime | None:
        return decode_time(
            await self._database.value(sql.GET_NEXT_AVAILABLE, {"queue_name": queue_name})
        )

    async def set_next_available_time(self, queue_name: str, when: datetime | None) -> None:
        if when is None:
            await self._database.rows(sql.CLEAR_NEXT_AVAILABLE, {"queue_name": queue_name})
        else:
            params = {"queue_name": queue_name, "until": encode_time(when)}
            await self._database.rows(sql.SET_NEXT_AVAILABLE, params)

    async def prune(self, queue_name: str, before: datetime) -> int:
        params = {"queue_name": queue_name, "before": encode_time(before)}
        return await self._database.count(sql.PRUNE_EXECUTIONS, params)

    async def clear(self, queue_name: str) -> None:
        async def clear(connection: aiosqlite.Connection) -> None:
            await execute(connection, sql.CLEAR_EXECUTIONS, {"queue_name": queue_name})
            await execute(connection, sql.CLEAR_NEXT_AVAILABLE, {"queue_name": queue_name})

        await self._database.transaction(clear)
