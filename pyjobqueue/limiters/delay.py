"""DelayLimiter and EvenlySpacedRateLimiter: a minimum gap between job starts."""

from __future__ import annotations

from datetime import timedelta

from ..job import utcnow
from .base import HoldableLimiter, require_greater


class _SpacedStarts(HoldableLimiter):
    """Starts at least `self.gap` apart (in this process)."""

    gap: timedelta

    async def can_proceed(self) -> bool:
        return not self.held()

    async def record_job_start(self) -> None:
        await self.set_next_available_time(utcnow() + self.gap)


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
