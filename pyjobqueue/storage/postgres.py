"""Placeholder for the PostgreSQL backend, which is being built; constructing it raises."""

from __future__ import annotations

from typing import Any


class PostgresQueueStorage:
    """Not available yet in this version."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError(
            "PostgresQueueStorage is not available yet in this version of pyjobqueue"
        )


class PostgresRateLimiterStorage:
    """Not available yet in this version."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError(
            "PostgresRateLimiterStorage is not available yet in this version of pyjobqueue"
        )
