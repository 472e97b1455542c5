"""In-memory storage: one process, no persistence; the reference for every backend."""

from .queue import InMemoryQueueStorage
from .rate import InMemoryRateLimiterStorage

__all__ = ["InMemoryQueueStorage", "InMemoryRateLimiterStorage"]
