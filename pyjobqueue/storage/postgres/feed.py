"""The PostgreSQL change feed: an events log, and LISTEN/NOTIFY on one channel per queue.

Every job event is a row of `pyjobqueue_events`, written by the statement that makes
the change, and a notification carries it (or its id, when too large) to listening
storages. A storage whose LISTEN connection dropped reads what it missed from the log
when it is back (each event once, by id, in order), so a database restart loses no
event; the log keeps events for STORED_EVENT_RETENTION_SECONDS. "Job available" hints
only speed things up: polling stays the fallback. See docs/postgres.md.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import json
import logging
import random
from typing import Any

from ... import _json
from ...events import JobEvent
from ..feed import EventListener, EventNames, Listeners, Unsubscribe
from . import queries as sql
from .connection import Database
from .queries import EVENT_TAG, HINT_TAG, LOGGED_TAG, STORED_TAG

logger = logging.getLogger(__name__)

STORED_EVENT_RETENTION_SECONDS = 300.0
PRUNE_EVERY_HEALTH_CHECKS = 6  # the LISTEN connection prunes the log about once a minute
# Events that commit out of id order (ids are handed out before commit) are caught by
# replaying this many ids before the last one seen, each delivered once.
REPLAY_MARGIN = 10_000
SEEN_KEPT = 50_000  # ids of delivered events remembered, to deliver each only once
# The LISTEN connection: a liveness query this often (a silent network drop is not
# noticed otherwise), and reconnect attempts backing off between these bounds.
HEALTH_CHECK_SECONDS = 10.0
HEALTH_CHECK_TIMEOUT_SECONDS = 5.0
RECONNECT_MIN_SECONDS = 0.1
RECONNECT_MAX_SECONDS = 5.0
STOP_GRACE_SECONDS = 1.0


def channel_for(queue_name: str) -> str:
    """The NOTIFY channel of a queue: a hash, so any queue name makes a valid identifier."""
    return "pyjobqueue_" + hashlib.sha256(queue_name.encode("utf-8")).hexdigest()[:40]


def event_json(event: JobEvent) -> str:
    """The JSON of `event` as the events log keeps it."""
    return _json.dumps(event.to_json())


async def log_event(connection: Any, queue_name: str, channel: str, event: JobEvent) -> None:
    """Log `event` of `queue_name` and notify `channel` of it, in one statement, on
    `connection`: the pool's `Database`, or a connection in the caller's transaction."""
    await connection.execute(
        sql.INSERT_EVENT, queue_name, event.job_id, event_json(event), channel, event.name
    )


def logged_events(payload: str) -> list[JobEvent]:
    """The events of a row of the log: one event's JSON, or an array of them (a claim's
    or a batch of outcomes', see `queries`)."""
    data = json.loads(payload)
    if isinstance(data, list):
        return [JobEvent.from_json(item) for item in data]
    return [JobEvent.from_json(data)]


class EventFeed:
    """The LISTEN side of a queue storage: one connection shared by its listeners.

    The connection comes from the storage's pool and is replaced, with backoff, when
    it drops or stops answering; while it is down nothing is delivered and nothing
    breaks. After a reconnect listeners get a `job_available` hint, since whatever
    was announced in between is lost and idle workers should look for it.
    """

    def __init__(self, database: Database, queue_name: str, channel: str) -> None:
        self._database = database
        self._queue_name = queue_name
        self._channel = channel
        self._listeners = Listeners(queue_name)
        self._lock = asyncio.Lock()
        self._inbox: asyncio.Queue[str] = asyncio.Queue()
        self._nudge = asyncio.Event()  # set when the connection drops or the feed stops
        self._stopping = False
        self._supervisor: asyncio.Task[None] | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        # The log ids delivered (oldest first), the highest, and the last id before the
        # feed started (it delivers only what comes after).
        self._seen: collections.OrderedDict[int, None] = collections.OrderedDict()
        self._high = 0
        self._start_id = 0
        # While a reconnected feed replays the log, notifications wait here.
        self._held: list[str] | None = None

    async def publish(self, event: JobEvent) -> None:
        """Log `event` and notify the queue's channel of it, in one statement."""
        await log_event(self._database, self._queue_name, self._channel, event)

    def announce_available(self) -> None:
        """Hint this process's listeners (writes notify every process themselves)."""
        self._listeners.announce_available()

    async def subscribe(self, listener: EventListener, names: EventNames = None) -> Unsubscribe:
        """Add a listener (of `names`), starting the LISTEN connection for the first one."""
        self._database.require()
        async with self._lock:
            if self._supervisor is None:
                await self._start()
            token = self._listeners.add(listener, names=names)

        async def unsubscribe() -> None:
            async with self._lock:
                self._listeners.remove(token)
                if not self._listeners:
                    await self._stop()

        return unsubscribe

    async def close(self) -> None:
        """Drop every listener and the connection."""
        async with self._lock:
            self._listeners.clear()
            await self._stop()

    async def _start(self) -> None:
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._stopping = False
        self._nudge.clear()
        self._inbox = asyncio.Queue()
        self._supervisor = asyncio.create_task(self._supervise(ready), name="pyjobqueue listen")
        self._dispatcher = asyncio.create_task(self._dispatch(), name="pyjobqueue dispatch")
        try:
            await ready
        except BaseException as error:
            await self._stop()
            explained = self._database.explain(error)
            if explained is not None:
                raise explained from None
            raise

    async def _stop(self) -> None:
        self._stopping = True
        self._nudge.set()
        supervisor, self._supervisor = self._supervisor, None
        dispatcher, self._dispatcher = self._dispatcher, None
        if supervisor is not None:
            # It notices the stop at once, unless it is stuck connecting to a dead server.
            _done, pending = await asyncio.wait({supervisor}, timeout=STOP_GRACE_SECONDS)
            for task in pending:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if dispatcher is not None:
            dispatcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await dispatcher

    # -- the connection ---------------------------------------------------------------------

    async def _supervise(self, ready: asyncio.Future[None]) -> None:
        delay = RECONNECT_MIN_SECONDS
        while not self._stopping:
            first = not ready.done()
            try:
                connection = await self._database.require().acquire()
            except Exception as error:
                if first:
                    ready.set_exception(error)
                    return
                logger.warning("queue %r: LISTEN reconnect failed: %s", self._queue_name, error)
            else:
                if await self._listen(connection, ready):
                    delay = RECONNECT_MIN_SECONDS
                elif first:
                    return  # subscribe() raises the error
            if not self._stopping:
                await self._pause(delay)
                delay = min(delay * 2, RECONNECT_MAX_SECONDS)

    async def _listen(self, connection: Any, ready: asyncio.Future[None]) -> bool:
        """LISTEN on a connection until it drops or the feed stops; whether LISTEN worked."""
        self._nudge.clear()

        def dropped(_connection: Any) -> None:
            self._nudge.set()

        connection.add_termination_listener(dropped)
        listened = False
        try:
            reconnected = ready.done()
            if reconnected:
                self._held = []  # notifications wait until the replay is queued
            await connection.add_listener(self._channel, self._notified)
            listened = True
            if reconnected:
                await self._replay(connection)  # what was logged meanwhile, in id order
                self._inbox.put_nowait(HINT_TAG)  # and look for missed work
            else:
                # Everything notified from now on committed after LISTEN: it is new. The
                # log's last id (read on another connection) is where a replay starts.
                self._start_id = self._high = await self._database.fetchval(sql.LAST_EVENT_ID)
                self._seen.clear()
                ready.set_result(None)
            await self._hold(connection)
        except Exception as error:
            if not ready.done():
                ready.set_exception(error)
            else:
                logger.warning("queue %r: LISTEN connection failed: %s", self._queue_name, error)
        finally:
            held, self._held = self._held, None  # a replay cut short holds nothing back
            for payload in held or []:
                self._inbox.put_nowait(payload)
            if not self._closed(connection):
                connection.remove_termination_listener(dropped)
            await self._release(connection, graceful=self._stopping)
        return listened

    async def _replay(self, connection: Any) -> None:
        """Queue the events logged while LISTEN was down ahead of those that came since."""
        after = max(self._start_id, self._high - REPLAY_MARGIN)
        try:
            rows = await connection.fetch(sql.EVENTS_AFTER, self._queue_name, after)
            for row in rows:
                if row["id"] not in self._seen:
                    self._inbox.put_nowait(f"{LOGGED_TAG}{row['id']}:{row['payload']}")
        finally:
            held, self._held = self._held or [], None
            for payload in held:  # what arrived during the replay comes after it
                self._inbox.put_nowait(payload)

    async def _hold(self, connection: Any) -> None:
        """Return when the connection dropped, fails a health check, or the feed stops."""
        checks = 0
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._nudge.wait(), HEALTH_CHECK_SECONDS)
            if self._stopping or self._closed(connection):
                return
            self._nudge.clear()  # a stale drop notice of an earlier connection
            checks += 1
            if checks % PRUNE_EVERY_HEALTH_CHECKS == 0:
                check = connection.execute(sql.PRUNE_EVENTS, STORED_EVENT_RETENTION_SECONDS)
            else:
                check = connection.execute(sql.HEALTH_CHECK)
            await asyncio.wait_for(check, HEALTH_CHECK_TIMEOUT_SECONDS)

    def _closed(self, connection: Any) -> bool:
        # asyncpg hands a dropped connection back to its pool by itself, after which
        # the proxy we hold refuses every call.
        try:
            return bool(connection.is_closed())
        except self._database.driver.InterfaceError:
            return True

    async def _release(self, connection: Any, *, graceful: bool) -> None:
        pool = self._database.pool
        if graceful and not self._closed(connection):
            try:
                await asyncio.wait_for(
                    connection.remove_listener(self._channel, self._notified),
                    HEALTH_CHECK_TIMEOUT_SECONDS,
                )
                await asyncio.wait_for(pool.release(connection), HEALTH_CHECK_TIMEOUT_SECONDS)
                return
            except Exception as error:
                logger.warning("queue %r: could not release LISTEN: %s", self._queue_name, error)
        if not self._closed(connection):
            connection.terminate()  # broken or unanswering: never hand it back as it is
        with contextlib.suppress(Exception):
            await pool.release(connection)  # a no-op once asyncpg took it back itself

    async def _pause(self, delay: float) -> None:
        if self._stopping:
            return
        self._nudge.clear()  # a late drop notice must not cut the pause short
        jittered = delay * random.uniform(0.8, 1.2)  # servers restarting together spread out
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._nudge.wait(), jittered)

    def _notified(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        if self._held is not None:
            self._held.append(payload)
        else:
            self._inbox.put_nowait(payload)

    # -- delivering -----------------------------------------------------------------------------

    async def _dispatch(self) -> None:
        # One at a time, in arrival order: a stored event is fetched before the next.
        while True:
            payload = await self._inbox.get()
            try:
                event_id, events = await self._decode(payload)
            except Exception:
                logger.exception("queue %r: could not read a notification", self._queue_name)
                continue
            if event_id is not None and not self._first_time(event_id):
                continue  # replayed and notified too: delivered once
            for event in events:
                if event.queue_name == self._queue_name:
                    self._listeners.deliver(event)

    def _first_time(self, event_id: int) -> bool:
        """Record a logged event's delivery; False when it was delivered already."""
        if event_id in self._seen:
            return False
        self._seen[event_id] = None
        if len(self._seen) > SEEN_KEPT:
            self._seen.popitem(last=False)
        self._high = max(self._high, event_id)
        return True

    async def _decode(self, payload: str) -> tuple[int | None, list[JobEvent]]:
        """The log id (None for what is not logged) and the events of a notification."""
        tag, data = payload[:1], payload[1:]
        if tag == HINT_TAG:
            return None, [JobEvent.job_available(self._queue_name)]
        # What no listener takes is not decoded, nor fetched when it was too large.
        if tag == LOGGED_TAG:
            event_id, _, text = data.partition(":")
            return int(event_id), logged_events(text) if self._listeners.wants_text(text) else []
        if tag == STORED_TAG:
            event_id, _, names = data.partition(":")
            if names and not self._listeners.wants_names(names.split(",")):
                return int(event_id), []
            stored = await self._database.fetchval(sql.FETCH_EVENT, int(event_id), self._queue_name)
            return int(event_id), [] if stored is None else logged_events(stored)
        if tag == EVENT_TAG:
            return None, [JobEvent.from_json(json.loads(data))]
        logger.warning("queue %r: unknown notification %.40r", self._queue_name, payload)
        return None, []
