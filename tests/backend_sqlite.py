"""The SQLite backend for the contract suites: one file per test, short poll interval."""

from __future__ import annotations

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


BACKEND = Backend(
    "sqlite",
    _sqlite_queue,
    _sqlite_rate_limiter,
    unavailable_reason=_module_missing("aiosqlite", "sqlite"),
)
