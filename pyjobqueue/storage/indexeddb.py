"""IndexedDB storage: jobs and rate-limit records in the browser, shared by every tab.

Runs under Pyodide only (through its JavaScript FFI); constructing it on CPython raises
ImportError. Every operation is one IndexedDB transaction and every claim or state
change one readwrite transaction, which IndexedDB serialises across the tabs of an
origin: two tabs never claim the same job. Events travel between tabs on a
BroadcastChannel (`pyjobqueue.browser.broadcast`). The schema is `JOB_INDEXES`,
`EXECUTION_INDEXES` and `MIGRATIONS` below; docs/browser.md describes it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from .._json import dumps, loads
from .._platform import IN_PYODIDE, pyodide_required

# These import neither `js` nor `pyodide` until they are used (only under Pyodide).
from ..browser import _idb
from ..browser._ffi import JsObject, js_array, js_global, js_to_json, json_to_js
from ..browser.broadcast import BroadcastFeed, channel_name
from ..events import JOB_AVAILABLE, JobEvent
from ..job import ACTIVE_STATUSES, FINISHED_STATUSES, Job, JobStatus
from ..outcome import Outcome, OutcomeKind
from .base import (
    EventListener,
    StorageLifecycle,
    Unsubscribe,
    check_queue_name,
    start_events,
)
from .memory import abort_job, apply_outcome

T = TypeVar("T")
logger = logging.getLogger("pyjobqueue")

DEFAULT_DATABASE = "pyjobqueue"

# -- schema: object stores, their indexes, and the migrations between versions --------

JOBS = "jobs"  # keyPath "id" (auto-increment); one record per job
RATE_EXECUTIONS = "rate_executions"  # auto-increment keys; {queue, at}
RATE_STATE = "rate_state"  # keyPath "queue"; {queue, next_available}

# Index name -> key path. A record whose key path holds a null is left out of that
# index, which keeps "lease" to running jobs and "finished" to finished ones.
JOB_INDEXES: dict[str, list[str]] = {
    "claim_order": ["queue", "status", "run_after"],  # then by id: claim, peek, size
    "run_id": ["queue", "job_run_id"],
    "fingerprint": ["queue", "fingerprint", "status", "completed_at"],
    "finished": ["queue", "status", "completed_at"],  # delete_finished
    "lease": ["queue", "lease_expires_at"],  # expired_leases
}
EXECUTION_INDEXES: dict[str, list[str]] = {"queue_time": ["queue", "at"]}


def _migrate_to_1(database: JsObject, transaction: JsObject) -> None:
    """Version 1: the jobs store and the two rate limiter stores."""
    jobs = database.createObjectStore(JOBS, json_to_js({"keyPath": "id", "autoIncrement": True}))
    for name, key_path in JOB_INDEXES.items():
        jobs.createIndex(name, js_array(key_path))
    executions = database.createObjectStore(RATE_EXECUTIONS, json_to_js({"autoIncrement": True}))
    for name, key_path in EXECUTION_INDEXES.items():
        executions.createIndex(name, js_array(key_path))
    database.createObjectStore(RATE_STATE, json_to_js({"keyPath": "queue"}))


# MIGRATIONS[n - 1] upgrades version n - 1 to n; the schema version is len(MIGRATIONS).
MIGRATIONS = (_migrate_to_1,)
SCHEMA_VERSION = len(MIGRATIONS)

# -- values: times as fixed-width UTC ISO 8601 text, exact to the microsecond ------------
# (Numbers cannot do that: microseconds since 1970 pass 2**53 in the year 2255.) Text of
# one width sorts like the times it holds, so it works as an index key.


def encode_time(value: datetime) -> str:
    """A timezone-aware datetime as `YYYY-MM-DDTHH:MM:SS.ffffffZ` in UTC."""
    if not isinstance(value, datetime):
        raise TypeError(f"expected a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"datetime {value.isoformat()} must be timezone-aware")
    t = value.astimezone(UTC)
    return (
        f"{t.year:04d}-{t.month:02d}-{t.day:02d}T"
        f"{t.hour:02d}:{t.minute:02d}:{t.second:02d}.{t.microsecond:06d}Z"
    )


def decode_time(value: str | None) -> datetime | None:
    """The UTC datetime that `encode_time` wrote; None stays None."""
    return None if value is None else datetime.fromisoformat(value)


def _optional_time(value: datetime | None) -> str | None:
    return None if value is None else encode_time(value)


# Range bounds: an array sorts after every number and string, so [q, s, []] closes
# "everything under [q, s]" and [q, s] opens it.
_AFTER_ALL: list[Any] = []


def _key_range(lower: list[Any], upper: list[Any], upper_open: bool = False) -> JsObject:
    return js_global().IDBKeyRange.bound(js_array(lower), js_array(upper), False, upper_open)


_NEVER = datetime.min.replace(tzinfo=UTC)  # stands in for a missing required time


def job_to_record(job: Job[Any, Any], queue_name: str) -> dict[str, Any]:
    """The IndexedDB record of a job (JSON values and times stored as text)."""
    record: dict[str, Any] = {
        "queue": queue_name,
        "status": JobStatus(job.status).value,
        "input": dumps(job.input),
        "output": None if job.output is None else dumps(job.output),
        "progress": float(job.progress),
        "progress_message": job.progress_message,
        "progress_details": None if job.progress_details is None else dumps(job.progress_details),
        "max_retries": job.max_retries,
        "run_attempts": job.run_attempts,
        "error": job.error,
        "error_code": job.error_code,
        "created_at": encode_time(job.created_at),
        "completed_at": _optional_time(job.completed_at),
        "run_after": encode_time(job.run_after),
        "deadline_at": _optional_time(job.deadline_at),
        "last_ran_at": _optional_time(job.last_ran_at),
        "job_run_id": job.job_run_id,
        "fingerprint": job.fingerprint,
        "worker_id": job.worker_id,
        "lease_expires_at": _optional_time(job.lease_expires_at),
    }
    if job.id is not None:
        record["id"] = job.id
    return record


def record_to_job(record: dict[str, Any]) -> Job[Any, Any]:
    """The job a record stores."""
    return Job(
        id=int(record["id"]),
        queue_name=record["queue"],
        input=loads(record["input"]),
        output=loads(record["output"]),
        status=JobStatus(record["status"]),
        progress=float(record["progress"]),
        progress_message=record["progress_message"],
        progress_details=loads(record["progress_details"]),
        max_retries=int(record["max_retries"]),
        run_attempts=int(record["run_attempts"]),
        error=record["error"],
        error_code=record["error_code"],
        created_at=decode_time(record["created_at"]) or _NEVER,
        completed_at=decode_time(record["completed_at"]),
        run_after=decode_time(record["run_after"]) or _NEVER,
        deadline_at=decode_time(record["deadline_at"]),
        last_ran_at=decode_time(record["last_ran_at"]),
        job_run_id=record["job_run_id"],
        fingerprint=record["fingerprint"],
        worker_id=record["worker_id"],
        lease_expires_at=decode_time(record["lease_expires_at"]),
    )


Body = Generator[JsObject, Any, T]


class _Database(StorageLifecycle):
    """A lazily opened connection to one pyjobqueue IndexedDB database."""

    def __init__(self, database_name: str, what: str) -> None:
        if not IN_PYODIDE:
            raise pyodide_required(what)
        if not isinstance(database_name, str) or not database_name:
            raise ValueError("database_name must be a non-empty str")
        self.database_name = database_name
        self._connection: _idb.Connection | None = None
        self._closed = False

    async def setup_database(self) -> None:
        """Open the database, creating or upgrading its object stores."""
        await self._open()

    async def _open(self) -> _idb.Connection:
        if self._closed:
            raise RuntimeError(f"{type(self).__name__} is closed")
        if self._connection is None:
            connection = await _idb.open_database(self.database_name, MIGRATIONS)
            if self._connection is None and not self._closed:
                self._connection = connection
            else:  # opened twice concurrently, or closed meanwhile: keep one
                connection.close()
        if self._connection is None:
            raise RuntimeError(f"{type(self).__name__} is closed")
        return self._connection

    async def _run(
        self, stores: Sequence[str], mode: str, body: Callable[[JsObject], Body[T]]
    ) -> T:
        connection = await self._open()
        return await connection.transaction(stores, mode, body)

    async def close(self) -> None:
        """Close the connection; the storage is unusable afterwards."""
        self._closed = True
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class IndexedDbQueueStorage(_Database):
    """The jobs of one queue in IndexedDB; events to other tabs over BroadcastChannel."""

    supports_push = True
    shared_across_processes = True

    def __init__(self, queue_name: str, database_name: str = DEFAULT_DATABASE) -> None:
        super().__init__(database_name, "IndexedDbQueueStorage")
        self.queue_name = check_queue_name(queue_name)
        self._feed = BroadcastFeed(channel_name(database_name, self.queue_name))

    # -- helpers ----------------------------------------------------------------

    def _status_range(self, status: JobStatus | None) -> JsObject:
        prefix = [self.queue_name] if status is None else [self.queue_name, status.value]
        return _key_range(prefix, [*prefix, _AFTER_ALL])

    def _record(self, job: Job[Any, Any]) -> JsObject:
        return json_to_js(job_to_record(job, self.queue_name))

    async def _read(self, body: Callable[[JsObject], Body[T]]) -> T:
        return await self._run([JOBS], "readonly", body)

    async def _write(self, body: Callable[[JsObject], Body[T]]) -> T:
        return await self._run([JOBS], "readwrite", body)

    async def _change(
        self, job_id: int, change: Callable[[Job[Any, Any]], tuple[bool, T]], missing: T
    ) -> T:
        """Read one job of this queue, let `change` edit it; store it when it says so."""

        def body(transaction: JsObject) -> Body[T]:
            store = transaction.objectStore(JOBS)
            record = js_to_json((yield store.get(job_id)))
            if record is None or record["queue"] != self.queue_name:
                return missing
            job = record_to_job(record)
            changed, result = change(job)
            if changed:
                store.put(self._record(job))
            return result

        return await self._write(body)

    def _announce_available(self) -> None:
        self._publish(JobEvent(JOB_AVAILABLE, self.queue_name, 0))

    def _publish(self, event: JobEvent) -> None:
        try:
            self._feed.publish(event)
        except Exception:
            logger.exception("could not publish %s on queue %s", event.name, self.queue_name)

    # -- adding and reading -----------------------------------------------------

    async def add(self, job: Job[Any, Any]) -> int:
        (job_id,) = await self._add_all([job])
        self._announce_available()
        return job_id

    async def add_batch(self, jobs: Sequence[Job[Any, Any]]) -> list[int]:
        ids = await self._add_all(list(jobs))
        if ids:
            self._announce_available()
        return ids

    async def _add_all(self, jobs: list[Job[Any, Any]]) -> list[int]:
        fresh = []
        for job in jobs:
            record = job.record()
            record.id = None
            fresh.append(self._record(record))  # validates everything before the transaction

        def body(transaction: JsObject) -> Body[list[int]]:
            store = transaction.objectStore(JOBS)
            requests = [store.add(record) for record in fresh]
            if requests:
                yield requests[-1]  # requests succeed in order: the last one means all
            return [int(request.result) for request in requests]

        return await self._write(body)

    async def get(self, job_id: int) -> Job[Any, Any] | None:
        def body(transaction: JsObject) -> Body[dict[str, Any] | None]:
            record: dict[str, Any] | None = js_to_json(
                (yield transaction.objectStore(JOBS).get(job_id))
            )
            return record

        record = await self._read(body)
        if record is None or record["queue"] != self.queue_name:
            return None
        return record_to_job(record)

    async def peek(self, status: JobStatus, num: int) -> list[Job[Any, Any]]:
        if num <= 0:
            return []  # getAll's count 0 would mean "all"
        index_range = self._status_range(JobStatus(status))

        def body(transaction: JsObject) -> Body[list[dict[str, Any]]]:
            index = transaction.objectStore(JOBS).index("claim_order")
            return js_to_json((yield index.getAll(index_range, num))) or []

        return [record_to_job(record) for record in await self._read(body)]

    async def size(self, status: JobStatus | None = None) -> int:
        index_range = self._status_range(None if status is None else JobStatus(status))

        def body(transaction: JsObject) -> Body[int]:
            index = transaction.objectStore(JOBS).index("claim_order")
            return int((yield index.count(index_range)))

        return await self._read(body)

    async def get_by_run_id(self, job_run_id: str) -> list[Job[Any, Any]]:
        index_range = _key_range([self.queue_name, job_run_id], [self.queue_name, job_run_id])

        def body(transaction: JsObject) -> Body[list[dict[str, Any]]]:
            index = transaction.objectStore(JOBS).index("run_id")
            return js_to_json((yield index.getAll(index_range))) or []

        return [record_to_job(record) for record in await self._read(body)]

    async def find_completed_by_fingerprint(self, fingerprint: str) -> Job[Any, Any] | None:
        prefix = [self.queue_name, fingerprint, JobStatus.COMPLETED.value]
        index_range = _key_range(prefix, [*prefix, _AFTER_ALL])

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
        start_origin: str | None = None,
    ) -> list[Job[Any, Any]]:
        if limit <= 0:
            return []
        pending = [self.queue_name, JobStatus.PENDING.value]
        index_range = _key_range(pending, [*pending, encode_time(now)])
        claimed_at, lease = encode_time(now), encode_time(lease_until)

        def body(transaction: JsObject) -> Body[list[dict[str, Any]]]:
            store = transaction.objectStore(JOBS)
            records = js_to_json((yield store.index("claim_order").getAll(index_range, limit)))
            for record in records or []:
                record.update(
                    status=JobStatus.PROCESSING.value,
                    worker_id=worker_id,
                    run_attempts=record["run_attempts"] + 1,
                    last_ran_at=claimed_at,
                    lease_expires_at=lease,
                    progress=0.0,
                    progress_message="",
                    progress_details=None,
                )
                store.put(json_to_js(record))
            return records or []

        jobs = [record_to_job(record) for record in await self._write(body)]
        if start_origin is not None:
            for event in start_events(self.queue_name, jobs, now, start_origin):
                await self.publish(event)
        return jobs

    @staticmethod
    def _is_attempt(job: Job[Any, Any], worker_id: str, attempt: int) -> bool:
        return (
            job.status in ACTIVE_STATUSES
            and job.worker_id == worker_id
            and job.run_attempts == attempt
        )

    async def renew_lease(
        self, job_id: int, worker_id: str, attempt: int, lease_until: datetime
    ) -> JobStatus | None:
        encode_time(lease_until)

        def change(job: Job[Any, Any]) -> tuple[bool, JobStatus | None]:
            if not self._is_attempt(job, worker_id, attempt):
                return False, None
            job.lease_expires_at = lease_until
            return True, job.status

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
        dumps(details)  # refuse what JSON cannot hold before touching the job

        def change(job: Job[Any, Any]) -> tuple[bool, bool]:
            if not self._is_attempt(job, worker_id, attempt):
                return False, False
            job.progress, job.progress_message, job.progress_details = progress, message, details
            return True, True

        return await self._change(job_id, change, False)

    async def finish(
        self,
        job_id: int,
        worker_id: str,
        attempt: int,
        outcome: Outcome,
        lease_expired_before: datetime | None = None,
        event: JobEvent | None = None,
    ) -> bool:
        def change(job: Job[Any, Any]) -> tuple[bool, bool]:
            if not self._is_attempt(job, worker_id, attempt):
                return False, False
            if lease_expired_before is not None and (
                job.lease_expires_at is None or job.lease_expires_at >= lease_expired_before
            ):
                return False, False
            apply_outcome(job, outcome)
            return True, True

        applied = await self._change(job_id, change, False)
        if applied and event is not None:
            await self.publish(event)  # before the job can start again: events stay in order
        if applied and outcome.kind in (OutcomeKind.RETRY, OutcomeKind.REQUEUE):
            self._announce_available()
        return applied

    # -- user actions -------------------------------------------------------------

    async def abort(self, job_id: int, now: datetime) -> JobStatus | None:
        encode_time(now)

        def change(job: Job[Any, Any]) -> tuple[bool, JobStatus | None]:
            status = abort_job(job, now)
            return status is not None, status

        return await self._change(job_id, change, None)

    async def abort_job_run(self, job_run_id: str, now: datetime) -> list[tuple[int, JobStatus]]:
        encode_time(now)
        index_range = _key_range([self.queue_name, job_run_id], [self.queue_name, job_run_id])

        def body(transaction: JsObject) -> Body[list[tuple[int, JobStatus]]]:
            store = transaction.objectStore(JOBS)
            records = js_to_json((yield store.index("run_id").getAll(index_range))) or []
            changed = []
            for record in records:
                job = record_to_job(record)
                status = abort_job(job, now)
                if status is not None:
                    store.put(self._record(job))
                    changed.append((int(record["id"]), status))
            return changed

        return await self._write(body)

    async def disable(self, job_id: int, now: datetime) -> bool:
        encode_time(now)

        def change(job: Job[Any, Any]) -> tuple[bool, bool]:
            if job.status is not JobStatus.PENDING:
                return False, False
            job.status = JobStatus.DISABLED
            job.completed_at = now
            return True, True

        return await self._change(job_id, change, False)

    async def retry(self, job_id: int, now: datetime) -> bool:
        encode_time(now)

        def change(job: Job[Any, Any]) -> tuple[bool, bool]:
            if job.status not in (JobStatus.FAILED, JobStatus.DISABLED):
                return False, False
            job.status = JobStatus.PENDING
            job.run_attempts = 0
            job.run_after = now
            job.error = job.error_code = job.output = job.completed_at = None
            job.progress, job.progress_message, job.progress_details = 0.0, "", None
            return True, True

        retried = await self._change(job_id, change, False)
        if retried:
            self._announce_available()
        return retried

    # -- maintenance ----------------------------------------------------------------

    async def expired_leases(self, now: datetime) -> list[Job[Any, Any]]:
        index_range = _key_range([self.queue_name], [self.queue_name, encode_time(now)], True)

        def body(transaction: JsObject) -> Body[list[dict[str, Any]]]:
            index = transaction.objectStore(JOBS).index("lease")
            return js_to_json((yield index.getAll(index_range))) or []

        jobs = [record_to_job(record) for record in await self._read(body)]
        return sorted(
            (job for job in jobs if job.status in ACTIVE_STATUSES), key=lambda job: job.id or 0
        )

    async def delete_finished(self, status: JobStatus, completed_before: datetime) -> int:
        if status not in FINISHED_STATUSES:
            raise ValueError(f"only finished jobs can be deleted by age, not {status}")
        prefix = [self.queue_name, JobStatus(status).value]
        index_range = _key_range(prefix, [*prefix, encode_time(completed_before)], True)
        return await self._delete_keys("finished", index_range)

    async def _delete_keys(self, index_name: str, index_range: JsObject) -> int:
        def body(transaction: JsObject) -> Body[int]:
            store = transaction.objectStore(JOBS)
            keys = js_to_json((yield store.index(index_name).getAllKeys(index_range))) or []
            for key in keys:
                store.delete(key)
            return len(keys)

        return await self._write(body)

    async def delete(self, job_id: int) -> bool:
        def body(transaction: JsObject) -> Body[bool]:
            store = transaction.objectStore(JOBS)
            record = js_to_json((yield store.get(job_id)))
            if record is None or record["queue"] != self.queue_name:
                return False
            store.delete(job_id)
            return True

        return await self._write(body)

    async def delete_all(self) -> None:
        await self._delete_keys("claim_order", self._status_range(None))

    # -- events -------------------------------------------------------------------

    async def publish(self, event: JobEvent) -> None:
        self._feed.publish(event)

    async def subscribe(self, listener: EventListener) -> Unsubscribe:
        stop = self._feed.subscribe(listener)

        async def unsubscribe() -> None:
            stop()

        return unsubscribe

    async def close(self) -> None:
        self._feed.close()
        await super().close()


class IndexedDbRateLimiterStorage(_Database):
    """RateLimiter execution records in IndexedDB, shared by every tab of the origin."""

    def __init__(self, database_name: str = DEFAULT_DATABASE) -> None:
        super().__init__(database_name, "IndexedDbRateLimiterStorage")

    @staticmethod
    def _since(queue_name: str, since: datetime) -> JsObject:
        check_queue_name(queue_name)
        return _key_range([queue_name, encode_time(since)], [queue_name, _AFTER_ALL])

    async def try_record_execution(
        self, queue_name: str, max_executions: int, window_start: datetime, now: datetime
    ) -> bool:
        window = self._since(queue_name, window_start)
        record = json_to_js({"queue": queue_name, "at": encode_time(now)})

        def body(transaction: JsObject) -> Body[bool]:
            store = transaction.objectStore(RATE_EXECUTIONS)
            # Count and add in one readwrite transaction: IndexedDB runs these one at a
            # time across tabs, so the limit holds exactly.
            if int((yield store.index("queue_time").count(window))) >= max_executions:
                return False
            store.add(record)
            return True

        return await self._run([RATE_EXECUTIONS], "readwrite", body)

    async def execution_count(self, queue_name: str, since: datetime) -> int:
        window = self._since(queue_name, since)

        def body(transaction: JsObject) -> Body[int]:
            index = transaction.objectStore(RATE_EXECUTIONS).index("queue_time")
            return int((yield index.count(window)))

        return await self._run([RATE_EXECUTIONS], "readonly", body)

    async def oldest_execution_time(self, queue_name: str, since: datetime) -> datetime | None:
        window = self._since(queue_name, since)

        def body(transaction: JsObject) -> Body[list[dict[str, Any]]]:
            index = transaction.objectStore(RATE_EXECUTIONS).index("queue_time")
            return js_to_json((yield index.getAll(window, 1))) or []

        first = await self._run([RATE_EXECUTIONS], "readonly", body)
        return decode_time(first[0]["at"]) if first else None

    async def get_next_available_time(self, queue_name: str) -> datetime | None:
        check_queue_name(queue_name)

        def body(transaction: JsObject) -> Body[dict[str, Any] | None]:
            state: dict[str, Any] | None = js_to_json(
                (yield transaction.objectStore(RATE_STATE).get(queue_name))
            )
            return state

        state = await self._run([RATE_STATE], "readonly", body)
        return None if state is None else decode_time(state["next_available"])

    async def set_next_available_time(self, queue_name: str, when: datetime | None) -> None:
        check_queue_name(queue_name)
        state = None if when is None else {"queue": queue_name, "next_available": encode_time(when)}

        def body(transaction: JsObject) -> Body[None]:
            yield from ()  # a body is a generator, even one that waits for nothing
            store = transaction.objectStore(RATE_STATE)
            if state is None:
                store.delete(queue_name)
            else:
                store.put(json_to_js(state))

        await self._run([RATE_STATE], "readwrite", body)

    async def prune(self, queue_name: str, before: datetime) -> int:
        check_queue_name(queue_name)
        old = _key_range([queue_name], [queue_name, encode_time(before)], True)
        return await self._delete_executions(old)

    async def clear(self, queue_name: str) -> None:
        check_queue_name(queue_name)
        every = _key_range([queue_name], [queue_name, _AFTER_ALL])
        await self._delete_executions(every, forget_backoff_of=queue_name)

    async def _delete_executions(
        self, index_range: JsObject, forget_backoff_of: str | None = None
    ) -> int:
        def body(transaction: JsObject) -> Body[int]:
            store = transaction.objectStore(RATE_EXECUTIONS)
            if forget_backoff_of is not None:
                transaction.objectStore(RATE_STATE).delete(forget_backoff_of)
            keys = js_to_json((yield store.index("queue_time").getAllKeys(index_range))) or []
            for key in keys:
                store.delete(key)
            return len(keys)

        return await self._run([RATE_EXECUTIONS, RATE_STATE], "readwrite", body)
