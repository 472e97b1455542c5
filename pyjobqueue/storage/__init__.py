"""Storages: where jobs live. One Protocol, one module per backend.

Backend modules are imported lazily, so `import pyjobqueue` needs no database driver
(and works under Pyodide); a backend whose driver is missing raises ImportError,
naming the extra to install, when it is constructed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .base import QueueStorage, RateLimiterStorage
from .memory import InMemoryQueueStorage, InMemoryRateLimiterStorage
from .url import default_storage, open_storage

if TYPE_CHECKING:
    from .indexeddb import IndexedDbQueueStorage, IndexedDbRateLimiterStorage
    from .postgres import PostgresQueueStorage, PostgresRateLimiterStorage
    from .sqlite import SqliteQueueStorage, SqliteRateLimiterStorage

_LAZY = {
    "SqliteQueueStorage": "sqlite",
    "SqliteRateLimiterStorage": "sqlite",
    "PostgresQueueStorage": "postgres",
    "PostgresRateLimiterStorage": "postgres",
    "IndexedDbQueueStorage": "indexeddb",
    "IndexedDbRateLimiterStorage": "indexeddb",
}

__all__ = [
    "InMemoryQueueStorage",
    "InMemoryRateLimiterStorage",
    "IndexedDbQueueStorage",
    "IndexedDbRateLimiterStorage",
    "PostgresQueueStorage",
    "PostgresRateLimiterStorage",
    "QueueStorage",
    "RateLimiterStorage",
    "SqliteQueueStorage",
    "SqliteRateLimiterStorage",
    "default_storage",
    "open_storage",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
