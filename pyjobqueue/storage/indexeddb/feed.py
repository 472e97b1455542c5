"""The IndexedDB change feed: job events between the tabs of an origin on a BroadcastChannel."""

from __future__ import annotations

import logging

from ...browser.broadcast import BroadcastFeed, channel_name
from ...events import JobEvent
from ..feed import EventListener, Unsubscribe

logger = logging.getLogger(__name__)


class EventFeed:
    """Publishes to every tab (this one included) and delivers what the others publish."""

    def __init__(self, database_name: str, queue_name: str) -> None:
        self._queue_name = queue_name
        self._channel = BroadcastFeed(channel_name(database_name, queue_name), queue_name)

    async def publish(self, event: JobEvent) -> None:
        """Send `event` to every tab's subscribers."""
        self._channel.publish(event)

    async def subscribe(self, listener: EventListener) -> Unsubscribe:
        """Deliver every event from now on to `listener`."""
        stop = self._channel.subscribe(listener)

        async def unsubscribe() -> None:
            stop()

        return unsubscribe

    def announce_available(self) -> None:
        """Wake idle workers in every tab (a hint: a failure is logged, not raised)."""
        try:
            self._channel.publish(JobEvent.job_available(self._queue_name))
        except Exception:
            logger.exception("could not announce new jobs on queue %s", self._queue_name)

    async def close(self) -> None:
        """Close the channel."""
        self._channel.close()
