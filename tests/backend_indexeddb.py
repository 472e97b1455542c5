"""The IndexedDB backend: runs inside Pyodide only (pyodide_tests/ runs the suites there)."""

from __future__ import annotations

from pyjobqueue._platform import IN_PYODIDE
from pyjobqueue.storage import QueueStorage
from pyjobqueue.storage.base import RateLimiterStorage

from .backends import Backend, Location

# One database for the whole run: tests use unique queue names, as they would in an app.
DATABASE = "pyjobqueue-contract-tests"


async def _queue(location: Location, queue_name: str) -> QueueStorage:
    from pyjobqueue.storage import IndexedDbQueueStorage

    return IndexedDbQueueStorage(queue_name, DATABASE)


async def _rate_limiter(location: Location) -> RateLimiterStorage:
    from pyjobqueue.storage import IndexedDbRateLimiterStorage

    return IndexedDbRateLimiterStorage(DATABASE)


def _unavailable() -> str | None:
    if IN_PYODIDE:
        return None
    return "needs Pyodide (IndexedDB is a browser API): pyodide_tests/ runs it in Node and Chromium"


BACKEND = Backend("indexeddb", _queue, _rate_limiter, _unavailable)
