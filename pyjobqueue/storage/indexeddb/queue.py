"""The IndexedDB queue: job records changed by `pyjobqueue.transitions`, one transaction each.

Runs under Pyodide only (through its JavaScript FFI); constructing it on CPython raises
ImportError. Every operation is one IndexedDB transaction and every claim or state
change one readwrite transaction, which IndexedDB serialises across the tabs of an
origin: two tabs never claim the same job. A transaction body reads records, applies
the pure transition to the job they hold and writes them back, all inside the request
callbacks (see `pyjobqueue.browser._idb`). docs/browser.md describes the schema.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from ... import transitions
from ..._json import dumps
from ...browser._ffi import JsObject, is_missing, js_array, js_global, js_to_json, json_to_js
from ...events import JobEvent
from ...job import FINISHED_STATUSES, Job, JobStatus
from ...presence import ServerInfo
from ...schedules import ScheduleState, Step, decide_step
from ..base import Added, check_queue_name
from ..core import (
    NO_CALLER_TRANSACTIONS,
    BaseQueueStorage,
    Finish,
    dependency_failed_events,
    dependency_ids,
    start_events,
    with_dependencies,
)
from ..records import schedule_from_columns, server_from_columns
from .codec import (
    AFTER_ALL,
    decode_time,
    encode_optional_time,
    encode_time,
    job_to_record,
    key_range,
    kind_key,
    record_to_job,
)
from .connection import DEFAULT_DATABASE, Body, Database, is_transient
from .feed import LOG_STORES, EventFeed, Logged, log_events
from .migrations import JOBS, QUEUES, SCHEDULES, SERVERS

T = TypeVar("T")
# What a transition does to one job: (whether to store it, what the operation returns).
Change = Callable[[Job[Any, Any]], tuple[bool, T]]
# Where a claim looks for jobs: an index and the key prefix of its PENDING jobs, which
# are in claim order under it (the prefix, then rank, run_after, then the id).
Lane = tuple[str, list[Any]]
# Records a filtered page (status, kind) reads per request where the browser can read
# several at once (getAllRecords).
PAGE_BATCH = 200


class _LaneCursor:
    """A claim's key cursor on one lane, standing on the first job of the next rank
    (priority) that has a job due; `rank` is None when no rank is left.

    The jobs of one rank are in run_after order, so when the first one is not due, none
    of its rank is: the cursor jumps past the rank instead of stepping through them.
    """

    def __init__(self, index: JsObject, prefix: list[Any], due: str) -> None:
        self.index, self.prefix, self.due = index, prefix, due
        self.request: JsObject = None
        self.cursor: JsObject = None
        self.rank: int | None = None

    def next_rank(self) -> Generator[JsObject, Any, None]:
        """Move on to the next rank with a job due (the first one, the first time)."""
        if self.request is None:
            # Opened only now: a request that succeeds before it is yielded is never seen.
            lane = key_range(self.prefix, [*self.prefix, AFTER_ALL])
            self.request = self.index.openKeyCursor(lane)
        else:
            self.cursor.continue_(js_array([*self.prefix, self.rank, AFTER_ALL]))
        self.cursor = yield self.request
        while self.cursor is not None:
            *_, rank, run_after = js_to_json(self.cursor.key)
            if run_after <= self.due:
                self.rank = rank
                return
            self.cursor.continue_(js_array([*self.prefix, rank, AFTER_ALL]))
            self.cursor = yield self.request
        self.rank = None

    def due_jobs(self, count: int) -> JsObject:
        """A request for the first `count` due jobs of the current rank, in claim order."""
        rank = [*self.prefix, self.rank]
        return self.index.getAll(key_range(rank, [*rank, self.due]), count)


class IndexedDbQueueEngine:
    """The jobs of one queue in the `jobs` object store."""

    events_with_writes = True
    # Not yet: in Chromium, outcomes written together stalled the queue for a lease
    # (30 s) after a limiter refused starts (test_concurrency_limiter_caps_running_jobs
    # right after the rest of the queue contract); each outcome has its transaction.
    groups_finishes = False
    hints_with_writes = False
    supports_push = True
    shared_across_processes = True

    def __init__(self, database: Database, queue_name: str) -> None:
        self.queue_name = queue_name
        self._database = database
        self.feed = EventFeed(database, queue_name)

    async def open(self) -> None:
        """Open the database, creating or upgrading its object stores."""
        await self._database.open()

    async def close(self) -> None:
        """Close the connection."""
        self._database.close()

    def is_transient(self, error: BaseException) -> bool:
        """See `connection.is_transient`."""
        return is_transient(error)

    # -- helpers ----------------------------------------------------------------

    def _status_range(self, status: JobStatus | None) -> JsObject:
        prefix = [self.queue_name] if status is None else [self.queue_name, status.value]
        return key_range(prefix, [*prefix, AFTER_ALL])

    def _selection(self, status: JobStatus | None, kind: str | None) -> tuple[str, JsObject]:
        """The index and key range of the jobs with `status` and `kind` (None: any), in
        claim order for one status."""
        if kind is None:
            return "claim", self._status_range(status)
        prefix = [self.queue_name, kind]
        if status is not None:
            prefix.append(status.value)
        return "kind", key_range(prefix, [*prefix, AFTER_ALL])

    def _lanes(self, kinds: frozenset[str] | None) -> list[Lane]:
        """Where a claim of a server running `kinds` finds its jobs: all PENDING jobs of
        the claim index, or those of each of its kinds and those without a kind."""
        pending = JobStatus.PENDING.value
        if kinds is None:
            return [("claim", [self.queue_name, pending])]
        keys = [kind_key(None), *sorted(kinds)]
        return [("kind", [self.queue_name, key, pending]) for key in keys]

    def _key_range(self, value: str) -> JsObject:
        """The key [queue, value] alone (a run id, a unique key)."""
        return key_range([self.queue_name, value], [self.queue_name, value])

    def _record(self, job: Job[Any, Any]) -> JsObject:
        return json_to_js(job_to_record(job, self.queue_name))

    def _own_job(
        self, store: JsObject, job_id: int
    ) -> Generator[JsObject, Any, Job[Any, Any] | None]:
        """Inside a transaction over JOBS: the job with this id, if it is of this queue."""
        record = js_to_json((yield store.get(job_id)))
        if record is None or record["queue"] != self.queue_name:
            return None
        return record_to_job(record)

    async def _read(self, body: Callable[[JsObject], Body[T]]) -> T:
        return await self._database.run([JOBS], "readonly", body)

    async def _write(self, body: Callable[[JsObject], Body[T]]) -> T:
        return await self._database.run([JOBS], "readwrite", body)

    async def _records(self, index: str, index_range: JsObject) -> list[Job[Any, Any]]:
        def body(transaction: JsObject) -> Body[list[dict[str, Any]]]:
            found = transaction.objectStore(JOBS).index(index).getAll(index_range)
            return js_to_json((yield found)) or []

        return [record_to_job(record) for record in await self._read(body)]

    async def _change(self, job_id: int, change: Change[T], missing: T) -> T:
        """Read one job of this queue, let `change` edit it; store it when it says so."""

        def body(transaction: JsObject) -> Body[T]:
            store = transaction.objectStore(JOBS)
            job = yield from self._own_job(store, job_id)
            if job is None:
                return missing
            changed, result = change(job)
            if changed:
                store.put(self._record(job))
            return result

        return await self._write(body)

    # -- adding and reading -----------------------------------------------------

    async def insert(self, jobs: Sequence[Job[Any, Any]]) -> list[Added]:
        """Add the records whose unique key is free in one transaction (readwrite
        transactions over the jobs store run one at a time: nobody takes a key between
        the look-up and the add)."""
        if any(job.depends_on for job in jobs):
            return await self._insert_dependants(jobs)
        fresh = []
        for job in jobs:
            record = job.record()
            record.id = None
            # Validates everything before the transaction.
            key = record.unique_key if transitions.holds_unique_key(record) else None
            fresh.append((key, self._record(record)))
        keys = list(dict.fromkeys(key for key, _record in fresh if key is not None))

        def body(transaction: JsObject) -> Body[list[Added]]:
            store = transaction.objectStore(JOBS)
            # unique key -> its holder: a stored job's id, or the add request of the job
            # of this batch that takes it
            holders: dict[str, Any] = {}
            if keys:  # without unique keys, the adds are the whole transaction
                unique = store.index("unique")
                lookups = [unique.getKey(self._key_range(key)) for key in keys]
                yield lookups[-1]  # requests succeed in order: the last one means all
                for held, lookup in zip(keys, lookups, strict=True):
                    if not is_missing(lookup.result):
                        holders[held] = int(lookup.result)
            outcomes: list[tuple[Any, bool]] = []
            for key, record in fresh:
                if key is not None and key in holders:
                    outcomes.append((holders[key], False))
                    continue
                request = store.add(record)
                outcomes.append((request, True))
                if key is not None:
                    holders[key] = request
            adds = [request for request, created in outcomes if created]
            if adds:
                yield adds[-1]
            return [
                Added(holder if isinstance(holder, int) else int(holder.result), created)
                for holder, created in outcomes
            ]

        return await self._write(body)

    async def _insert_dependants(self, jobs: Sequence[Job[Any, Any]]) -> list[Added]:
        """Jobs that depend on others, in one transaction: their dependencies read,
        each job's status from `transitions.submit_waiting`, a job failed at once
        logged with its job_error, unique keys kept as `insert` keeps them."""
        for job in jobs:
            self._record(job)  # validates everything before the transaction
        wanted = dependency_ids(jobs)

        def body(transaction: JsObject) -> Body[tuple[list[Added], Logged]]:
            store = transaction.objectStore(JOBS)
            lookups = [store.get(job_id) for job_id in wanted]
            yield lookups[-1]  # requests succeed in order: the last one means all
            found = {}
            for job_id, lookup in zip(wanted, lookups, strict=True):
                stored = js_to_json(lookup.result)
                if stored is not None and stored["queue"] == self.queue_name:
                    found[job_id] = record_to_job(stored)
            added: list[Added] = []
            failed = []
            taken: dict[str, int] = {}  # a key an earlier job of this batch took -> its id
            for record, takes_key in with_dependencies(jobs, found):
                key = record.unique_key if takes_key else None
                if key is not None and key in taken:
                    added.append(Added(taken[key], False))
                    continue
                if key is not None:
                    holder = yield store.index("unique").getKey(self._key_range(key))
                    if not is_missing(holder):
                        added.append(Added(int(holder), False))
                        continue
                request = store.add(self._record(record))
                yield request
                record.id = int(request.result)
                added.append(Added(record.id, True))
                if key is not None:
                    taken[key] = record.id
                if record.status is JobStatus.FAILED:
                    failed.append(record)
            events = dependency_failed_events(self.queue_name, failed)
            return added, (yield from log_events(transaction, self.queue_name, events))

        added, logged = await self._database.run([JOBS, *LOG_STORES], "readwrite", body)
        self.feed.announce(logged)
        return added

    def _settle(
        self, transaction: JsObject, job: Job[Any, Any], now: datetime, deleted: bool = False
    ) -> Generator[JsObject, Any, list[JobEvent]]:
        """Inside a readwrite transaction over JOBS: apply `transitions.settle_dependants`
        to the records of the jobs that wait for `job`; the job_error events of those it
        failed (to log in the same transaction). Releases are announced."""
        store = transaction.objectStore(JOBS)
        index = store.index("dependants")
        seen: dict[int, Job[Any, Any]] = {}  # one object per job, however it is reached
        walk = transitions.settle_dependants(job, now, deleted)
        try:
            job_id = next(walk)
            while True:
                records = js_to_json((yield index.getAll(job_id))) or []
                dependants = []
                for record in records:
                    if record["queue"] == self.queue_name:
                        dependants.append(seen.setdefault(record["id"], record_to_job(record)))
                job_id = walk.send(dependants)
        except StopIteration as stop:
            settled: transitions.Settled = stop.value
        for changed in settled.changed:
            store.put(self._record(changed))
        if settled.released:
            self.feed.announce_available()
        return dependency_failed_events(self.queue_name, settled.failed)

    async def insert_in(self, connection: object, jobs: Sequence[Job[Any, Any]]) -> list[Added]:
        """No transactions of the caller to join here."""
        raise TypeError(NO_CALLER_TRANSACTIONS.format(storage="IndexedDbQueueStorage"))

    async def get(self, job_id: int) -> Job[Any, Any] | None:
        """The job, or None."""

        def body(transaction: JsObject) -> Body[dict[str, Any] | None]:
            record: dict[str, Any] | None = js_to_json(
                (yield transaction.objectStore(JOBS).get(job_id))
            )
            return record

        record = await self._read(body)
        if record is None or record["queue"] != self.queue_name:
            return None
        return record_to_job(record)

    async def peek(self, status: JobStatus, num: int, kind: str | None) -> list[Job[Any, Any]]:
        """Jobs with `status` (and `kind`) in claim order (the claim or kind index)."""
        index_name, index_range = self._selection(status, kind)

        def body(transaction: JsObject) -> Body[list[dict[str, Any]]]:
            index = transaction.objectStore(JOBS).index(index_name)
            return js_to_json((yield index.getAll(index_range, num))) or []

        return [record_to_job(record) for record in await self._read(body)]

    async def count(self, status: JobStatus | None, kind: str | None) -> int:
        """How many jobs have `status` and `kind`."""
        index_name, index_range = self._selection(status, kind)

        def body(transaction: JsObject) -> Body[int]:
            index = transaction.objectStore(JOBS).index(index_name)
            return int((yield index.count(index_range)))

        return await self._read(body)

    async def counts(self) -> dict[tuple[str | None, JobStatus], int]:
        """How many jobs there are of each (kind, status): one count per pair present,
        found by a key cursor on the kind index that jumps from pair to pair."""
        queue = self.queue_name

        def body(transaction: JsObject) -> Body[list[tuple[Any, str, JsObject]]]:
            index = transaction.objectStore(JOBS).index("kind")
            request = index.openKeyCursor(key_range([queue], [queue, AFTER_ALL]))
            found = []
            cursor = yield request
            while cursor is not None:
                _queue, key, status, *_ = js_to_json(cursor.key)
                pair = [queue, key, status]
                found.append((key, status, index.count(key_range(pair, [*pair, AFTER_ALL]))))
                cursor.continue_(js_array([*pair, AFTER_ALL]))
                cursor = yield request
            return found  # the counts came before the cursor's end: they are done

        return {
            (None if key == kind_key(None) else key, JobStatus(status)): int(request.result)
            for key, status, request in await self._read(body)
        }

    async def by_run_id(self, job_run_id: str) -> list[Job[Any, Any]]:
        """The jobs of a run."""
        return await self._records("run_id", self._key_range(job_run_id))

    async def completed_by_fingerprint(self, fingerprint: str) -> Job[Any, Any] | None:
        """The latest completed job with this fingerprint."""
        prefix = [self.queue_name, fingerprint, JobStatus.COMPLETED.value]
        index_range = key_range(prefix, [*prefix, AFTER_ALL])

        def body(transaction: JsObject) -> Body[dict[str, Any] | None]:
            index = transaction.objectStore(JOBS).index("fingerprint")
            # "prev": latest completed_at first, and the highest id among equal times.
            cursor = yield index.openCursor(index_range, "prev")
            return None if cursor is None else js_to_json(cursor.value)

        record = await self._read(body)
        return None if record is None else record_to_job(record)

    # -- claiming and running -----------------------------------------------------

    async def claim(
        self,
        worker_id: str,
        now: datetime,
        lease_until: datetime,
        limit: int,
        start_origin: str | None,
        kinds: frozenset[str] | None,
    ) -> list[Job[Any, Any]]:
        """Claim the first due jobs of the kinds run, unless the queue is paused (read
        in the same transaction)."""
        due = encode_time(now)
        lanes = self._lanes(kinds)
        prune = start_origin is not None and self.feed.prune_due()

        def body(transaction: JsObject) -> Body[tuple[list[Job[Any, Any]], Logged]]:
            if (yield from self._paused(transaction)):
                return [], []
            claimed = yield from self._claim_due(transaction, lanes, due, limit)
            for job in claimed:
                transitions.claim(job, worker_id, now, lease_until)
                transaction.objectStore(JOBS).put(self._record(job))
            if start_origin is None:
                return claimed, []
            starts = start_events(self.queue_name, claimed, now, start_origin)
            logged = yield from log_events(transaction, self.queue_name, starts, prune)
            return claimed, logged

        stores = [JOBS, QUEUES] if start_origin is None else [JOBS, QUEUES, *LOG_STORES]
        jobs, logged = await self._database.run(stores, "readwrite", body)
        self.feed.announce(logged)
        return jobs

    def _claim_due(
        self, transaction: JsObject, lanes: list[Lane], due: str, limit: int
    ) -> Generator[JsObject, Any, list[Job[Any, Any]]]:
        """The first `limit` jobs due at `due` in claim order, merged from the lanes: rank
        by rank, the due jobs of that rank from every lane that has some, by run_after
        and id."""
        store = transaction.objectStore(JOBS)
        cursors = [_LaneCursor(store.index(name), prefix, due) for name, prefix in lanes]
        for cursor in cursors:
            yield from cursor.next_rank()
        records: list[dict[str, Any]] = []
        while len(records) < limit:
            ranks = [cursor.rank for cursor in cursors if cursor.rank is not None]
            if not ranks:
                break
            best = min(ranks)
            at_rank = [cursor for cursor in cursors if cursor.rank == best]
            requests = [cursor.due_jobs(limit - len(records)) for cursor in at_rank]
            yield requests[-1]  # requests succeed in order: the last one means all
            found = [record for request in requests for record in js_to_json(request.result)]
            found.sort(key=lambda record: (record["run_after"], record["id"]))
            records += found[: limit - len(records)]
            if len(records) < limit:  # then these lanes have no more due jobs of this rank
                for cursor in at_rank:
                    yield from cursor.next_rank()
        return [record_to_job(record) for record in records]

    def _paused(self, transaction: JsObject) -> Generator[JsObject, Any, bool]:
        """Inside a transaction over QUEUES: whether the queue is paused."""
        record = js_to_json((yield transaction.objectStore(QUEUES).get(self.queue_name)))
        return bool(record is not None and record.get("paused"))

    async def renew_lease(
        self, job_id: int, worker_id: str, attempt: int, lease_until: datetime
    ) -> JobStatus | None:
        """Renew the lease of an attempt."""
        encode_time(lease_until)

        def change(job: Job[Any, Any]) -> tuple[bool, JobStatus | None]:
            if not transitions.is_attempt(job, worker_id, attempt):
                return False, None
            return True, transitions.renew_lease(job, lease_until)

        return await self._change(job_id, change, None)

    async def save_progress(
        self,
        job_id: int,
        worker_id: str,
        attempt: int,
        progress: float,
        message: str,
        details: dict[str, Any] | None,
    ) -> bool:
        """Save the progress of an attempt."""
        dumps(details)  # refuse what JSON cannot hold before touching the job

        def change(job: Job[Any, Any]) -> tuple[bool, bool]:
            if not transitions.is_attempt(job, worker_id, attempt):
                return False, False
            transitions.save_progress(job, progress, message, details)
            return True, True

        return await self._change(job_id, change, False)

    async def finish_all(self, finishes: Sequence[Finish]) -> list[bool]:
        """Apply outcomes to attempts, and log their events, in one transaction."""
        prune = any(finish.event is not None for finish in finishes) and self.feed.prune_due()

        def body(transaction: JsObject) -> Body[tuple[list[bool], Logged]]:
            store = transaction.objectStore(JOBS)
            applied: list[bool] = []
            events: list[JobEvent] = []
            for finish in finishes:
                job = yield from self._own_job(store, finish.job_id)
                if (
                    job is None
                    or not transitions.is_attempt(job, finish.worker_id, finish.attempt)
                    or not transitions.lease_expired(job, finish.lease_expired_before)
                ):
                    applied.append(False)
                    continue
                transitions.finish(job, finish.outcome)
                store.put(self._record(job))
                if finish.event is not None:
                    events.append(finish.event)
                if job.status in FINISHED_STATUSES:
                    events += yield from self._settle(transaction, job, finish.outcome.at)
                applied.append(True)
            return applied, (yield from log_events(transaction, self.queue_name, events, prune))

        stores = [JOBS, *LOG_STORES]
        applied, logged = await self._database.run(stores, "readwrite", body)
        self.feed.announce(logged)
        return applied

    # -- control ------------------------------------------------------------------

    async def record_server(self, server: ServerInfo, forget_before: datetime) -> None:
        """Put the heartbeat and forget long-expired ones, in one transaction."""
        record = {
            "queue": self.queue_name,
            "server_id": server.server_id,
            "host": server.host,
            "pid": server.pid,
            "kinds": list(server.kinds),
            "worker_count": server.worker_count,
            "started_at": encode_time(server.started_at),
            "last_seen": encode_time(server.last_seen),
            "expires_at": encode_time(server.expires_at),
            "paused": server.paused,
        }
        cutoff = encode_time(forget_before)
        index_range = key_range([self.queue_name], [self.queue_name, AFTER_ALL])

        def body(transaction: JsObject) -> Body[None]:
            servers = transaction.objectStore(SERVERS)
            servers.put(json_to_js(record))
            known = js_to_json((yield servers.getAll(index_range))) or []
            for old in known:
                if old["expires_at"] < cutoff:
                    servers.delete(js_array([self.queue_name, old["server_id"]]))

        await self._database.run([SERVERS], "readwrite", body)

    async def remove_server(self, server_id: str) -> None:
        """Delete the heartbeat."""

        def body(transaction: JsObject) -> Body[None]:
            transaction.objectStore(SERVERS).delete(js_array([self.queue_name, server_id]))
            yield from ()  # a body is a generator; this one waits for no result

        await self._database.run([SERVERS], "readwrite", body)

    async def servers(self) -> list[ServerInfo]:
        """Every heartbeat of the queue."""
        index_range = key_range([self.queue_name], [self.queue_name, AFTER_ALL])

        def body(transaction: JsObject) -> Body[list[dict[str, Any]]]:
            return js_to_json((yield transaction.objectStore(SERVERS).getAll(index_range))) or []

        return [
            server_from_columns(record, decode_time)
            for record in await self._database.run([SERVERS], "readonly", body)
        ]

    async def schedule_states(self) -> list[ScheduleState]:
        """Every schedule record of the queue."""
        index_range = key_range([self.queue_name], [self.queue_name, AFTER_ALL])

        def body(transaction: JsObject) -> Body[list[dict[str, Any]]]:
            found = transaction.objectStore(SCHEDULES).getAll(index_range)
            return js_to_json((yield found)) or []

        records = await self._database.run([SCHEDULES], "readonly", body)
        return [schedule_from_columns(record, decode_time) for record in records]

    async def advance_schedule(
        self, name: str, spec: str, due: datetime | None, next_tick: datetime, job: Job[Any, Any]
    ) -> int | None:
        """Read the schedule's record, apply `decide_step`, write it and add the tick's
        job, in one readwrite transaction (which IndexedDB runs alone across tabs)."""
        fresh = job.record()
        fresh.id = None
        record = self._record(fresh)  # validates the job before the transaction

        def body(transaction: JsObject) -> Body[int | None]:
            schedules = transaction.objectStore(SCHEDULES)
            stored = js_to_json((yield schedules.get(js_array([self.queue_name, name]))))
            state = None if stored is None else schedule_from_columns(stored, decode_time)
            step = decide_step(state, spec, due)
            if step is Step.NOTHING:
                return None
            last = due if step is Step.ENQUEUE else (None if state is None else state.last_tick)
            schedules.put(
                json_to_js(
                    {
                        "queue": self.queue_name,
                        "name": name,
                        "spec": spec,
                        "last_tick": encode_optional_time(last),
                        "next_tick": encode_time(next_tick),
                    }
                )
            )
            if step is Step.START:
                return None
            added = transaction.objectStore(JOBS).add(record)
            yield added
            return int(added.result)

        return await self._database.run([SCHEDULES, JOBS], "readwrite", body)

    async def set_paused(self, paused: bool, event: JobEvent | None) -> bool:
        """Store the queue's paused flag (its record in the queues store) and log
        `event` in the same transaction."""

        def body(transaction: JsObject) -> Body[tuple[bool, Logged]]:
            queues = transaction.objectStore(QUEUES)
            record = js_to_json((yield queues.get(self.queue_name))) or {"queue": self.queue_name}
            if bool(record.get("paused")) == paused:
                return False, []
            record.update(paused=paused, updated_at=encode_time(datetime.now(UTC)))
            queues.put(json_to_js(record))  # other per-queue fields are kept
            events = [] if event is None else [event]
            return True, (yield from log_events(transaction, self.queue_name, events))

        changed, logged = await self._database.run([QUEUES, *LOG_STORES], "readwrite", body)
        self.feed.announce(logged)
        return changed

    async def is_paused(self) -> bool:
        """Whether the queue is paused."""
        return await self._database.run([QUEUES], "readonly", self._paused)

    # -- user actions -------------------------------------------------------------

    async def _finish_by_hand(
        self, job_id: int, now: datetime, change: Callable[[Job[Any, Any]], T], missing: T
    ) -> T:
        """`_change` for a user's action that may finish a job (abort, disable): the
        jobs waiting on it are settled, and their events logged, in the same
        transaction."""

        def body(transaction: JsObject) -> Body[tuple[T, Logged]]:
            store = transaction.objectStore(JOBS)
            job = yield from self._own_job(store, job_id)
            if job is None:
                return missing, []
            result = change(job)
            if not result:
                return result, []
            store.put(self._record(job))
            events = yield from self._settle(transaction, job, now)
            return result, (yield from log_events(transaction, self.queue_name, events))

        result, logged = await self._database.run([JOBS, *LOG_STORES], "readwrite", body)
        self.feed.announce(logged)
        return result

    async def abort(self, job_id: int, now: datetime) -> JobStatus | None:
        """Abort one job."""
        return await self._finish_by_hand(
            job_id, now, lambda job: transitions.abort(job, now), None
        )

    async def abort_run(self, job_run_id: str, now: datetime) -> list[tuple[int, JobStatus]]:
        """Abort the jobs of a run in one transaction."""
        index_range = self._key_range(job_run_id)

        def body(transaction: JsObject) -> Body[tuple[list[tuple[int, JobStatus]], Logged]]:
            store = transaction.objectStore(JOBS)
            records = js_to_json((yield store.index("run_id").getAll(index_range))) or []
            changed = []
            aborted = []
            for record in records:
                job = record_to_job(record)
                status = transitions.abort(job, now)
                if status is not None:
                    store.put(self._record(job))
                    changed.append((int(record["id"]), status))
                    aborted.append(job)
            # Then the jobs waiting on them (those of the run are aborted already).
            events: list[JobEvent] = []
            for job in aborted:
                events += yield from self._settle(transaction, job, now)
            return changed, (yield from log_events(transaction, self.queue_name, events))

        changed, logged = await self._database.run([JOBS, *LOG_STORES], "readwrite", body)
        self.feed.announce(logged)
        return changed

    async def disable(self, job_id: int, now: datetime) -> bool:
        """Disable a job that has not started."""
        return await self._finish_by_hand(
            job_id, now, lambda job: transitions.disable(job, now), False
        )

    async def retry(self, job_id: int, now: datetime) -> bool:
        """Run a finished job again, unless another job took its unique key meanwhile."""

        def body(transaction: JsObject) -> Body[bool]:
            store = transaction.objectStore(JOBS)
            job = yield from self._own_job(store, job_id)
            if job is None:
                return False
            holder = None
            if job.unique_key is not None:
                found = yield store.index("unique").getKey(self._key_range(job.unique_key))
                holder = None if found is None else int(found)
            completed = True
            for dependency in job.depends_on:
                stored = js_to_json((yield store.get(dependency)))
                completed = completed and stored is not None and stored["status"] == "COMPLETED"
            if not transitions.retry(job, now, holder not in (None, job_id), completed):
                return False
            store.put(self._record(job))
            return True

        return await self._write(body)

    # -- maintenance ----------------------------------------------------------------

    async def expired_leases(self, now: datetime) -> list[Job[Any, Any]]:
        """The running jobs whose lease expired (the lease index holds running jobs)."""
        index_range = key_range([self.queue_name], [self.queue_name, encode_time(now)], True)
        jobs = await self._records("lease", index_range)
        return [job for job in jobs if transitions.lease_has_expired(job, now)]

    async def delete_finished(
        self, status: JobStatus, completed_before: datetime, limit: int
    ) -> int:
        """Delete old finished jobs, up to `limit` (a key cursor on the finished index)."""
        prefix = [self.queue_name, status.value]
        index_range = key_range(prefix, [*prefix, encode_time(completed_before)], True)

        def body(transaction: JsObject) -> Body[int]:
            store = transaction.objectStore(JOBS)
            dependants = store.index("dependants")
            request = store.index("finished").openKeyCursor(index_range)
            cursor = yield request
            deleted = 0
            while cursor is not None and deleted < limit:
                # A job some unfinished job depends on stays (that one reads its output):
                # the lookups of as many jobs as may still go, answered before the cursor.
                lookups: list[tuple[Any, JsObject]] = []
                while cursor is not None and len(lookups) < limit - deleted:
                    key = cursor.primaryKey
                    lookups.append((key, dependants.getAll(key)))
                    cursor.continue_()
                    cursor = yield request
                for key, lookup in lookups:
                    waiting = js_to_json(lookup.result) or []
                    if any(
                        JobStatus(entry["status"]) not in FINISHED_STATUSES for entry in waiting
                    ):
                        continue
                    store.delete(key)
                    deleted += 1
            return deleted

        return await self._write(body)

    async def _delete_keys(self, index_name: str, index_range: JsObject) -> int:
        def body(transaction: JsObject) -> Body[int]:
            store = transaction.objectStore(JOBS)
            keys = js_to_json((yield store.index(index_name).getAllKeys(index_range))) or []
            for key in keys:
                store.delete(key)
            return len(keys)

        return await self._write(body)

    async def delete(self, job_id: int) -> bool:
        """Delete one job (an unfinished one fails the jobs that wait for it)."""

        def body(transaction: JsObject) -> Body[tuple[bool, Logged]]:
            store = transaction.objectStore(JOBS)
            job = yield from self._own_job(store, job_id)
            if job is None:
                return False, []
            store.delete(job_id)
            events = yield from self._settle(transaction, job, datetime.now(UTC), True)
            return True, (yield from log_events(transaction, self.queue_name, events))

        deleted, logged = await self._database.run([JOBS, *LOG_STORES], "readwrite", body)
        self.feed.announce(logged)
        return deleted

    async def delete_all(self) -> None:
        """Delete every job of the queue."""
        await self._delete_keys("claim", self._status_range(None))

    async def page(
        self, status: JobStatus | None, kind: str | None, before_id: int, limit: int
    ) -> list[Job[Any, Any]]:
        """Jobs newest first, below `before_id`: the store read backward from that key."""
        queue = self.queue_name
        # Keys here are JS numbers, which autoIncrement keeps below 2**53: a bound past
        # that (the core's open one) is no bound, and a number that large is no key.
        upper = js_global().IDBKeyRange.upperBound
        bound = upper(before_id, True) if before_id < 2**53 else None

        def matches(record: dict[str, Any]) -> bool:
            return (
                record["queue"] == queue
                and (status is None or record["status"] == status.value)
                and (kind is None or record.get("kind") == kind)
            )

        # Each request of getAllRecords reads a batch: what the page's limit asks for,
        # or more where filtered-out jobs are read and passed.
        batch = limit if status is None and kind is None else max(limit, PAGE_BATCH)

        def body(transaction: JsObject) -> Body[list[dict[str, Any]]]:
            store = transaction.objectStore(JOBS)
            # One request per batch (getAllRecords, in Chromium since 141) instead of
            # one per record: a read keeps its transaction, which holds off every
            # write of the origin's tabs, for one callback instead of one per job.
            if is_missing(getattr(store, "getAllRecords", None)):
                return (yield from _newest_by_cursor(store, bound, limit, matches))
            return (yield from _newest_in_batches(store, bound, limit, batch, matches))

        return [record_to_job(record) for record in await self._read(body)]


def _newest_by_cursor(
    store: JsObject, bound: JsObject | None, limit: int, matches: Callable[[Any], bool]
) -> Body[list[dict[str, Any]]]:
    """Up to `limit` records of `store` below `bound` that match, newest first: a cursor."""
    request = store.openCursor(bound, "prev")
    found: list[dict[str, Any]] = []
    cursor = yield request
    while cursor is not None and len(found) < limit:
        record = js_to_json(cursor.value)
        if matches(record):
            found.append(record)
        cursor.continue_()
        cursor = yield request
    return found


def _newest_in_batches(
    store: JsObject,
    bound: JsObject | None,
    limit: int,
    batch: int,
    matches: Callable[[Any], bool],
) -> Body[list[dict[str, Any]]]:
    """The same, `batch` records per request (getAllRecords)."""
    found: list[dict[str, Any]] = []
    while True:
        options = json_to_js({"count": batch, "direction": "prev"})
        if bound is not None:
            options.query = bound
        records = yield store.getAllRecords(options)
        for entry in records:
            record = js_to_json(entry.value)
            if matches(record):
                found.append(record)
                if len(found) == limit:
                    return found
        if records.length < batch:
            return found
        bound = js_global().IDBKeyRange.upperBound(records[records.length - 1].primaryKey, True)


class IndexedDbQueueStorage(BaseQueueStorage):
    """The jobs of one queue in IndexedDB; events to other tabs over BroadcastChannel."""

    def __init__(self, queue_name: str, database_name: str = DEFAULT_DATABASE) -> None:
        database = Database(database_name, "IndexedDbQueueStorage")
        check_queue_name(queue_name)
        self.database_name = database_name
        super().__init__(queue_name, IndexedDbQueueEngine(database, queue_name))

    def __repr__(self) -> str:
        return f"IndexedDbQueueStorage({self.queue_name!r}, {self.database_name!r})"
