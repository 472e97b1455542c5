"""Change feeds: how a storage hands job events to its subscribers.

Every backend's feed (in-memory, the SQLite events table, PostgreSQL LISTEN,
BroadcastChannel) keeps its subscribers in one `Listeners`, which calls each of them
and logs, never raises, a listener's failure.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from ..events import JobEvent

logger = logging.getLogger(__name__)

EventListener = Callable[[JobEvent], None]
Unsubscribe = Callable[[], Awaitable[None]]


class ChangeFeed(Protocol):
    """The event side of a queue storage, one per backend."""

    async def publish(self, event: JobEvent) -> None:
        """Send `event` to every subscriber of the queue, in any process or tab."""

    async def subscribe(self, listener: EventListener) -> Unsubscribe:
        """Deliver every event from now on to `listener`; an async function to stop."""

    def announce_available(self) -> None:
        """Tell subscribers that jobs can be claimed now (a hint; no round trip)."""

    async def close(self) -> None:
        """Drop every subscriber and what the feed holds."""


class Listeners:
    """The subscribers of one feed, each with the feed position it subscribed at."""

    def __init__(self, queue_name: str) -> None:
        self.queue_name = queue_name
        self._entries: dict[int, tuple[EventListener, int]] = {}
        self._tokens = itertools.count()

    def __bool__(self) -> bool:
        return bool(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, listener: EventListener, position: int = 0) -> int:
        """Subscribe `listener` to events after `position`; a token for `remove`."""
        token = next(self._tokens)
        self._entries[token] = (listener, position)
        return token

    def remove(self, token: int) -> None:
        """Unsubscribe (no error if already gone)."""
        self._entries.pop(token, None)

    def clear(self) -> None:
        """Unsubscribe everyone."""
        self._entries.clear()

    def deliver(self, event: JobEvent, position: int = 0) -> None:
        """Call every listener subscribed before `position` (0: every listener)."""
        for listener, start in list(self._entries.values()):
            if position and position <= start:
                continue
            try:
                listener(event)
            except Exception:
                logger.exception(
                    "queue %r: event listener failed on %s", self.queue_name, event.name
                )

    def announce_available(self) -> None:
        """Deliver a `job_available` hint to this process's listeners."""
        if self._entries:
            self.deliver(JobEvent.job_available(self.queue_name))
