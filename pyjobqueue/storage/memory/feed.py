"""The in-memory change feed: events go to this process's subscribers, at once."""

from __future__ import annotations

from ...events import JobEvent
from ..feed import EventListener, EventNames, Listeners, Unsubscribe


class EventFeed:
    """Delivers each published event to the storage's own subscribers."""

    def __init__(self, queue_name: str) -> None:
        self._listeners = Listeners(queue_name)

    async def publish(self, event: JobEvent) -> None:
        """Deliver `event` to every subscriber."""
        self._listeners.deliver(event)

    async def subscribe(self, listener: EventListener, names: EventNames = None) -> Unsubscribe:
        """Deliver every event (of `names`) from now on to `listener`."""
        token = self._listeners.add(listener, names=names)

        async def unsubscribe() -> None:
            self._listeners.remove(token)

        return unsubscribe

    def announce_available(self) -> None:
        """Wake this process's idle workers."""
        self._listeners.announce_available()

    async def close(self) -> None:
        """Drop every subscriber."""
        self._listeners.clear()
