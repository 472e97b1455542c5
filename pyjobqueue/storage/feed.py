"""Change feeds: how a storage hands job events to its subscribers.

Every backend's feed (in-memory, the SQLite events table, PostgreSQL LISTEN,
BroadcastChannel) keeps its subscribers in one `Listeners`, which calls each of them
and logs, never raises, a listener's failure.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

from ..events import JobEvent

logger = logging.getLogger(__name__)

EventListener = Callable[[JobEvent], None]
Unsubscribe = Callable[[], Awaitable[None]]
# The event names a subscriber takes (`subscribe(names=...)`); None: every event.
EventNames = Iterable[str] | None


class ChangeFeed(Protocol):
    """The event side of a queue storage, one per backend."""

    async def publish(self, event: JobEvent) -> None:
        """Send `event` to every subscriber of the queue, in any process or tab."""

    async def subscribe(self, listener: EventListener, names: EventNames = None) -> Unsubscribe:
        """Deliver every event from now on to `listener` (of `names` only, when given);
        an async function to stop."""

    def announce_available(self) -> None:
        """Tell subscribers that jobs can be claimed now (a hint; no round trip)."""

    async def close(self) -> None:
        """Drop every subscriber and what the feed holds."""


class Listeners:
    """The subscribers of one feed, each with the feed position it subscribed at and the
    event names it takes.

    A server takes a few names (a pause, an abort, new work), not the job events every
    worker of the queue sends, which are most of a feed's traffic: a feed that receives
    events as JSON text asks `wants_text` first and decodes only what some subscriber
    takes.
    """

    def __init__(self, queue_name: str) -> None:
        self.queue_name = queue_name
        self._entries: dict[int, tuple[EventListener, int, frozenset[str] | None]] = {}
        self._tokens = itertools.count()
        # The names any subscriber takes, each as it appears in an event's JSON (a
        # quoted string: names need no escaping); None when one takes every event.
        self._quoted: tuple[str, ...] | None = ()

    def __bool__(self) -> bool:
        return bool(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, listener: EventListener, position: int = 0, names: EventNames = None) -> int:
        """Subscribe `listener` to events after `position` (of `names` only, when given);
        a token for `remove`."""
        token = next(self._tokens)
        self._entries[token] = (listener, position, None if names is None else frozenset(names))
        self._taken()
        return token

    def remove(self, token: int) -> None:
        """Unsubscribe (no error if already gone)."""
        self._entries.pop(token, None)
        self._taken()

    def clear(self) -> None:
        """Unsubscribe everyone."""
        self._entries.clear()
        self._taken()

    def _taken(self) -> None:
        taken: set[str] = set()
        for _listener, _position, names in self._entries.values():
            if names is None:
                self._quoted = None
                return
            taken |= names
        self._quoted = tuple(f'"{name}"' for name in sorted(taken))

    def wants_text(self, text: str) -> bool:
        """Whether a subscriber may take an event of those whose JSON is `text` (one event
        or an array of them): False only when none of the names taken appears in it."""
        quoted = self._quoted
        return quoted is None or any(name in text for name in quoted)

    def wants_names(self, names: Iterable[str]) -> bool:
        """Whether a subscriber takes an event of one of `names`."""
        quoted = self._quoted
        return quoted is None or any(f'"{name}"' in quoted for name in names)

    def deliver(self, event: JobEvent, position: int = 0) -> None:
        """Call every listener subscribed before `position` (0: every listener) that
        takes events of this name."""
        for listener, start, names in list(self._entries.values()):
            if (position and position <= start) or (names is not None and event.name not in names):
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
