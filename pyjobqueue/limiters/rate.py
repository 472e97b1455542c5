"""RateLimiter: a sliding window of executions kept in a shared RateLimiterStorage."""

from __future__ import annotations

from datetime import datetime, timedelta

from ..job import utcnow
from ..storage.base import RateLimiterStorage
from .base import LimiterBase, require_greater

PRUNE_EVERY_STARTS = 100


class RateLimiter(LimiterBase):
    """Never more than `max_executions` starts in any `window_size_in_seconds` window.

    The check and the record are one atomic storage operation, so every process that
    shares the storage is limited together. Refused starts back off exponentially
    (initial_backoff_delay * backoff_multiplier ** n ms, at most max_backoff_delay),
    and the backoff time is stored so that the other processes hold back too.
    """

    def __init__(
        self,
        storage: RateLimiterStorage,
        queue_name: str,
        *,
        max_executions: int,
        window_size_in_seconds: float,
        initial_backoff_delay: float = 1000,
        backoff_multiplier: float = 2,
        max_backoff_delay: float = 600_000,
    ) -> None:
        if not isinstance(storage, RateLimiterStorage):
            raise TypeError(f"storage must be a RateLimiterStorage, got {storage!r}")
        require_greater("max_executions", max_executions, 0, integer=True)
        require_greater("window_size_in_seconds", window_size_in_seconds, 0)
        require_greater("initial_backoff_delay", initial_backoff_delay, 0)
        require_greater("backoff_multiplier", backoff_multiplier, 1)
        require_greater("max_backoff_delay", max_backoff_delay, 0)
        if max_backoff_delay < initial_backoff_delay:
            raise ValueError(
                "max_backoff_delay must be greater than or equal to initial_backoff_delay "
                f"({initial_backoff_delay:g}), got {max_backoff_delay!r}"
            )
        self.storage = storage
        self.queue_name = queue_name
        self.max_executions = max_executions
        self.window = timedelta(seconds=window_size_in_seconds)
        self.initial_backoff_delay = initial_backoff_delay
        self.backoff_multiplier = backoff_multiplier
        self.max_backoff_delay = max_backoff_delay
        self._backoff_ms = 0.0
        self._starts = 0

    async def can_proceed(self) -> bool:
        now = utcnow()
        held_until = await self.storage.get_next_available_time(self.queue_name)
        if held_until is not None and now < held_until:
            return False
        count = await self.storage.execution_count(self.queue_name, now - self.window)
        return count < self.max_executions

    async def try_start(self) -> bool:
        now = utcnow()
        held_until = await self.storage.get_next_available_time(self.queue_name)
        if held_until is not None and now < held_until:
            return False
        started = await self.storage.try_record_execution(
            self.queue_name, self.max_executions, now - self.window, now
        )
        if started:
            await self._started(now, held_until)
        else:
            await self._refused(now)
        return started

    async def _started(self, now: datetime, held_until: datetime | None) -> None:
        self._backoff_ms = 0.0
        if held_until is not None:
            await self.storage.set_next_available_time(self.queue_name, None)
        self._starts += 1
        if self._starts % PRUNE_EVERY_STARTS == 0:
            await self.storage.prune(self.queue_name, now - self.window)

    async def _refused(self, now: datetime) -> None:
        if self._backoff_ms == 0:
            self._backoff_ms = self.initial_backoff_delay
        else:
            self._backoff_ms = min(
                self.max_backoff_delay, self._backoff_ms * self.backoff_multiplier
            )
        slot_frees = await self._slot_frees_at(now)
        backoff_until = now + timedelta(milliseconds=self._backoff_ms)
        # Wait for a slot, but not longer than the backoff says.
        await self.storage.set_next_available_time(self.queue_name, min(slot_frees, backoff_until))

    async def _slot_frees_at(self, now: datetime) -> datetime:
        oldest = await self.storage.oldest_execution_time(self.queue_name, now - self.window)
        return now if oldest is None else oldest + self.window

    async def record_job_start(self) -> None:
        await self.try_start()

    async def get_next_available_time(self) -> datetime:
        now = utcnow()
        held_until = await self.storage.get_next_available_time(self.queue_name)
        count = await self.storage.execution_count(self.queue_name, now - self.window)
        slot = await self._slot_frees_at(now) if count >= self.max_executions else now
        return max(now, slot, held_until or now)

    async def set_next_available_time(self, when: datetime) -> None:
        await self.storage.set_next_available_time(self.queue_name, when)

    async def clear(self) -> None:
        self._backoff_ms = 0.0
        await self.storage.clear(self.queue_name)
