"""The IndexedDB change feed: an events log numbered per queue, and a BroadcastChannel.

Every job event is a record of the `events` store, numbered 1, 2, 3... per queue in
the same readwrite transaction as the change it announces (`log_events`), and then
posted to the other tabs with its number. A tab delivers a queue's events strictly in
that order: a number that skips ahead (a message it did not get: the tab was frozen,
the page asleep) makes it read the missing ones from the log first, and it also looks
at the log every CATCH_UP_SECONDS, for the last events before a sleep. The log keeps
events for EVENT_RETENTION. "Job available" hints are posted, not logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Generator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from ..._json import dumps, loads
from ...browser._ffi import JsObject, js_global, js_to_json, json_to_js
from ...browser.broadcast import BroadcastFeed, channel_name
from ...events import JobEvent
from ..feed import EventListener, EventNames, Listeners, Unsubscribe
from .codec import AFTER_ALL, encode_time, key_range
from .connection import Body, Database
from .migrations import EVENTS, SEQUENCES

logger = logging.getLogger(__name__)

CATCH_UP_SECONDS = 2.0
EVENT_RETENTION = timedelta(minutes=5)
PRUNE_EVERY_SECONDS = 60.0
LOG_STORES = (EVENTS, SEQUENCES)  # what a transaction that logs events must also span

Logged = list[tuple[int, JobEvent]]


def log_events(
    transaction: JsObject, queue_name: str, events: Sequence[JobEvent], prune: bool = False
) -> Generator[JsObject, Any, Logged]:
    """Inside a readwrite transaction over LOG_STORES: number and store `events`."""
    if not events:
        return []
    sequences = transaction.objectStore(SEQUENCES)
    record = js_to_json((yield sequences.get(queue_name)))
    last = 0 if record is None else int(record["last"])
    store = transaction.objectStore(EVENTS)
    now = datetime.now(UTC)
    logged: Logged = []
    for event in events:
        last += 1
        payload = dumps(event.to_json())
        entry = {"queue": queue_name, "seq": last, "at": encode_time(now), "payload": payload}
        store.add(json_to_js(entry))
        logged.append((last, event))
    sequences.put(json_to_js({"queue": queue_name, "last": last}))
    if prune:
        old = js_global().IDBKeyRange.upperBound(encode_time(now - EVENT_RETENTION), True)
        for key in js_to_json((yield store.index("at").getAllKeys(old))) or []:
            store.delete(json_to_js(key))
    return logged


class SequencedDelivery:
    """Hands a queue's numbered events to `deliver` once each, in number order."""

    def __init__(
        self,
        deliver: Callable[[JobEvent], None],
        read_after: Callable[[int], Awaitable[Logged]],
    ) -> None:
        self._deliver = deliver
        self._read_after = read_after
        self.last = 0
        self._waiting: dict[int, JobEvent] = {}
        self._reading: asyncio.Task[None] | None = None
        self._failing = False

    def start_at(self, last: int) -> None:
        """Deliver the events numbered after `last` from now on."""
        self.last = last
        self._waiting.clear()

    def offer(self, seq: int, event: JobEvent) -> None:
        """An event arrived (from this tab or another): deliver it in its turn."""
        if seq <= self.last or seq in self._waiting:
            return  # delivered already
        self._waiting[seq] = event
        if self._reading is None:
            self._deliver_ready()
        if self._waiting:
            self.catch_up()  # a gap: read the missing ones from the log

    def catch_up(self) -> None:
        """Read the log after the last delivered event (once at a time)."""
        if self._reading is None:
            self._reading = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        try:
            read = await self._read_after(self.last)
        except Exception as error:
            # Once per run of failures; the next catch-up tries again.
            if not self._failing:
                logger.warning("could not read the events log (will try again): %s", error)
            self._failing = True
            return
        finally:
            self._reading = None
        if self._failing:
            logger.warning("reading the events log works again")
        self._failing = False
        for seq, event in read:
            self._waiting.setdefault(seq, event)
        if read and read[0][0] > self.last + 1:
            # The log itself starts after a gap (IndexedDB commits in number order, so
            # nothing below will come): those events were pruned. Go on after them.
            logger.warning(
                "events %s to %s were pruned before this tab read them",
                self.last + 1,
                read[0][0] - 1,
            )
            self.last = read[0][0] - 1
        self._deliver_ready()

    def _deliver_ready(self) -> None:
        while self.last + 1 in self._waiting:
            self.last += 1
            self._deliver(self._waiting.pop(self.last))

    def stop(self) -> None:
        """Forget what is waiting and stop reading."""
        self._waiting.clear()
        if self._reading is not None:
            self._reading.cancel()
            self._reading = None


class EventFeed:
    """Logs and posts this tab's events; delivers every tab's events in order."""

    def __init__(self, database: Database, queue_name: str) -> None:
        self._database = database
        self._queue_name = queue_name
        self._channel = BroadcastFeed(channel_name(database.database_name, queue_name))
        self._listeners = Listeners(queue_name)
        self._sequence = SequencedDelivery(self._listeners.deliver, self._read_after)
        self._poller: asyncio.Task[None] | None = None
        self._starting = asyncio.Lock()
        self._next_prune = 0.0

    def prune_due(self) -> bool:
        """Whether the next transaction that logs events should also prune old ones."""
        if time.monotonic() < self._next_prune:
            return False
        self._next_prune = time.monotonic() + PRUNE_EVERY_SECONDS
        return True

    async def publish(self, event: JobEvent) -> None:
        """Log `event` (its own transaction) and tell every tab."""
        prune = self.prune_due()

        def body(transaction: JsObject) -> Body[Logged]:
            return (yield from log_events(transaction, self._queue_name, [event], prune))

        self.announce(await self._database.run(LOG_STORES, "readwrite", body))

    def announce(self, logged: Logged) -> None:
        """Events a transaction just logged: tell the other tabs, and this one's listeners."""
        for seq, event in logged:
            self._channel.post({"seq": seq, "event": event.to_json()})
            if self._listeners:
                self._sequence.offer(seq, event)

    def announce_available(self) -> None:
        """Wake idle workers in every tab (a hint: a failure is logged, not raised)."""
        hint = JobEvent.job_available(self._queue_name)
        try:
            self._channel.post({"event": hint.to_json()})
        except Exception:
            logger.exception("could not announce new jobs on queue %s", self._queue_name)
        self._listeners.deliver(hint)

    async def subscribe(self, listener: EventListener, names: EventNames = None) -> Unsubscribe:
        """Deliver every event (of `names`) from now on to `listener`."""
        async with self._starting:  # two first subscribers at once start one poller
            if not self._listeners:
                self._sequence.start_at(await self._last_seq())
                self._channel.listen(self._receive)
                self._poller = asyncio.ensure_future(self._poll())
            token = self._listeners.add(listener, names=names)

        async def unsubscribe() -> None:
            self._listeners.remove(token)
            if not self._listeners:
                self._stop()

        return unsubscribe

    def _receive(self, message: dict[str, Any]) -> None:
        try:
            event = JobEvent.from_json(message["event"])
            seq = message.get("seq")
        except (TypeError, ValueError, KeyError):
            logger.warning("ignoring a malformed event on queue %r", self._queue_name)
            return
        if event.queue_name != self._queue_name:
            return
        if isinstance(seq, int):
            self._sequence.offer(seq, event)
        else:
            self._listeners.deliver(event)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(CATCH_UP_SECONDS)
            self._sequence.catch_up()

    async def _last_seq(self) -> int:
        def body(transaction: JsObject) -> Body[int]:
            record = js_to_json((yield transaction.objectStore(SEQUENCES).get(self._queue_name)))
            return 0 if record is None else int(record["last"])

        return await self._database.run([SEQUENCES], "readonly", body)

    async def _read_after(self, last: int) -> Logged:
        after = key_range([self._queue_name, last + 1], [self._queue_name, AFTER_ALL])

        def body(transaction: JsObject) -> Body[list[dict[str, Any]]]:
            return js_to_json((yield transaction.objectStore(EVENTS).getAll(after))) or []

        records = await self._database.run([EVENTS], "readonly", body)
        logged: Logged = []
        for record in records:
            seq = int(record["seq"])
            try:
                logged.append((seq, JobEvent.from_json(loads(record["payload"]))))
            except (TypeError, ValueError, KeyError, RecursionError):
                # Unreadable: deliver the rest in order, without it.
                logger.warning("skipping unreadable event %s of queue %r", seq, self._queue_name)
                logged.append((seq, JobEvent.job_available(self._queue_name)))
        return logged

    def _stop(self) -> None:
        self._channel.stop_listening()
        self._sequence.stop()
        if self._poller is not None:
            self._poller.cancel()
            self._poller = None

    async def close(self) -> None:
        """Drop every listener and close the channel."""
        self._listeners.clear()
        self._stop()
        with contextlib.suppress(Exception):
            self._channel.close()
