"""RateLimiter execution records in IndexedDB, shared by every tab of the origin."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ...browser._ffi import JsObject, js_to_json, json_to_js
from ..base import StorageLifecycle, check_queue_name
from .codec import AFTER_ALL, decode_time, encode_time, key_range
from .connection import DEFAULT_DATABASE, Body, Database
from .migrations import RATE_EXECUTIONS, RATE_STATE


class IndexedDbRateLimiterStorage(StorageLifecycle):
    """RateLimiter execution records in IndexedDB, shared by every tab of the origin."""

    def __init__(self, database_name: str = DEFAULT_DATABASE) -> None:
        self._database = Database(database_name, "IndexedDbRateLimiterStorage")

    async def setup_database(self) -> None:
        """Open the database, creating or upgrading its object stores."""
        await self._database.open()

    async def close(self) -> None:
        """Close the connection; the storage is unusable afterwards."""
        self._database.close()

    @staticmethod
    def _since(queue_name: str, since: datetime) -> JsObject:
        check_queue_name(queue_name)
        return key_range([queue_name, encode_time(since)], [queue_name, AFTER_ALL])

    async def try_record_execution(
        self, queue_name: str, max_executions: int, window_start: datetime, now: datetime
    ) -> bool:
        window = self._since(queue_name, window_start)
        record = json_to_js({"queue": queue_name, "at": encode_time(now)})

        def body(transaction: JsObject) -> Body[bool]:
            store = transaction.objectStore(RATE_EXECUTIONS)
            # Count and add in one readwrite transaction: IndexedDB runs these one at a
            # time across tabs, so the limit holds exactly.
            if int((yield store.index("queue_time").count(window))) >= max_executions:
                return False
            store.add(record)
            return True

        return await self._database.run([RATE_EXECUTIONS], "readwrite", body)

    async def execution_count(self, queue_name: str, since: datetime) -> int:
        window = self._since(queue_name, since)

        def body(transaction: JsObject) -> Body[int]:
            index = transaction.objectStore(RATE_EXECUTIONS).index("queue_time")
            return int((yield index.count(window)))

        return await self._database.run([RATE_EXECUTIONS], "readonly", body)

    async def oldest_execution_time(self, queue_name: str, since: datetime) -> datetime | None:
        window = self._since(queue_name, since)

        def body(transaction: JsObject) -> Body[list[dict[str, Any]]]:
            index = transaction.objectStore(RATE_EXECUTIONS).index("queue_time")
            return js_to_json((yield index.getAll(window, 1))) or []

        first = await self._database.run([RATE_EXECUTIONS], "readonly", body)
        return decode_time(first[0]["at"]) if first else None

    async def get_next_available_time(self, queue_name: str) -> datetime | None:
        check_queue_name(queue_name)

        def body(transaction: JsObject) -> Body[dict[str, Any] | None]:
            state: dict[str, Any] | None = js_to_json(
                (yield transaction.objectStore(RATE_STATE).get(queue_name))
            )
            return state

        state = await self._database.run([RATE_STATE], "readonly", body)
        return None if state is None else decode_time(state["next_available"])

    async def set_next_available_time(self, queue_name: str, when: datetime | None) -> None:
        check_queue_name(queue_name)
        state = None if when is None else {"queue": queue_name, "next_available": encode_time(when)}

        def body(transaction: JsObject) -> Body[None]:
            yield from ()  # a body is a generator, even one that waits for nothing
            store = transaction.objectStore(RATE_STATE)
            if state is None:
                store.delete(queue_name)
            else:
                store.put(json_to_js(state))

        await self._database.run([RATE_STATE], "readwrite", body)

    async def prune(self, queue_name: str, before: datetime) -> int:
        check_queue_name(queue_name)
        old = key_range([queue_name], [queue_name, encode_time(before)], True)
        return await self._delete_executions(old)

    async def clear(self, queue_name: str) -> None:
        check_queue_name(queue_name)
        every = key_range([queue_name], [queue_name, AFTER_ALL])
        await self._delete_executions(every, forget_backoff_of=queue_name)

    async def _delete_executions(
        self, index_range: JsObject, forget_backoff_of: str | None = None
    ) -> int:
        def body(transaction: JsObject) -> Body[int]:
            store = transaction.objectStore(RATE_EXECUTIONS)
            if forget_backoff_of is not None:
                transaction.objectStore(RATE_STATE).delete(forget_backoff_of)
            keys = js_to_json((yield store.index("queue_time").getAllKeys(index_range))) or []
            for key in keys:
                store.delete(key)
            return len(keys)

        return await self._database.run([RATE_EXECUTIONS, RATE_STATE], "readwrite", body)
