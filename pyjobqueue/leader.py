"""Leader election: a server that only processes its queue while it holds a lock.

In a browser, every tab may start a server for the same queue; with a leader lock
only the tab that holds it processes, and another takes over when that tab closes.
The browser lock is `pyjobqueue.browser.WebLocksLeaderLock` (Web Locks API);
`LocalLeaderLock` is the same idea among the servers of one event loop.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Protocol, runtime_checkable


@runtime_checkable
class LeaderLock(Protocol):
    """An exclusive, named lock that a dead holder loses by itself."""

    name: str

    async def acquire(self) -> None:
        """Wait until this holder has the lock."""

    async def release(self) -> None:
        """Give the lock up (no error when not held)."""


_LOCAL_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


class LocalLeaderLock:
    """A leader lock shared by the servers of this event loop (same name, one leader)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._held: asyncio.Lock | None = None

    def _lock(self) -> asyncio.Lock:
        locks = _LOCAL_LOCKS.setdefault(asyncio.get_running_loop(), {})
        return locks.setdefault(self.name, asyncio.Lock())

    async def acquire(self) -> None:
        lock = self._lock()
        await lock.acquire()
        self._held = lock

    async def release(self) -> None:
        if self._held is not None:
            held, self._held = self._held, None
            held.release()
