"""The IndexedDB schema: object stores and indexes, as numbered migrations.

A migration is a function that edits the object stores inside IndexedDB's
`versionchange` transaction; the database's version is the last migration applied
(see `pyjobqueue.storage.migrations`). Append, never edit.
"""

from __future__ import annotations

from ...browser._ffi import JsObject, js_array, js_global, json_to_js
from ...browser._idb import Upgrade, UpgradeSteps
from ..migrations import Migration

JOBS = "jobs"  # keyPath "id" (auto-increment); one record per job
RATE_EXECUTIONS = "rate_executions"  # auto-increment keys; {queue, at}
RATE_STATE = "rate_state"  # keyPath "queue"; {queue, next_available}
EVENTS = "events"  # keyPath [queue, seq]; {queue, seq, at, payload}: the events log
SEQUENCES = "sequences"  # keyPath "queue"; {queue, last}: the last seq of each queue
QUEUES = "queues"  # keyPath "queue"; {queue, paused, updated_at}: per-queue state
# keyPath [queue, name]; {queue, name, spec, last_tick, next_tick}: each schedule's ticks
SCHEDULES = "schedules"
# keyPath [queue, server_id]; a ServerInfo's fields: each running server's last heartbeat
SERVERS = "servers"

# Version 3. Besides the fields of `Job`, a job record carries three fields that exist
# only to be index keys (IndexedDB indexes sort ascending and skip records whose key
# holds a null):
#   rank = -priority: so that ascending order is the claim order (priority DESC);
#   kind_key = the kind, or NO_KIND: so that jobs without a kind are in the kind index;
#   held_key = the unique key while the job holds it, else null: so that the unique
#     index holds the holders only, and a lookup finds one record or none.
NO_KIND = 0  # a number: it sorts before, and never equals, a kind (a str)

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


# Index name -> key path, from version 3 on; every key ends with the record's id.
KINDS_JOB_INDEXES: dict[str, list[str]] = {
    # claim order (rank, run_after, id) per status: claims, peek, size, delete_all
    "claim": ["queue", "status", "rank", "run_after"],
    # the same per kind: claims of servers that run some kinds, peek and size by kind
    "kind": ["queue", "kind_key", "status", "rank", "run_after"],
    "unique": ["queue", "held_key"],  # the job that holds a unique key
}
# What the jobs written before version 3 hold in the fields version 3 adds.
KINDS_FIELD_DEFAULTS: dict[str, object] = {
    "kind": None,
    "priority": 0,
    "unique_key": None,
    "metadata": None,  # reads as {}
    "timeout_ms": None,
    "error_traceback": None,
    "rank": 0,
    "kind_key": NO_KIND,
    "held_key": None,
}


def _add_kinds(database: JsObject, transaction: JsObject) -> UpgradeSteps:
    """Version 3: kinds, priorities, unique keys and the queues store (pause).

    The claim order now starts with the priority, so the claim index replaces
    claim_order. Every existing record gets the new fields (a cursor walk inside the
    versionchange transaction): without `rank` and `kind_key` it would be missing from
    the new indexes, and never claimed.
    """
    jobs = transaction.objectStore(JOBS)
    jobs.deleteIndex("claim_order")
    for name, key_path in KINDS_JOB_INDEXES.items():
        jobs.createIndex(name, js_array(key_path))
    database.createObjectStore(QUEUES, json_to_js({"keyPath": "queue"}))
    assign = js_global().Object.assign
    request = jobs.openCursor()
    cursor = yield request
    while cursor is not None:
        # Onto a fresh object of defaults: the record's own fields win.
        cursor.update(assign(json_to_js(KINDS_FIELD_DEFAULTS), cursor.value))
        cursor.continue_()
        cursor = yield request


def _create_schedules(database: JsObject, transaction: JsObject) -> None:
    """Version 4: the schedules store (pyjobqueue.schedules)."""
    database.createObjectStore(SCHEDULES, json_to_js({"keyPath": ["queue", "name"]}))


def _create_servers(database: JsObject, transaction: JsObject) -> None:
    """Version 5: the servers store (pyjobqueue.presence)."""
    database.createObjectStore(SERVERS, json_to_js({"keyPath": ["queue", "server_id"]}))


def _add_dependants_index(database: JsObject, transaction: JsObject) -> None:
    """Version 6: the jobs that wait for a job (SPEC 8.7), by the ids in depends_on (a
    multi-entry index: one key per id; records without depends_on are left out)."""
    jobs = transaction.objectStore(JOBS)
    jobs.createIndex("dependants", "depends_on", json_to_js({"multiEntry": True}))


MIGRATIONS: tuple[Migration[Upgrade], ...] = (
    Migration(1, "the jobs store and the two rate limiter stores", _create_stores),
    Migration(2, "the events log, numbered per queue", _create_events_log),
    Migration(3, "kinds, priorities, unique keys, and the queues store", _add_kinds),
    Migration(4, "the schedules store", _create_schedules),
    Migration(5, "the servers store", _create_servers),
    Migration(6, "the dependants index of the jobs store", _add_dependants_index),
)
LATEST_VERSION = len(MIGRATIONS)
