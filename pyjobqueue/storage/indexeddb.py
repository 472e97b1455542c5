"""Placeholder for the IndexedDB backend, which is being built; constructing it raises."""

from __future__ import annotations

from typing import Any


class IndexedDbQueueStorage:
    """Not available yet in this version."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError(
            "IndexedDbQueueStorage is not available yet in this version of pyjobqueue"
        )


class IndexedDbRateLimiterStorage:
    """Not available yet in this version."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError(
            "IndexedDbRateLimiterStorage is not available yet in this version of pyjobqueue"
        )
