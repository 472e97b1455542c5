"""Messages between tabs: a BroadcastChannel per database and queue.

A message posted on a BroadcastChannel reaches every other channel object of that name
in the origin (other tabs, workers, other storages of this tab) but not the object that
posted it. Messages are JSON objects; what they mean is the caller's business
(`pyjobqueue.storage.indexeddb.feed` sends job events with their sequence numbers).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from ..errors import StorageClosedError
from ._ffi import JsObject, create_proxy, js_global

logger = logging.getLogger(__name__)

Receiver = Callable[[dict[str, Any]], None]


def channel_name(database_name: str, queue_name: str) -> str:
    """The channel of one queue of one database (JSON, so no two pairs share a name)."""
    return "pyjobqueue " + json.dumps([database_name, queue_name], ensure_ascii=False)


class BroadcastFeed:
    """Post JSON messages to the other tabs of the origin, and receive theirs."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._receiver: Receiver | None = None
        self._channel: JsObject | None = None
        self._on_message: JsObject | None = None
        self._closed = False

    def _open_channel(self) -> JsObject:
        if self._closed:
            raise StorageClosedError(f"the event feed {self.name!r} is closed")
        if self._channel is None:
            self._channel = js_global().BroadcastChannel.new(self.name)
        return self._channel

    def post(self, message: dict[str, Any]) -> None:
        """Send `message` to every other channel object of this name."""
        # A string crosses the bridge and the structured clone as is: no proxy, no leak.
        self._open_channel().postMessage(json.dumps(message, allow_nan=False))

    def listen(self, receiver: Receiver) -> None:
        """Hand every message of the other tabs to `receiver` (one receiver at a time)."""
        channel = self._open_channel()
        self._receiver = receiver
        if self._on_message is None:
            self._on_message = create_proxy(self._receive)
            channel.onmessage = self._on_message

    def stop_listening(self) -> None:
        """Receive nothing any more (until `listen` again)."""
        self._receiver = None
        if self._on_message is not None:
            if self._channel is not None:
                self._channel.onmessage = None
            # Destroyed after the current callback: a listener may unsubscribe from `_receive`.
            asyncio.get_running_loop().call_soon(self._on_message.destroy)
            self._on_message = None

    def _receive(self, message: JsObject) -> None:
        try:
            data = json.loads(message.data)
        except (TypeError, ValueError, RecursionError):
            logger.warning("ignoring a malformed message on channel %r", self.name)
            return
        if isinstance(data, dict) and self._receiver is not None:
            self._receiver(data)

    def close(self) -> None:
        """Stop listening and close the channel; the feed is unusable afterwards."""
        self.stop_listening()
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        self._closed = True
