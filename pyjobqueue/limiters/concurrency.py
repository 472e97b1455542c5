"""ConcurrencyLimiter: at most N jobs running at once in this process."""

from __future__ import annotations

from .base import HoldableLimiter, require_greater


class ConcurrencyLimiter(HoldableLimiter):
    """At most `max_concurrent_jobs` jobs run at the same time (in this process), and none
    before a time given to `set_next_available_time`."""

    def __init__(self, max_concurrent_jobs: int) -> None:
        require_greater("max_concurrent_jobs", max_concurrent_jobs, 0, integer=True)
        super().__init__()
        self.max_concurrent_jobs = max_concurrent_jobs
        self.running = 0

    async def can_proceed(self) -> bool:
        return self.running < self.max_concurrent_jobs and not self.held()

    async def record_job_start(self) -> None:
        self.running += 1

    async def record_job_completion(self) -> None:
        self.running = max(0, self.running - 1)

    async def clear(self) -> None:
        self.running = 0
        await super().clear()
