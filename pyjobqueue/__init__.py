"""pyjobqueue: one job queue for CPython servers and for browsers under Pyodide."""

from .client import JobHandle, JobQueueClient
from .errors import (
    AbortSignalJobError,
    DependencyFailedError,
    JobDisabledError,
    JobError,
    JobNotFoundError,
    JobSnooze,
    JobTimeoutError,
    PermanentJobError,
    RetryableJobError,
)
from .job import AbortSignal, Job, JobContext, JobStatus, job
from .limiters import (
    CompositeLimiter,
    ConcurrencyLimiter,
    DelayLimiter,
    EvenlySpacedRateLimiter,
    Limiter,
    NullLimiter,
    RateLimiter,
)
from .schedules import Schedule
from .server import JobQueueServer, JobQueueStats
from .serving import run
from .worker import JobQueueWorker

__version__ = "0.1.0"

__all__ = [
    "AbortSignal",
    "AbortSignalJobError",
    "CompositeLimiter",
    "ConcurrencyLimiter",
    "DelayLimiter",
    "DependencyFailedError",
    "EvenlySpacedRateLimiter",
    "Job",
    "JobContext",
    "JobDisabledError",
    "JobError",
    "JobHandle",
    "JobNotFoundError",
    "JobQueueClient",
    "JobQueueServer",
    "JobQueueStats",
    "JobQueueWorker",
    "JobSnooze",
    "JobStatus",
    "JobTimeoutError",
    "Limiter",
    "NullLimiter",
    "PermanentJobError",
    "RateLimiter",
    "RetryableJobError",
    "Schedule",
    "job",
    "run",
]
