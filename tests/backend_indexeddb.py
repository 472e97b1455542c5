"""The IndexedDB backend: runs inside Pyodide only (pyodide_tests/ runs the suites there)."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, cast

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


async def _overwrite_input(
    location: Location, storage: QueueStorage, job_id: int, text: str
) -> None:
    from pyjobqueue.browser._ffi import JsObject, js_to_json, json_to_js

    def body(transaction: JsObject) -> Generator[JsObject, Any, None]:
        store = transaction.objectStore("jobs")
        record = js_to_json((yield store.get(job_id)))
        record["input"] = text
        store.put(json_to_js(record))

    database = cast(Any, storage)._engine._database
    await database.run(["jobs"], "readwrite", body)


BACKEND = Backend(
    "indexeddb", _queue, _rate_limiter, _unavailable, overwrite_input=_overwrite_input
)
