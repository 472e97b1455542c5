"""The storage backends the contract suites run on, and how to make one for a test.

Each backend registers a `Backend`: how to open a queue storage at a location that
several storages (other queue names, other "processes") can share, and a rate
limiter storage there. A backend that cannot run here (no driver, no database) is
reported by `unavailable_reason` and its tests are skipped with that reason.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import os
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pyjobqueue.storage import InMemoryQueueStorage, InMemoryRateLimiterStorage, QueueStorage
from pyjobqueue.storage.base import RateLimiterStorage

POSTGRES_DSN_VARIABLE = "PYJOBQUEUE_TEST_POSTGRES_DSN"


@dataclasses.dataclass
class Location:
    """Where a test's storages live; storages made from one location share data."""

    backend: Backend
    tmp_path: Path
    token: str = dataclasses.field(default_factory=lambda: uuid.uuid4().hex[:12])
    shared: dict[str, Any] = dataclasses.field(default_factory=dict)


QueueFactory = Callable[[Location, str], Awaitable[QueueStorage]]
LimiterFactory = Callable[[Location], Awaitable[RateLimiterStorage]]
# Replaces the stored text of a job's input behind the storage's back (a corrupt row).
InputOverwriter = Callable[[Location, QueueStorage, int, str], Awaitable[None]]


@dataclasses.dataclass
class Backend:
    """A storage backend under test."""

    name: str
    open_queue: QueueFactory
    open_rate_limiter: LimiterFactory
    unavailable_reason: Callable[[], str | None] = lambda: None
    # Storages opened twice on one location see each other's jobs (not in-memory).
    shares_location: bool = True
    # None where jobs are kept as Python objects (in memory): nothing to decode.
    overwrite_input: InputOverwriter | None = None


async def _memory_queue(location: Location, queue_name: str) -> QueueStorage:
    # In memory there is no location to share: one storage per queue name per test.
    storages: dict[str, QueueStorage] = location.shared.setdefault("queues", {})
    if queue_name not in storages:
        storages[queue_name] = InMemoryQueueStorage(queue_name)
    return storages[queue_name]


async def _memory_rate_limiter(location: Location) -> RateLimiterStorage:
    if "limiter" not in location.shared:
        location.shared["limiter"] = InMemoryRateLimiterStorage()
    storage: RateLimiterStorage = location.shared["limiter"]
    return storage


MEMORY = Backend("memory", _memory_queue, _memory_rate_limiter, shares_location=False)


def _module_missing(module: str, extra: str) -> Callable[[], str | None]:
    def reason() -> str | None:
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install 'pyjobqueue[{extra}]')"
        return None

    return reason


def postgres_dsn() -> str | None:
    """The DSN of the throwaway test database that build.py started, if any."""
    return os.environ.get(POSTGRES_DSN_VARIABLE)


def _discover() -> list[Backend]:
    """MEMORY, then the BACKEND of every tests/backend_<name>.py module, by name."""
    found = [MEMORY]
    for path in sorted(Path(__file__).parent.glob("backend_*.py")):
        module = importlib.import_module(f"{__package__}.{path.stem}")
        found.append(module.BACKEND)
    return found


BACKENDS: list[Backend] = _discover()
