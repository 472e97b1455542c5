"""Fixtures shared by the suites: a storage factory parametrised over every backend."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from pyjobqueue.events import JobEvent
from pyjobqueue.storage import QueueStorage
from pyjobqueue.storage.base import RateLimiterStorage

from .backends import BACKENDS, Backend, Location


@pytest.fixture(params=BACKENDS, ids=lambda backend: backend.name)
def backend(request: pytest.FixtureRequest) -> Backend:
    """Each backend in turn; skipped with a reason when it cannot run here."""
    backend: Backend = request.param
    reason = backend.unavailable_reason()
    if reason:
        pytest.skip(reason)
    return backend


@pytest.fixture
async def location(backend: Backend, tmp_path: Path) -> AsyncIterator[Location]:
    """A fresh place for this test's storages (a file, a schema-less queue prefix...)."""
    yield Location(backend, tmp_path)


class Storages:
    """Opens storages at the test's location and closes them all afterwards."""

    def __init__(self, location: Location) -> None:
        self.location = location
        self.opened: list[Any] = []

    @property
    def backend(self) -> Backend:
        return self.location.backend

    def queue_name(self, suffix: str = "q") -> str:
        """A queue name unique to this test (backends share databases across tests)."""
        return f"{suffix}-{self.location.token}"

    async def queue(self, suffix: str = "q") -> QueueStorage:
        """A set-up queue storage for queue `suffix` of this test."""
        storage = await self.backend.open_queue(self.location, self.queue_name(suffix))
        await storage.setup_database()
        self.opened.append(storage)
        return storage

    async def rate_limiter(self) -> RateLimiterStorage:
        """A set-up rate limiter storage at this test's location."""
        storage = await self.backend.open_rate_limiter(self.location)
        await storage.setup_database()
        self.opened.append(storage)
        return storage

    async def close(self) -> None:
        for storage in reversed(self.opened):
            with contextlib.suppress(Exception):
                await storage.close()


@pytest.fixture
async def storages(location: Location) -> AsyncIterator[Storages]:
    """Open storages for the current backend; all closed at the end of the test."""
    opened = Storages(location)
    yield opened
    await opened.close()


@pytest.fixture
async def storage(storages: Storages) -> QueueStorage:
    """One queue storage on the current backend."""
    return await storages.queue()


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout: float = 10.0, interval: float = 0.01
) -> None:
    """Wait until an async condition holds (for state only visible by polling storage)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(interval)


async def next_event(
    events: asyncio.Queue[JobEvent],
    name: str | None = None,
    *,
    skip: frozenset[str] = frozenset(),
    timeout: float = 20.0,
) -> JobEvent:
    """The next event named `name` (any name with None) whose name is not in `skip`."""
    while True:
        event = await asyncio.wait_for(events.get(), timeout)
        if (name is None or event.name == name) and event.name not in skip:
            return event
