"""CompositeLimiter: a job starts only when every limiter agrees."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from ..job import utcnow
from . import base
from .base import Limiter, LimiterBase


class CompositeLimiter(LimiterBase):
    """All of `limiters` must allow a start; the next available time is the latest."""

    def __init__(self, limiters: Sequence[Limiter]) -> None:
        limiters = list(limiters)
        for index, limiter in enumerate(limiters):
            if not isinstance(limiter, Limiter):
                raise TypeError(f"limiters[{index}] is not a Limiter: {limiter!r}")
        self.limiters = limiters

    @property
    def refuses_starts(self) -> bool:  # type: ignore[override]
        return any(base.refuses_starts(limiter) for limiter in self.limiters)

    async def can_proceed(self) -> bool:
        for limiter in self.limiters:
            if not await limiter.can_proceed():
                return False
        return True

    async def try_start(self) -> bool:
        started: list[Limiter] = []
        for limiter in self.limiters:
            if not await limiter.try_start():
                # Give back what the earlier limiters recorded for this start.
                for earlier in started:
                    await earlier.record_job_completion()
                return False
            started.append(limiter)
        return True

    async def record_job_start(self) -> None:
        for limiter in self.limiters:
            await limiter.record_job_start()

    async def record_job_completion(self) -> None:
        for limiter in self.limiters:
            await limiter.record_job_completion()

    async def get_next_available_time(self) -> datetime:
        times = [await limiter.get_next_available_time() for limiter in self.limiters]
        return max(times, default=utcnow())

    async def set_next_available_time(self, when: datetime) -> None:
        for limiter in self.limiters:
            await limiter.set_next_available_time(when)

    async def clear(self) -> None:
        for limiter in self.limiters:
            await limiter.clear()
