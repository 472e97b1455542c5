"""DelayLimiter and EvenlySpacedRateLimiter: a minimum gap between job starts."""

from __future__ import annotations

from datetime import datetime, timedelta

from ..job import utcnow
from .base import LimiterBase, require_greater


class _SpacedStarts(LimiterBase):
    """Starts at least `self.gap` apart (in this process)."""

    gap: timedelta

    def __init__(self) -> None:
        self._next_available: datetime | None = None

    async def can_proceed(self) -> bool:
        return self._next_available is None or utcnow() >= self._next_available

    async def record_job_start(self) -> None:
        self._next_available = utcnow() + self.gap

    async def get_next_available_time(self) -> datetime:
        now = utcnow()
        return max(now, self._next_available) if self._next_available else now

    async def set_next_available_time(self, when: datetime) -> None:
        self._next_available = when

    async def clear(self) -> None:
        self._next_available = None


class DelayLimiter(_SpacedStarts):
    """At least `delay_ms` milliseconds between two job starts."""

    def __init__(self, delay_ms: float = 50) -> None:
        require_greater("delay_ms", delay_ms, 0)
        super().__init__()
        self.delay_ms = delay_ms
        self.gap = timedelta(milliseconds=delay_ms)


class EvenlySpacedRateLimiter(_SpacedStarts):
    """`max_executions` per window, spread evenly: one start every window/max_executions."""

    def __init__(self, *, max_executions: int, window_size_in_seconds: float) -> None:
        require_greater("max_executions", max_executions, 0, integer=True)
        require_greater("window_size_in_seconds", window_size_in_seconds, 0)
        super().__init__()
        self.max_executions = max_executions
        self.window_size_in_seconds = window_size_in_seconds
        self.gap = timedelta(seconds=window_size_in_seconds / max_executions)
