"""The IndexedDB schema: object stores and indexes, as numbered migrations.

A migration is a function that edits the object stores inside IndexedDB's
`versionchange` transaction; the database's version is the last migration applied
(see `pyjobqueue.storage.migrations`). Append, never edit.
"""

from __future__ import annotations

from ...browser._ffi import JsObject, js_array, json_to_js
from ...browser._idb import Upgrade
from ..migrations import Migration

JOBS = "jobs"  # keyPath "id" (auto-increment); one record per job
RATE_EXECUTIONS = "rate_executions"  # auto-increment keys; {queue, at}
RATE_STATE = "rate_state"  # keyPath "queue"; {queue, next_available}
EVENTS = "events"  # keyPath [queue, seq]; {queue, seq, at, payload}: the events log
SEQUENCES = "sequences"  # keyPath "queue"; {queue, last}: the last seq of each queue

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


def _create_stores(database: JsObject, transaction: JsObject) -> None:
    """Version 1: the jobs store and the two rate limiter stores."""
    jobs = database.createObjectStore(JOBS, json_to_js({"keyPath": "id", "autoIncrement": True}))
    for name, key_path in JOB_INDEXES.items():
        jobs.createIndex(name, js_array(key_path))
    executions = database.createObjectStore(RATE_EXECUTIONS, json_to_js({"autoIncrement": True}))
    for name, key_path in EXECUTION_INDEXES.items():
        executions.createIndex(name, js_array(key_path))
    database.createObjectStore(RATE_STATE, json_to_js({"keyPath": "queue"}))


def _create_events_log(database: JsObject, transaction: JsObject) -> None:
    """Version 2: the events log, numbered per queue, for tabs that missed messages."""
    events = database.createObjectStore(EVENTS, json_to_js({"keyPath": ["queue", "seq"]}))
    events.createIndex("at", "at")  # pruning by age
    database.createObjectStore(SEQUENCES, json_to_js({"keyPath": "queue"}))


MIGRATIONS: tuple[Migration[Upgrade], ...] = (
    Migration(1, "the jobs store and the two rate limiter stores", _create_stores),
    Migration(2, "the events log, numbered per queue", _create_events_log),
)
LATEST_VERSION = len(MIGRATIONS)
