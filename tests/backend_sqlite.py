"""The SQLite backend for the contract suites: one file per test, short poll interval."""

from __future__ import annotations

import sqlite3

from pyjobqueue.storage import QueueStorage, SqliteQueueStorage, SqliteRateLimiterStorage
from pyjobqueue.storage.base import RateLimiterStorage

from .backends import Backend, Location, _module_missing

# Tests wait on events, not on time: a short interval only makes them finish sooner.
TEST_POLL_INTERVAL_MS = 20


def database_path(location: Location) -> str:
    """The file every storage of a test's location shares."""
    return str(location.tmp_path / "pyjobqueue-test.db")


async def _sqlite_queue(location: Location, queue_name: str) -> QueueStorage:
    return SqliteQueueStorage(
        database_path(location), queue_name, poll_interval_ms=TEST_POLL_INTERVAL_MS
    )


async def _sqlite_rate_limiter(location: Location) -> RateLimiterStorage:
    return SqliteRateLimiterStorage(database_path(location))


async def _overwrite_input(
    location: Location, storage: QueueStorage, job_id: int, text: str
) -> None:
    connection = sqlite3.connect(database_path(location))
    try:
        with connection:
            connection.execute("UPDATE pyjobqueue_jobs SET input = ? WHERE id = ?", (text, job_id))
    finally:
        connection.close()


BACKEND = Backend(
    "sqlite",
    _sqlite_queue,
    _sqlite_rate_limiter,
    unavailable_reason=_module_missing("aiosqlite", "sqlite"),
    overwrite_input=_overwrite_input,
)
