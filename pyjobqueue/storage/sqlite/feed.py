"""The SQLite change feed: an events table that every subscribed storage polls.

SQLite has no push channel. `publish` inserts the event into `pyjobqueue_events`;
each storage with subscribers reads the rows after the last one it saw, every
`poll_interval_ms`, and an idle poll is one `PRAGMA data_version` (no table read).
Old events are pruned by age.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from ... import _json
from ...errors import StorageError
from ...events import JobEvent
from ..feed import EventListener, EventNames, Listeners, Unsubscribe
from . import queries as sql
from .codec import encode_time
from .connection import Database

logger = logging.getLogger(__name__)

EVENT_RETENTION = timedelta(minutes=5)
EVENT_PRUNE_EVERY_SECONDS = 60.0


def event_row(event: JobEvent) -> dict[str, Any]:
    """The parameters of `queries.INSERT_EVENT` for one event."""
    return {
        "queue_name": event.queue_name,
        "payload": _json.dumps(event.to_json()),
        "created_at": encode_time(datetime.now(UTC)),
    }


class EventFeed:
    """Publishes to the events table; polls it for one queue and hands new events on."""

    def __init__(self, database: Database, queue_name: str, poll_interval: float) -> None:
        self._database = database
        self._queue_name = queue_name
        self._poll_interval = poll_interval
        # Each listener with the id of the last event before it subscribed.
        self._listeners = Listeners(queue_name)
        self._position = 0
        self._data_version: int | None = None
        self._own_write = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._next_prune = 0.0
        self._pruning: asyncio.Future[None] | None = None
        # Held while reading and delivering, and while a listener registers, so a new
        # listener starts exactly after the last event it was not meant to see.
        self._reading = asyncio.Lock()

    async def publish(self, event: JobEvent) -> None:
        """Store the event for every subscriber of the file (this process's too)."""
        await self._database.rows(sql.INSERT_EVENT, event_row(event))
        self.stored()
        await self._prune_if_due()

    def stored(self, *, prune_soon: bool = False) -> None:
        """Events were just stored through this connection: read them at once (its own
        writes do not change data_version); with `prune_soon`, prune old events in the
        background when that is due, so the write that stored them never waits for it."""
        self._own_write = True
        self._wake.set()
        if prune_soon and self._prune_due() and self._pruning is None:
            self._pruning = asyncio.ensure_future(self._prune())
            self._pruning.add_done_callback(self._pruned)

    def _prune_due(self) -> bool:
        if time.monotonic() < self._next_prune:
            return False
        self._next_prune = time.monotonic() + EVENT_PRUNE_EVERY_SECONDS
        return True

    async def _prune_if_due(self) -> None:
        if self._prune_due():
            await self._prune()

    async def _prune(self) -> None:
        before = encode_time(datetime.now(UTC) - EVENT_RETENTION)
        try:
            await self._database.rows(sql.PRUNE_EVENTS, {"before": before})
        except Exception as error:  # the events it follows are stored: never fail them
            logger.warning("pruning old events failed, will try again: %s", error)

    def _pruned(self, task: asyncio.Future[None]) -> None:
        self._pruning = None

    async def subscribe(self, listener: EventListener, names: EventNames = None) -> Unsubscribe:
        """Deliver every event (of `names`) stored from now on; starts polling for the
        first listener."""
        async with self._reading:
            start = int(await self._database.value(sql.LAST_EVENT_ID))
            if self._task is None:
                self._position, self._data_version = start, None
                self._task = asyncio.create_task(self._poll(), name="pyjobqueue sqlite feed")
            token = self._listeners.add(listener, start, names)

        async def unsubscribe() -> None:
            self._listeners.remove(token)
            if not self._listeners:
                await self._stop()

        return unsubscribe

    def announce_available(self) -> None:
        """Tell this storage's listeners that jobs can be claimed (no round trip)."""
        self._listeners.announce_available()

    async def _poll(self) -> None:
        # `_stop` forgets the task before cancelling it: leave even if a cancellation
        # is swallowed on the way.
        failing = False
        while self._task is asyncio.current_task():
            self._wake.clear()
            try:
                await self._read_new()
            except Exception as error:
                # Once per run of failures, not once per poll interval.
                if not failing:
                    logger.warning(
                        "reading the events of queue %r failed: %s; trying again every poll",
                        self._queue_name,
                        error,
                        exc_info=not isinstance(error, StorageError),
                    )
                failing = True
            else:
                if failing:
                    logger.warning("reading the events of queue %r works again", self._queue_name)
                failing = False
            # asyncio.timeout, not wait_for: wait_for drops a cancellation that
            # arrives as the event is set (Python 3.11).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll_interval):
                    await self._wake.wait()

    async def _read_new(self) -> None:
        async with self._reading:
            version = await self._database.value(sql.DATA_VERSION)
            if version == self._data_version and not self._own_write:
                return
            self._data_version, self._own_write = version, False
            rows = await self._database.rows(
                sql.EVENTS_AFTER, {"after": self._position, "queue_name": self._queue_name}
            )
            for event_id, payload in rows:
                self._position = max(self._position, event_id)
                if payload is not None:
                    self._deliver_payload(event_id, payload)

    def _deliver_payload(self, event_id: int, payload: str) -> None:
        if not self._listeners.wants_text(payload):
            return  # no listener takes it: not decoded
        try:
            event = JobEvent.from_json(_json.loads(payload))
        except (ValueError, KeyError, TypeError, RecursionError):
            logger.warning("skipping unreadable event %s of queue %r", event_id, self._queue_name)
            return
        self._listeners.deliver(event, event_id)

    async def _stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def close(self) -> None:
        """Drop every listener and stop polling."""
        self._listeners.clear()
        await self._stop()
