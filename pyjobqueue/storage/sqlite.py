"""Placeholder for the SQLite backend, which is being built; constructing it raises."""

from __future__ import annotations

from typing import Any


class SqliteQueueStorage:
    """Not available yet in this version."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError(
            "SqliteQueueStorage is not available yet in this version of pyjobqueue"
        )


class SqliteRateLimiterStorage:
    """Not available yet in this version."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError(
            "SqliteRateLimiterStorage is not available yet in this version of pyjobqueue"
        )
