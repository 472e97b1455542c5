"""Every SQL statement of the SQLite backend, by name (the schema is in migrations.py).

A statement that runs alone is its own transaction: a write statement takes the
file's write lock before it reads anything (as BEGIN IMMEDIATE does), so it is atomic
across processes. Writes that report how many rows they changed say RETURNING id.
Values are always bound as named parameters (`:queue_name`...), never spliced in:
queue names and job run ids are arbitrary strings. Times are integer microseconds
since the Unix epoch (UTC), so they sort and compare correctly in SQL. JSON values
are text. Statuses are the `JobStatus` values.
"""

from __future__ import annotations

import functools

from ..records import JOB_COLUMNS as _COLUMNS

# -- schema versions (the migrations themselves are in migrations.py) ---------------

# SQLite files keep the table names of the first release (`pyjobqueue_schema_version`
# here, `pyjobqueue_rate_holds` below) where PostgreSQL says `pyjobqueue_schema_migrations`
# and `pyjobqueue_rate_limits`: processes of an older release still running on a file
# go on working, and an older release opening a newer file refuses it clearly.
CREATE_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS pyjobqueue_schema_version (
    version INTEGER PRIMARY KEY,
    applied_at INTEGER NOT NULL
)
"""
TABLE_EXISTS = "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = :name"
SCHEMA_VERSION = "SELECT coalesce(max(version), 0) FROM pyjobqueue_schema_version"
RECORD_MIGRATION = """
INSERT INTO pyjobqueue_schema_version (version, applied_at) VALUES (:version, :applied_at)
"""

# -- jobs ------------------------------------------------------------------------------

JOB_COLUMNS = ", ".join(_COLUMNS)
# The claim order (`transitions.claim_order`), which the claim and kind indexes keep.
_CLAIM_ORDER = "priority DESC, run_after, id"
# The statuses in which a job holds its unique key (`transitions.UNIQUE_KEY_HOLDING`,
# and WAITING), and the WHERE of the partial unique index of migration 3 term for term:
# the planner uses a partial index only for a WHERE that implies the index's own.
_HOLDING_STATUSES = "('WAITING', 'PENDING', 'PROCESSING', 'ABORTING')"
_HOLDS_KEY = f"unique_key IS NOT NULL AND status IN {_HOLDING_STATUSES}"

INSERT_JOB = """
INSERT INTO pyjobqueue_jobs (
    queue_name, input, output, status, progress, progress_message, progress_details,
    max_retries, run_attempts, error, error_code, created_at, completed_at, run_after,
    deadline_at, last_ran_at, job_run_id, fingerprint,
    kind, priority, unique_key, metadata, timeout_ms, error_traceback,
    depends_on, dependencies_left
) VALUES (
    :queue_name, :input, :output, :status, :progress, :progress_message, :progress_details,
    :max_retries, :run_attempts, :error, :error_code, :created_at, :completed_at, :run_after,
    :deadline_at, :last_ran_at, :job_run_id, :fingerprint,
    :kind, :priority, :unique_key, :metadata, :timeout_ms, :error_traceback,
    :depends_on, :dependencies_left
)
"""
# One job: stored and its id returned, or nothing returned when its unique key is held
# (the unique index decides, under the write lock of this one statement).
INSERT_JOB_UNLESS_KEY_HELD = f"""{INSERT_JOB}
ON CONFLICT (queue_name, unique_key) WHERE {_HOLDS_KEY} DO NOTHING
RETURNING id
"""
# The jobs that hold any of the keys (a JSON array of strings) of a batch: one lookup
# in the unique index per key (CROSS JOIN keeps the keys the outer loop; the key's
# equality implies the index's `unique_key IS NOT NULL`, and saying it again would
# make the planner read it as a range over every held key).
UNIQUE_KEY_HOLDERS = f"""
SELECT wanted.value AS unique_key, job.id
FROM json_each(:unique_keys) AS wanted CROSS JOIN pyjobqueue_jobs AS job
WHERE job.queue_name = :queue_name AND job.unique_key = wanted.value
AND job.status IN {_HOLDING_STATUSES}
"""
# The jobs new jobs depend on (a JSON array of ids), marked as having dependants (so
# the triggers of migration 6 fire when they finish), under the insert's write lock.
MARK_DEPENDENCIES = f"""
UPDATE pyjobqueue_jobs SET has_dependants = 1
WHERE queue_name = :queue_name AND id IN (SELECT value FROM json_each(:ids))
RETURNING {JOB_COLUMNS}
"""
INSERT_DEPENDENCY = """
INSERT OR IGNORE INTO pyjobqueue_dependencies (dependency_id, dependant_id)
VALUES (:dependency_id, :dependant_id)
"""
# Inside the write transaction of a batch: every id above it is one of the batch.
LAST_JOB_ID = "SELECT coalesce(max(id), 0) FROM pyjobqueue_jobs"
JOB_IDS_AFTER = """
SELECT id FROM pyjobqueue_jobs WHERE id > :after AND queue_name = :queue_name ORDER BY id
"""

GET_JOB = f"SELECT {JOB_COLUMNS} FROM pyjobqueue_jobs WHERE id = :id AND queue_name = :queue_name"
PEEK_JOBS = f"""
SELECT {JOB_COLUMNS} FROM pyjobqueue_jobs
WHERE queue_name = :queue_name AND status = :status
ORDER BY {_CLAIM_ORDER}
LIMIT :limit
"""
PEEK_JOBS_OF_KIND = f"""
SELECT {JOB_COLUMNS} FROM pyjobqueue_jobs
WHERE queue_name = :queue_name AND kind = :kind AND status = :status
ORDER BY {_CLAIM_ORDER}
LIMIT :limit
"""
COUNT_JOBS = "SELECT count(*) FROM pyjobqueue_jobs WHERE queue_name = :queue_name"
COUNT_JOBS_BY_STATUS = """
SELECT count(*) FROM pyjobqueue_jobs WHERE queue_name = :queue_name AND status = :status
"""
COUNT_JOBS_OF_KIND = """
SELECT count(*) FROM pyjobqueue_jobs WHERE queue_name = :queue_name AND kind = :kind
"""
COUNT_JOBS_BY_STATUS_OF_KIND = """
SELECT count(*) FROM pyjobqueue_jobs
WHERE queue_name = :queue_name AND kind = :kind AND status = :status
"""
COUNT_JOBS_BY_KIND_AND_STATUS = """
SELECT kind, status, count(*) AS jobs FROM pyjobqueue_jobs
WHERE queue_name = :queue_name
GROUP BY kind, status
"""
JOBS_OF_RUN = f"""
SELECT {JOB_COLUMNS} FROM pyjobqueue_jobs
WHERE queue_name = :queue_name AND job_run_id = :job_run_id
ORDER BY id
"""
COMPLETED_BY_FINGERPRINT = f"""
SELECT {JOB_COLUMNS} FROM pyjobqueue_jobs
WHERE queue_name = :queue_name AND fingerprint = :fingerprint AND status = 'COMPLETED'
ORDER BY completed_at DESC, id DESC
LIMIT 1
"""

# Every claim is one statement, its own transaction: it takes the file's write lock
# before its SELECT runs and keeps it until the UPDATE commits, so no other connection
# (process) can claim the same rows, nor pause the queue in between: a paused queue
# gives nothing. With :origin set, each claimed job whose deadline has not passed gets
# its job_start (from :origin; the JSON of JobEvent.to_json) into `outbox`, which the
# outbox trigger stores in the same statement.
_CLAIM = """
UPDATE pyjobqueue_jobs
SET status = 'PROCESSING', worker_id = :worker_id, run_attempts = run_attempts + 1,
    last_ran_at = :now, lease_expires_at = :lease_until,
    progress = 0, progress_message = '', progress_details = NULL,
    outbox = CASE WHEN :origin IS NOT NULL AND (deadline_at IS NULL OR deadline_at > :now)
        THEN json_object('name', 'job_start', 'queue_name', queue_name, 'job_id', id,
            'args', json_array(), 'origin', :origin, 'error_code', NULL) END
WHERE NOT EXISTS (SELECT 1 FROM pyjobqueue_queues WHERE queue_name = :queue_name AND paused)
AND id IN"""
_DUE = "queue_name = :queue_name AND status = 'PENDING' AND run_after <= :now"

# Any kind: the first due jobs of the claim index, read in its order.
CLAIM_JOBS = f"""{_CLAIM} (
    SELECT id FROM pyjobqueue_jobs
    WHERE {_DUE}
    ORDER BY {_CLAIM_ORDER}
    LIMIT :limit
)
RETURNING {JOB_COLUMNS}
"""
# Up to this many kinds, a claim reads the kind index once per kind (see below); a
# server of more kinds walks the claim index and skips the jobs of other kinds.
MAX_KINDS_READ_APART = 32


@functools.cache
def claim_jobs_of_each_kind(kinds: int) -> str:
    """The claim of jobs of no kind or of one of `kinds` kinds (:kind_0, :kind_1...).

    The first `limit` due jobs of each kind come from the kind index in claim order,
    so a backlog of other kinds is never read; the best `limit` of those few are taken.
    """
    arms = ["kind IS NULL", *(f"kind = :kind_{index}" for index in range(kinds))]
    firsts = "\n    UNION ALL\n".join(
        f"""    SELECT * FROM (
        SELECT id, priority, run_after FROM pyjobqueue_jobs
        WHERE {_DUE} AND {arm}
        ORDER BY {_CLAIM_ORDER}
        LIMIT :limit
    )"""
        for arm in arms
    )
    return f"""{_CLAIM} (
    SELECT id FROM (
{firsts}
    )
    ORDER BY {_CLAIM_ORDER}
    LIMIT :limit
)
RETURNING {JOB_COLUMNS}
"""


# Many kinds (a JSON array of their names): the claim index, skipping other kinds.
CLAIM_JOBS_OF_KINDS = f"""{_CLAIM} (
    SELECT id FROM pyjobqueue_jobs
    WHERE {_DUE} AND (kind IS NULL OR kind IN (SELECT value FROM json_each(:kinds)))
    ORDER BY {_CLAIM_ORDER}
    LIMIT :limit
)
RETURNING {JOB_COLUMNS}
"""

# The guard of every write a worker makes: the job is still this attempt of it.
_ATTEMPT = """
id = :id AND queue_name = :queue_name AND status IN ('PROCESSING', 'ABORTING')
AND worker_id = :worker_id AND run_attempts = :attempt
"""
RENEW_LEASE = f"""
UPDATE pyjobqueue_jobs SET lease_expires_at = :lease_until
WHERE {_ATTEMPT}
RETURNING status
"""
SAVE_PROGRESS = f"""
UPDATE pyjobqueue_jobs
SET progress = :progress, progress_message = :message, progress_details = :details
WHERE {_ATTEMPT}
RETURNING id
"""

# Outcomes, several in one statement: :finishes is a JSON array of objects, one per
# attempt (no two of one job), with its guard (id, worker_id, attempt; expired_before, for
# lease recovery: only a lease still expired, not renewed since) and what its kind sets
# (NULL: kept): COMPLETE stores the output (progress 100, error and traceback cleared)
# and completed_at; FAIL the error and completed_at; RETRY the error and run_after;
# REQUEUE (a stop, a snooze) run_after, and gives the attempt back. Every outcome sets
# `outbox` to the JSON of the event that announces it (or NULL): a trigger moves it into
# the events table in the same statement, so an outcome is never stored without its
# event. SET reads the old row.
# The unary + keeps the claim index out of the plan: each outcome finds its row by id.
# With it, the planner walked every running job of the queue and read the whole JSON
# for each (30 outcomes with 60 jobs running took 77 ms; by id, under 1 ms).
FINISH_ATTEMPTS = """
UPDATE pyjobqueue_jobs AS job
SET status = f.status,
    output = CASE f.kind WHEN 'COMPLETE' THEN f.output ELSE job.output END,
    progress = CASE f.kind WHEN 'COMPLETE' THEN 100 ELSE job.progress END,
    error = CASE f.kind WHEN 'REQUEUE' THEN job.error ELSE f.error END,
    error_code = CASE f.kind WHEN 'REQUEUE' THEN job.error_code ELSE f.error_code END,
    error_traceback = CASE f.kind WHEN 'REQUEUE' THEN job.error_traceback ELSE f.traceback END,
    completed_at = coalesce(f.completed_at, job.completed_at),
    run_after = coalesce(f.run_after, job.run_after),
    run_attempts = CASE f.kind WHEN 'REQUEUE' THEN max(0, job.run_attempts - 1)
        ELSE job.run_attempts END,
    worker_id = NULL, lease_expires_at = NULL, outbox = f.event
FROM (
    SELECT value ->> 'id' AS id, value ->> 'worker_id' AS worker_id,
        value ->> 'attempt' AS attempt, value ->> 'expired_before' AS expired_before,
        value ->> 'kind' AS kind, value ->> 'status' AS status, value ->> 'output' AS output,
        value ->> 'error' AS error, value ->> 'error_code' AS error_code,
        value ->> 'traceback' AS traceback, value ->> 'completed_at' AS completed_at,
        value ->> 'run_after' AS run_after, value ->> 'event' AS event
    FROM json_each(:finishes)
) AS f
WHERE job.id = f.id AND +job.queue_name = :queue_name
    AND +job.status IN ('PROCESSING', 'ABORTING')
    AND job.worker_id = f.worker_id AND job.run_attempts = f.attempt
    AND (f.expired_before IS NULL
        OR (job.lease_expires_at IS NOT NULL AND job.lease_expires_at < f.expired_before))
RETURNING id
"""

# PENDING or WAITING -> FAILED at once, PROCESSING -> ABORTING; SET expressions see the
# old row, RETURNING the new one.
_ABORT_SET = """
UPDATE pyjobqueue_jobs
SET status = CASE status WHEN 'PROCESSING' THEN 'ABORTING' ELSE 'FAILED' END,
    error = CASE status WHEN 'PROCESSING' THEN error ELSE :error END,
    error_code = CASE status WHEN 'PROCESSING' THEN error_code ELSE :error_code END,
    completed_at = CASE status WHEN 'PROCESSING' THEN completed_at ELSE :now END
"""
_ABORTABLE = "status IN ('WAITING', 'PENDING', 'PROCESSING')"
ABORT_JOB = f"""
{_ABORT_SET}
WHERE id = :id AND queue_name = :queue_name AND {_ABORTABLE}
RETURNING id, status
"""
# The jobs of a run that abort changes, dependants first (see queue.abort_run).
ABORTABLE_OF_RUN = f"""
SELECT id FROM pyjobqueue_jobs
WHERE queue_name = :queue_name AND job_run_id = :job_run_id AND {_ABORTABLE}
ORDER BY id DESC
"""
DISABLE_JOB = """
UPDATE pyjobqueue_jobs SET status = 'DISABLED', completed_at = :now
WHERE id = :id AND queue_name = :queue_name AND status IN ('WAITING', 'PENDING')
RETURNING id
"""
# A finished job runs again as if new, unless another job holds its unique key (the
# unique index would refuse it): two unfinished jobs never share a key; and only once
# every job it depends on is COMPLETED (and still there).
RETRY_JOB = f"""
UPDATE pyjobqueue_jobs
SET status = 'PENDING', run_attempts = 0, run_after = :now, error = NULL, error_code = NULL,
    error_traceback = NULL, output = NULL, completed_at = NULL, progress = 0,
    progress_message = '', progress_details = NULL, dependencies_left = 0
WHERE id = :id AND queue_name = :queue_name AND status IN ('FAILED', 'DISABLED')
AND NOT EXISTS (
    SELECT 1 FROM pyjobqueue_jobs AS holder
    WHERE holder.queue_name = :queue_name AND holder.unique_key = pyjobqueue_jobs.unique_key
    AND holder.status IN {_HOLDING_STATUSES}
)
AND NOT EXISTS (
    SELECT 1 FROM json_each(coalesce(pyjobqueue_jobs.depends_on, '[]')) AS wanted
    LEFT JOIN pyjobqueue_jobs AS dependency
        ON dependency.id = wanted.value AND dependency.queue_name = :queue_name
    WHERE dependency.status IS NOT 'COMPLETED'
)
RETURNING id
"""

EXPIRED_LEASES = f"""
SELECT {JOB_COLUMNS} FROM pyjobqueue_jobs
WHERE queue_name = :queue_name AND status IN ('PROCESSING', 'ABORTING')
AND lease_expires_at IS NOT NULL AND lease_expires_at < :now
ORDER BY id
"""

# A job some unfinished job depends on stays (that one reads its output when it runs).
DELETE_FINISHED = f"""
DELETE FROM pyjobqueue_jobs WHERE id IN (
    SELECT job.id FROM pyjobqueue_jobs AS job
    WHERE job.queue_name = :queue_name AND job.status = :status
    AND job.completed_at < :completed_before
    AND NOT (job.has_dependants AND EXISTS (
        SELECT 1 FROM pyjobqueue_dependencies AS link
        JOIN pyjobqueue_jobs AS dependant ON dependant.id = link.dependant_id
        WHERE link.dependency_id = job.id AND dependant.status IN {_HOLDING_STATUSES}
    ))
    LIMIT :limit
)
RETURNING id
"""
DELETE_JOB = """
DELETE FROM pyjobqueue_jobs WHERE id = :id AND queue_name = :queue_name RETURNING id
"""
DELETE_QUEUE_JOBS = "DELETE FROM pyjobqueue_jobs WHERE queue_name = :queue_name"

# -- per-queue state -------------------------------------------------------------------

# Each returns the queue's name when it changed the flag, nothing when it was set so.
PAUSE_QUEUE = """
INSERT INTO pyjobqueue_queues (queue_name, paused, updated_at) VALUES (:queue_name, 1, :now)
ON CONFLICT (queue_name) DO UPDATE SET paused = 1, updated_at = excluded.updated_at
WHERE NOT paused
RETURNING queue_name
"""
# A queue without a row has never been paused: nothing to write.
RESUME_QUEUE = """
UPDATE pyjobqueue_queues SET paused = 0, updated_at = :now
WHERE queue_name = :queue_name AND paused
RETURNING queue_name
"""
QUEUE_PAUSED = """
SELECT coalesce((SELECT paused FROM pyjobqueue_queues WHERE queue_name = :queue_name), 0)
"""

# -- schedules ---------------------------------------------------------------------------

SCHEDULE_STATES = """
SELECT name, spec, last_tick, next_tick FROM pyjobqueue_schedules WHERE queue_name = :queue_name
"""
GET_SCHEDULE = """
SELECT name, spec, last_tick, next_tick FROM pyjobqueue_schedules
WHERE queue_name = :queue_name AND name = :name
"""
SET_SCHEDULE = """
INSERT INTO pyjobqueue_schedules (queue_name, name, spec, last_tick, next_tick)
VALUES (:queue_name, :name, :spec, :last_tick, :next_tick)
ON CONFLICT (queue_name, name) DO UPDATE SET
    spec = excluded.spec, last_tick = excluded.last_tick, next_tick = excluded.next_tick
"""

# -- servers (heartbeats) ----------------------------------------------------------------

SERVER_COLUMNS = (
    "server_id, host, pid, kinds, worker_count, started_at, last_seen, expires_at, paused"
)
RECORD_SERVER = f"""
INSERT INTO pyjobqueue_servers (queue_name, {SERVER_COLUMNS})
VALUES (:queue_name, :server_id, :host, :pid, :kinds, :worker_count, :started_at,
    :last_seen, :expires_at, :paused)
ON CONFLICT (queue_name, server_id) DO UPDATE SET
    host = excluded.host, pid = excluded.pid, kinds = excluded.kinds,
    worker_count = excluded.worker_count, started_at = excluded.started_at,
    last_seen = excluded.last_seen, expires_at = excluded.expires_at, paused = excluded.paused
"""
FORGET_SERVERS = """
DELETE FROM pyjobqueue_servers WHERE queue_name = :queue_name AND expires_at < :before
"""
REMOVE_SERVER = """
DELETE FROM pyjobqueue_servers WHERE queue_name = :queue_name AND server_id = :server_id
"""
SERVERS = f"SELECT {SERVER_COLUMNS} FROM pyjobqueue_servers WHERE queue_name = :queue_name"

# -- the change feed -----------------------------------------------------------------

INSERT_EVENT = """
INSERT INTO pyjobqueue_events (queue_name, payload, created_at)
VALUES (:queue_name, :payload, :created_at)
"""


def insert_events(count: int) -> str:
    """INSERT_EVENT for `count` events in one statement (parameters suffixed _0, _1...)."""
    rows = ", ".join(f"(:queue_name_{i}, :payload_{i}, :created_at_{i})" for i in range(count))
    return f"INSERT INTO pyjobqueue_events (queue_name, payload, created_at) VALUES {rows}"


LAST_EVENT_ID = "SELECT coalesce(max(id), 0) FROM pyjobqueue_events"
# New events of this queue, plus the newest event of any queue (payload NULL when it
# is another queue's), so the reader's position moves past other queues' events too.
EVENTS_AFTER = """
SELECT id, CASE WHEN queue_name = :queue_name THEN payload END AS payload
FROM pyjobqueue_events
WHERE id > :after
AND (queue_name = :queue_name OR id = (SELECT max(id) FROM pyjobqueue_events))
ORDER BY id
"""
PRUNE_EVENTS = "DELETE FROM pyjobqueue_events WHERE created_at < :before"
DELETE_QUEUE_EVENTS = "DELETE FROM pyjobqueue_events WHERE queue_name = :queue_name"
# Changes whenever another connection (any process) commits to the file.
DATA_VERSION = "PRAGMA data_version"

# -- rate limiter ----------------------------------------------------------------------

# Check and record in one statement (one write lock): exact across processes.
RECORD_EXECUTION_IF_ROOM = """
INSERT INTO pyjobqueue_rate_executions (queue_name, executed_at)
SELECT :queue_name, :now
WHERE (
    SELECT count(*) FROM pyjobqueue_rate_executions
    WHERE queue_name = :queue_name AND executed_at >= :window_start
) < :max_executions
RETURNING id
"""
COUNT_EXECUTIONS = """
SELECT count(*) FROM pyjobqueue_rate_executions
WHERE queue_name = :queue_name AND executed_at >= :since
"""
OLDEST_EXECUTION = """
SELECT min(executed_at) FROM pyjobqueue_rate_executions
WHERE queue_name = :queue_name AND executed_at >= :since
"""
PRUNE_EXECUTIONS = """
DELETE FROM pyjobqueue_rate_executions WHERE queue_name = :queue_name AND executed_at < :before
RETURNING id
"""
CLEAR_EXECUTIONS = "DELETE FROM pyjobqueue_rate_executions WHERE queue_name = :queue_name"
GET_NEXT_AVAILABLE = """
SELECT next_available_at FROM pyjobqueue_rate_holds WHERE queue_name = :queue_name
"""
SET_NEXT_AVAILABLE = """
INSERT INTO pyjobqueue_rate_holds (queue_name, next_available_at) VALUES (:queue_name, :until)
ON CONFLICT (queue_name) DO UPDATE SET next_available_at = excluded.next_available_at
"""
CLEAR_NEXT_AVAILABLE = "DELETE FROM pyjobqueue_rate_holds WHERE queue_name = :queue_name"

# A page of the queue's jobs, newest first (keyset: the next page starts below the
# last id). NOT INDEXED makes SQLite walk the primary key backwards and stop after
# `limit` matches: left to itself it reads every job of the queue (or of the status)
# through an index and sorts them, about 150 ms at 200,000 jobs, where this costs
# 0.05 ms for a page of all jobs and at most one pass over the table (13 ms) for a rare
# status (bench/console_paging.py). `before_id` is always given (the engine passes the
# largest id for the first page), so the walk starts where the page does.
PAGE_JOBS = f"""
SELECT {JOB_COLUMNS} FROM pyjobqueue_jobs NOT INDEXED
WHERE queue_name = :queue_name
  AND id < :before_id
  AND (:status IS NULL OR status = :status)
  AND (:kind IS NULL OR kind = :kind)
ORDER BY id DESC
LIMIT :limit
"""
