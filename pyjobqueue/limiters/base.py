"""The Limiter protocol, and the base class that gives every limiter `try_start`."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol, runtime_checkable

from ..job import utcnow


@runtime_checkable
class Limiter(Protocol):
    """Decides whether a worker may start another job now."""

    async def can_proceed(self) -> bool:
        """True when a job may start now (records nothing)."""

    async def record_job_start(self) -> None:
        """Record that a job started."""

    async def record_job_completion(self) -> None:
        """Record that a started job ended."""

    async def get_next_available_time(self) -> datetime:
        """The earliest time a job may start (now when it may start at once)."""

    async def set_next_available_time(self, when: datetime) -> None:
        """Hold starts back until `when`."""

    async def clear(self) -> None:
        """Forget all recorded starts and backoff."""

    async def try_start(self) -> bool:
        """Atomically: if a job may start now, record its start and return True."""


class LimiterBase:
    """Shared behaviour: `try_start` as check-then-record (atomic within one event loop)."""

    # Whether try_start can ever say no. A worker whose limiter never does lets the
    # storage announce job_start with the claim itself.
    refuses_starts = True

    async def can_proceed(self) -> bool:
        return True

    async def record_job_start(self) -> None:
        return None

    async def record_job_completion(self) -> None:
        return None

    async def get_next_available_time(self) -> datetime:
        return utcnow()

    async def set_next_available_time(self, when: datetime) -> None:
        return None

    async def clear(self) -> None:
        return None

    async def try_start(self) -> bool:
        # No await between the check and the record suspends in in-process limiters,
        # so two workers of one loop cannot both pass the check for the last slot.
        if not await self.can_proceed():
            return False
        await self.record_job_start()
        return True


class HoldableLimiter(LimiterBase):
    """A limiter that `set_next_available_time` holds back until that time."""

    def __init__(self) -> None:
        self._next_available: datetime | None = None

    def held(self) -> bool:
        """Whether starts are held back now."""
        return self._next_available is not None and utcnow() < self._next_available

    async def get_next_available_time(self) -> datetime:
        now = utcnow()
        return max(now, self._next_available) if self._next_available else now

    async def set_next_available_time(self, when: datetime) -> None:
        self._next_available = when

    async def clear(self) -> None:
        self._next_available = None


def refuses_starts(limiter: Limiter) -> bool:
    """Whether `limiter` may refuse a start (True for limiters that do not say)."""
    return bool(getattr(limiter, "refuses_starts", True))


def require_greater(name: str, value: object, minimum: float, *, integer: bool = False) -> None:
    """Raise TypeError/ValueError unless `value` is a number greater than `minimum`."""
    allowed: tuple[type, ...] = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, allowed):
        kind = "an int" if integer else "a number"
        raise TypeError(f"{name} must be {kind}, got {type(value).__name__}")
    if not value > minimum:  # type: ignore[operator]
        raise ValueError(f"{name} must be greater than {minimum:g}, got {value!r}")


class NullLimiter(LimiterBase):
    """Never limits."""

    refuses_starts = False
