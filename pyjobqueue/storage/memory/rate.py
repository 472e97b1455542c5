"""RateLimiter execution records in this process's memory."""

from __future__ import annotations

from datetime import datetime

from ..base import StorageLifecycle


class InMemoryRateLimiterStorage(StorageLifecycle):
    """RateLimiter execution records in this process."""

    def __init__(self) -> None:
        self._executions: dict[str, list[datetime]] = {}
        self._next_available: dict[str, datetime | None] = {}

    async def try_record_execution(
        self, queue_name: str, max_executions: int, window_start: datetime, now: datetime
    ) -> bool:
        """Record one execution at `now` if fewer than `max_executions` since window_start."""
        times = self._executions.setdefault(queue_name, [])
        if sum(1 for when in times if when >= window_start) >= max_executions:
            return False
        times.append(now)
        return True

    async def execution_count(self, queue_name: str, since: datetime) -> int:
        """How many executions were recorded at or after `since`."""
        return sum(1 for when in self._executions.get(queue_name, ()) if when >= since)

    async def oldest_execution_time(self, queue_name: str, since: datetime) -> datetime | None:
        """The earliest execution at or after `since`, or None."""
        return min(
            (when for when in self._executions.get(queue_name, ()) if when >= since), default=None
        )

    async def get_next_available_time(self, queue_name: str) -> datetime | None:
        """The stored backoff time, or None."""
        return self._next_available.get(queue_name)

    async def set_next_available_time(self, queue_name: str, when: datetime | None) -> None:
        """Store (or clear with None) the backoff time."""
        self._next_available[queue_name] = when

    async def prune(self, queue_name: str, before: datetime) -> int:
        """Forget executions older than `before`; the count."""
        times = self._executions.get(queue_name, [])
        kept = [when for when in times if when >= before]
        self._executions[queue_name] = kept
        return len(times) - len(kept)

    async def clear(self, queue_name: str) -> None:
        """Forget every execution and the backoff time of this queue."""
        self._executions.pop(queue_name, None)
        self._next_available.pop(queue_name, None)
