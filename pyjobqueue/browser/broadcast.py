"""Job events between tabs: a BroadcastChannel per database and queue.

A message posted on a BroadcastChannel reaches every other channel object of that name
in the origin (other tabs, workers, other storages of this tab) but not the object that
posted it, so `publish` also hands the event to this feed's own listeners.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable

from ..errors import StorageClosedError
from ..events import JobEvent
from ..storage.feed import EventListener, Listeners
from ._ffi import JsObject, create_proxy, js_global

logger = logging.getLogger(__name__)


def channel_name(database_name: str, queue_name: str) -> str:
    """The channel of one queue of one database (JSON, so no two pairs share a name)."""
    return "pyjobqueue " + json.dumps([database_name, queue_name], ensure_ascii=False)


class BroadcastFeed:
    """Publish and subscribe to the job events of one queue across the tabs of an origin."""

    def __init__(self, name: str, queue_name: str) -> None:
        self.name = name
        self._listeners = Listeners(queue_name)
        self._channel: JsObject | None = None
        self._on_message: JsObject | None = None
        self._closed = False

    def _open_channel(self) -> JsObject:
        if self._closed:
            raise StorageClosedError(f"the event feed {self.name!r} is closed")
        if self._channel is None:
            self._channel = js_global().BroadcastChannel.new(self.name)
        return self._channel

    def publish(self, event: JobEvent) -> None:
        """Send `event` to every other tab and to this feed's listeners."""
        # A string crosses the bridge and the structured clone as is: no proxy, no leak.
        self._open_channel().postMessage(json.dumps(event.to_json(), allow_nan=False))
        self._listeners.deliver(event)

    def subscribe(self, listener: EventListener) -> Callable[[], None]:
        """Call `listener` for every event of the queue; returns a function that stops it."""
        channel = self._open_channel()
        if self._on_message is None:
            self._on_message = create_proxy(self._receive)
            channel.onmessage = self._on_message
        token = self._listeners.add(listener)
        return lambda: self._unsubscribe(token)

    def _unsubscribe(self, token: int) -> None:
        self._listeners.remove(token)
        if not self._listeners:
            self._stop_listening()

    def _stop_listening(self) -> None:
        if self._on_message is not None:
            if self._channel is not None:
                self._channel.onmessage = None
            # Destroyed after the current callback: a listener may unsubscribe from `_receive`.
            asyncio.get_running_loop().call_soon(self._on_message.destroy)
            self._on_message = None

    def _receive(self, message: JsObject) -> None:
        data = message.data
        try:
            event = JobEvent.from_json(json.loads(data))
        except (TypeError, ValueError, KeyError, RecursionError):
            logger.warning("ignoring a malformed message on channel %r", self.name)
            return
        self._listeners.deliver(event)

    def close(self) -> None:
        """Stop listening and close the channel; the feed is unusable afterwards."""
        self._listeners.clear()
        self._stop_listening()
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        self._closed = True
