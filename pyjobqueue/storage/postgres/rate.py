"""RateLimiter execution records in PostgreSQL: one limit for every server on the database."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..base import StorageLifecycle
from . import queries as sql
from .connection import Database, affected


class PostgresRateLimiterStorage(StorageLifecycle):
    """RateLimiter execution records in PostgreSQL: one limit for every server on the database."""

    def __init__(self, dsn_or_pool: str | Any) -> None:
        self._database = Database(dsn_or_pool)

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
        pool = self._database.require()
        with self._database.explaining():
            async with pool.acquire() as connection, connection.transaction():
                # Count and insert run after the lock, so they see every earlier record.
                await connection.execute(sql.LOCK_RATE_QUEUE, queue_name)
                recorded = await connection.fetchval(
                    sql.RECORD_EXECUTION_IF_ROOM, queue_name, max_executions, window_start, now
                )
        return recorded is not None

    async def execution_count(self, queue_name: str, since: datetime) -> int:
        count: int = await self._database.fetchval(sql.COUNT_EXECUTIONS, queue_name, since)
        return count

    async def oldest_execution_time(self, queue_name: str, since: datetime) -> datetime | None:
        oldest: datetime | None = await self._database.fetchval(
            sql.OLDEST_EXECUTION, queue_name, since
        )
        return oldest

    async def get_next_available_time(self, queue_name: str) -> datetime | None:
        when: datetime | None = await self._database.fetchval(sql.GET_NEXT_AVAILABLE, queue_name)
        return when

    async def set_next_available_time(self, queue_name: str, when: datetime | None) -> None:
        await self._database.execute(sql.SET_NEXT_AVAILABLE, queue_name, when)

    async def prune(self, queue_name: str, before: datetime) -> int:
        result = await self._database.execute(sql.PRUNE_EXECUTIONS, queue_name, before)
        return affected(result)

    async def clear(self, queue_name: str) -> None:
        await self._database.execute(sql.CLEAR_RATE_LIMIT, queue_name)
