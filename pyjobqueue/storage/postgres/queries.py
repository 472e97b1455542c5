"""Every SQL statement of the PostgreSQL storage, by name, and the schema migrations.

Values are always bound as parameters ($1, $2...); only the constant job statuses
below are written into the SQL, so that the partial indexes match every plan.
All queues share the tables and each statement filters by `queue_name`.
"""

from __future__ import annotations

from ..records import JOB_COLUMNS

# -- schema and migrations -----------------------------------------------------------------

# pg_advisory_xact_lock key ("pyjobque" as 8 bytes): one setup_database migrates at a time.
SCHEMA_LOCK_KEY = 8104626031055435109
# First key of the two-key advisory lock that serialises one queue's rate limit checks.
RATE_LOCK_NAMESPACE = 1886024050

LOCK_SCHEMA = f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK_KEY})"

CREATE_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS pyjobqueue_schema_migrations (
    version integer PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""

SCHEMA_VERSION = "SELECT coalesce(max(version), 0) FROM pyjobqueue_schema_migrations"

RECORD_MIGRATION = "INSERT INTO pyjobqueue_schema_migrations (version) VALUES ($1)"


# -- the events log -------------------------------------------------------------------------

# Every job event is in a row of pyjobqueue_events (its id orders the queue's events),
# and a notification of the queue's channel tells subscribers: 'S<id>:<payload>' when it
# fits in one, 'R<id>' (read the row) when it does not. A subscriber that lost its
# LISTEN connection reads what it missed back from the table. A payload is one event's
# JSON, or a JSON array of the events of one claim or one batch of outcomes: a row and
# a notification per statement, not per job (each costs a heap row, three index entries
# and a notification; per job, they took more than a third of a drain's time).
NOTIFY_BODY_LIMIT = 7800  # bytes of event JSON in a notification (NOTIFY stops at 8000)
# NOTIFY payloads: a tag, then the data (the triggers of migration 6 send them too).
HINT_TAG = "A"  # a job became claimable; no data
LOGGED_TAG = "S"  # "<id>:<JobEvent as JSON>", the event logged with that id
# "<id>" or "<id>:<names>" of a logged event too large for a notification; the names (a
# comma-separated list) are those of the events it may hold, so that a listener that
# takes none of them need not fetch it (the triggers of migration 6 send no names).
STORED_TAG = "R"
EVENT_TAG = "E"  # a JobEvent as JSON, not logged (sent by releases before the log)


def _notify_logged(channel: str, names: str) -> str:
    """pg_notify of the row `logged` of pyjobqueue_events on `channel`; `names` (SQL
    text) are the names of the events it may hold."""
    return (
        f"pg_notify({channel}, CASE WHEN octet_length(logged.payload::text) < "
        f"{NOTIFY_BODY_LIMIT} THEN '{LOGGED_TAG}' || logged.id || ':' || logged.payload::text "
        f"ELSE '{STORED_TAG}' || logged.id || ':' || {names} END)"
    )


# -- jobs -----------------------------------------------------------------------------------

_COLUMNS = ", ".join(JOB_COLUMNS)
_JOB_COLUMNS = ", ".join(f"job.{name}" for name in JOB_COLUMNS)

# The statuses in which a job holds its unique key (`transitions.UNIQUE_KEY_HOLDING` and
# WAITING), as the partial unique index of migration 3 names them.
_HOLDING_STATUSES = "('WAITING', 'PENDING', 'PROCESSING', 'ABORTING')"

_BATCH = """unnest($2::text[], $3::bigint[], $4::timestamptz[], $5::timestamptz[],
    $6::timestamptz[], $7::text[], $8::text[], $9::text[], $10::integer[], $11::text[],
    $12::text[], $13::double precision[])
    WITH ORDINALITY AS batch(input, max_retries, created_at, run_after, deadline_at,
        job_run_id, fingerprint, kind, priority, unique_key, metadata, timeout_ms, position)"""
_INSERTED_COLUMNS = """queue_name, status, input, max_retries, created_at, run_after,
    deadline_at, job_run_id, fingerprint, kind, priority, unique_key, metadata, timeout_ms"""
_VALUES = """$1, 'PENDING', batch.input::json, batch.max_retries, batch.created_at,
    batch.run_after, batch.deadline_at, batch.job_run_id, batch.fingerprint, batch.kind,
    batch.priority, batch.unique_key, batch.metadata::json, batch.timeout_ms"""
# The uncorrelated sub-select runs once, and only when a row was inserted.
_ANNOUNCE_INSERTED = "RETURNING id, unique_key, (SELECT pg_notify($14, $15)) AS announced"

# One statement for any number of jobs (the arrays $2-$13, one row each); ids come from
# the sequence in input order.
INSERT_JOBS = f"""
INSERT INTO pyjobqueue_jobs ({_INSERTED_COLUMNS})
SELECT {_VALUES}
FROM {_BATCH}
ORDER BY batch.position
{_ANNOUNCE_INSERTED}
"""

# INSERT_JOBS for a batch with unique keys (no key twice in it): a job whose key an
# unfinished job of the queue holds is left out, however many inserts race (an insert
# waits for one that holds the key uncommitted); UNIQUE_KEY_HOLDERS, a later statement
# that sees what committed in between, reads its holder. Ids are drawn in input order,
# but rows go in by key, so that two batches with the same keys take them in one order
# and never wait for each other in a circle (a deadlock).
INSERT_UNIQUE_JOBS = f"""
INSERT INTO pyjobqueue_jobs (id, {_INSERTED_COLUMNS})
SELECT batch.id, {_VALUES}
FROM (
    SELECT nextval(pg_get_serial_sequence('pyjobqueue_jobs', 'id')) AS id, batch.*
    FROM {_BATCH}
    ORDER BY batch.position
) AS batch
ORDER BY batch.unique_key, batch.id
ON CONFLICT (queue_name, unique_key)
    WHERE unique_key IS NOT NULL AND status IN {_HOLDING_STATUSES}
    DO NOTHING
{_ANNOUNCE_INSERTED}
"""

# The jobs new jobs depend on ($2), marked as having dependants (so the triggers of
# migration 6 fire when they finish) and locked until the insert commits: an outcome
# stored meanwhile waits, then its trigger sees the new dependants.
# Locked in id order, as an outcome's trigger locks a job and then its dependants
# (higher ids): the two never wait for each other in a circle.
MARK_DEPENDENCIES = f"""
WITH locked AS (
    SELECT id FROM pyjobqueue_jobs
    WHERE queue_name = $1 AND id = ANY($2::bigint[])
    ORDER BY id
    FOR NO KEY UPDATE
)
UPDATE pyjobqueue_jobs AS job SET has_dependants = true
FROM locked WHERE job.id = locked.id
RETURNING {_JOB_COLUMNS}
"""
# The status of new dependants ($2 ids, then one array per column), set in the insert's
# transaction, and who waits for whom ($2 dependencies, $3 dependants).
SET_DEPENDANTS = """
UPDATE pyjobqueue_jobs AS job
SET status = batch.status, depends_on = batch.depends_on::bigint[],
    dependencies_left = batch.left_count, error = batch.error, error_code = batch.error_code,
    completed_at = batch.completed_at
FROM unnest($2::bigint[], $3::text[], $4::text[], $5::integer[], $6::text[], $7::text[],
        $8::timestamptz[])
    AS batch(id, status, depends_on, left_count, error, error_code, completed_at)
WHERE job.queue_name = $1 AND job.id = batch.id
"""
INSERT_DEPENDENCIES = """
INSERT INTO pyjobqueue_dependencies (dependency_id, dependant_id)
SELECT * FROM unnest($1::bigint[], $2::bigint[])
ON CONFLICT DO NOTHING
"""

UNIQUE_KEY_HOLDERS = f"""
SELECT id, unique_key FROM pyjobqueue_jobs
WHERE queue_name = $1 AND unique_key = ANY($2::text[]) AND status IN {_HOLDING_STATUSES}
"""

GET_JOB = f"SELECT {_COLUMNS} FROM pyjobqueue_jobs WHERE queue_name = $1 AND id = $2"

# Claim order: the highest priority first, then the earliest run_after, the lowest id.
_CLAIM_ORDER = "priority DESC, run_after, id"

PEEK_JOBS = f"""
SELECT {_COLUMNS} FROM pyjobqueue_jobs
WHERE queue_name = $1 AND status = $2
ORDER BY {_CLAIM_ORDER}
LIMIT $3
"""

PEEK_JOBS_OF_KIND = f"""
SELECT {_COLUMNS} FROM pyjobqueue_jobs
WHERE queue_name = $1 AND status = $2 AND kind = $4
ORDER BY {_CLAIM_ORDER}
LIMIT $3
"""

COUNT_JOBS_BY_STATUS = "SELECT count(*) FROM pyjobqueue_jobs WHERE queue_name = $1 AND status = $2"

COUNT_JOBS_OF_KIND = "SELECT count(*) FROM pyjobqueue_jobs WHERE queue_name = $1 AND kind = $2"

COUNT_JOBS_BY_STATUS_OF_KIND = """
SELECT count(*) FROM pyjobqueue_jobs WHERE queue_name = $1 AND status = $2 AND kind = $3
"""

COUNT_JOBS = "SELECT count(*) FROM pyjobqueue_jobs WHERE queue_name = $1"

COUNT_JOBS_BY_KIND_AND_STATUS = """
SELECT kind, status, count(*) AS count FROM pyjobqueue_jobs
WHERE queue_name = $1
GROUP BY kind, status
"""

JOBS_OF_RUN = f"""
SELECT {_COLUMNS} FROM pyjobqueue_jobs
WHERE queue_name = $1 AND job_run_id = $2
ORDER BY id
"""

COMPLETED_BY_FINGERPRINT = f"""
SELECT {_COLUMNS} FROM pyjobqueue_jobs
WHERE queue_name = $1 AND fingerprint = $2 AND status = 'COMPLETED'
ORDER BY completed_at DESC, id DESC
LIMIT 1
"""


def _claim(announcing: bool, of_kinds: bool) -> str:
    """The claim of up to $5 jobs of queue $1 due at $2 for worker $3, leased until $4.

    The jobs come from the claim index in claim order (no sort, at any depth); SKIP
    LOCKED: concurrent claimers take different rows instead of queueing on one. A
    paused queue gives nothing: this statement reads its flag (an InitPlan, run once),
    so no claim that starts after a pause committed takes a job.
    Of kinds: only jobs of no kind or of a kind in the last parameter (a text array).
    Announcing: it also logs and notifies (channel $6), in one row and one notification,
    job_start from origin $7 for each claimed job whose deadline has not passed at $2;
    the same JSON as JobEvent.to_json.
    """
    kinds = f"\n        AND (kind IS NULL OR kind = ANY(${8 if announcing else 6}::text[]))"
    next_jobs = f"""
WITH next AS (
    SELECT id FROM pyjobqueue_jobs
    WHERE queue_name = $1 AND status = 'PENDING' AND run_after <= $2{kinds if of_kinds else ""}
        AND NOT EXISTS (SELECT FROM pyjobqueue_queues WHERE queue_name = $1 AND paused)
    ORDER BY {_CLAIM_ORDER}
    LIMIT $5
    FOR UPDATE SKIP LOCKED
)"""
    update = f"""
UPDATE pyjobqueue_jobs AS job
SET status = 'PROCESSING', worker_id = $3, run_attempts = job.run_attempts + 1,
    last_ran_at = $2, lease_expires_at = $4,
    progress = 0, progress_message = '', progress_details = NULL
FROM next
WHERE job.id = next.id
RETURNING {_JOB_COLUMNS}"""
    if not announcing:
        return f"{next_jobs}{update}\n"
    claimed = update.replace("\n", "\n    ")
    return f"""{next_jobs}, claimed AS ({claimed}
), logged AS (
    INSERT INTO pyjobqueue_events (queue_name, payload)
    SELECT $1, json_agg(json_build_object(
        'name', 'job_start', 'queue_name', claimed.queue_name, 'job_id', claimed.id,
        'args', json_build_array(), 'origin', $7::text, 'error_code', NULL
    ) ORDER BY claimed.priority DESC, claimed.run_after, claimed.id)
    FROM claimed
    WHERE claimed.deadline_at IS NULL OR claimed.deadline_at > $2
    HAVING count(*) > 0
    RETURNING id, payload
), told AS (
    SELECT {_notify_logged("$6", "'job_start'")} AS told FROM logged
)
SELECT claimed.*, (SELECT told FROM told) AS told FROM claimed
"""


CLAIM_JOBS = _claim(announcing=False, of_kinds=False)
CLAIM_JOBS_OF_KINDS = _claim(announcing=False, of_kinds=True)
CLAIM_JOBS_ANNOUNCING = _claim(announcing=True, of_kinds=False)
CLAIM_JOBS_OF_KINDS_ANNOUNCING = _claim(announcing=True, of_kinds=True)

# The attempt a worker owns: ($1 id, $2 queue, $3 worker, $4 attempt).
_ATTEMPT = """
queue_name = $2 AND id = $1 AND worker_id = $3 AND run_attempts = $4
AND status IN ('PROCESSING', 'ABORTING')
"""

RENEW_LEASE = f"""
UPDATE pyjobqueue_jobs SET lease_expires_at = $5
WHERE {_ATTEMPT}
RETURNING status
"""

SAVE_PROGRESS = f"""
UPDATE pyjobqueue_jobs SET progress = $5, progress_message = $6, progress_details = $7
WHERE {_ATTEMPT}
RETURNING id
"""

# finish, for any number of attempts at once (workers finishing together share one
# statement): row i of the arrays is attempt ($2 id, $3 worker, $4 run_attempts) of queue
# $1, changed only while it is that attempt and, with $5 set, only if its lease expired
# before $5. $6 is the outcome kind; its status ($7), output ($8), error ($9, $10),
# traceback ($11), completed_at ($12) and run_after ($13) are set as the kind wants
# (NULL: kept). The events ($14, JSON, when not NULL) of the changed rows are logged and
# notified (channel $15) together, in one row ($17: the names of those events); a job
# that can be claimed again notifies the hint $16. The right-hand sides read the old row.
FINISH_ATTEMPTS = f"""
WITH changed AS (
    UPDATE pyjobqueue_jobs AS job
    SET status = f.status,
        output = CASE WHEN f.kind = 'COMPLETE' THEN f.output::json ELSE job.output END,
        progress = CASE WHEN f.kind = 'COMPLETE' THEN 100 ELSE job.progress END,
        error = CASE WHEN f.kind = 'REQUEUE' THEN job.error ELSE f.error END,
        error_code = CASE WHEN f.kind = 'REQUEUE' THEN job.error_code ELSE f.error_code END,
        error_traceback = CASE WHEN f.kind = 'REQUEUE' THEN job.error_traceback
            ELSE f.traceback END,
        completed_at = coalesce(f.completed_at, job.completed_at),
        run_after = coalesce(f.run_after, job.run_after),
        run_attempts = CASE WHEN f.kind = 'REQUEUE' THEN greatest(job.run_attempts - 1, 0)
            ELSE job.run_attempts END,
        worker_id = NULL, lease_expires_at = NULL
    FROM unnest($2::bigint[], $3::text[], $4::bigint[], $5::timestamptz[], $6::text[],
            $7::text[], $8::text[], $9::text[], $10::text[], $11::text[],
            $12::timestamptz[], $13::timestamptz[], $14::text[])
        AS f(id, worker_id, attempt, expired_before, kind, status, output, error, error_code,
            traceback, completed_at, run_after, payload)
    WHERE job.queue_name = $1 AND job.id = f.id AND job.worker_id = f.worker_id
        AND job.run_attempts = f.attempt AND job.status IN ('PROCESSING', 'ABORTING')
        AND (f.expired_before IS NULL OR job.lease_expires_at < f.expired_before)
    RETURNING job.id, f.kind, f.payload
), logged AS (
    INSERT INTO pyjobqueue_events (queue_name, payload)
    SELECT $1, json_agg(changed.payload::json ORDER BY changed.id) FROM changed
    WHERE changed.payload IS NOT NULL
    HAVING count(*) > 0
    RETURNING id, payload
), told AS (
    SELECT {_notify_logged("$15", "$17::text")} AS told FROM logged
)
SELECT changed.id, (SELECT told FROM told) AS told,
    CASE WHEN changed.kind IN ('RETRY', 'REQUEUE') THEN pg_notify($15, $16) END AS hinted
FROM changed
"""

# abort: PENDING or WAITING -> FAILED ($3 error, $4 error_code, $5 completed_at),
# PROCESSING -> ABORTING. The right-hand sides read the row as it was before this update.
_ABORT = """
UPDATE pyjobqueue_jobs
SET status = CASE status WHEN 'PROCESSING' THEN 'ABORTING' ELSE 'FAILED' END,
    error = CASE status WHEN 'PROCESSING' THEN error ELSE $3 END,
    error_code = CASE status WHEN 'PROCESSING' THEN error_code ELSE $4 END,
    completed_at = CASE status WHEN 'PROCESSING' THEN completed_at ELSE $5 END
"""
_ABORTABLE = "status IN ('WAITING', 'PENDING', 'PROCESSING')"

ABORT_JOB = f"""{_ABORT}
WHERE queue_name = $1 AND id = $2 AND {_ABORTABLE}
RETURNING id, status
"""

ABORT_JOB_RUN = f"""{_ABORT}
WHERE queue_name = $1 AND job_run_id = $2 AND {_ABORTABLE}
RETURNING id, status
"""

DISABLE_JOB = """
UPDATE pyjobqueue_jobs SET status = 'DISABLED', completed_at = $3
WHERE queue_name = $1 AND id = $2 AND status IN ('WAITING', 'PENDING')
RETURNING id
"""

# A finished job made new again: $3 run_after; announced like a new job ($4 channel, $5 hint).
# Not while another job of the queue holds its unique key (the unique index refuses it
# anyway; the check makes that a plain refusal instead of an error in most races), and
# only once every job it depends on is COMPLETED (and still there).
RETRY_JOB = f"""
UPDATE pyjobqueue_jobs AS job
SET status = 'PENDING', run_attempts = 0, run_after = $3, error = NULL, error_code = NULL,
    error_traceback = NULL, output = NULL, completed_at = NULL, progress = 0,
    progress_message = '', progress_details = NULL, dependencies_left = 0
WHERE queue_name = $1 AND id = $2 AND status IN ('FAILED', 'DISABLED')
    AND (unique_key IS NULL OR NOT EXISTS (
        SELECT FROM pyjobqueue_jobs AS holder
        WHERE holder.queue_name = $1 AND holder.unique_key = job.unique_key
            AND holder.status IN {_HOLDING_STATUSES}))
    AND (depends_on IS NULL OR NOT EXISTS (
        SELECT FROM unnest(job.depends_on) AS wanted(id)
        LEFT JOIN pyjobqueue_jobs AS dependency
            ON dependency.id = wanted.id AND dependency.queue_name = $1
        WHERE dependency.status IS DISTINCT FROM 'COMPLETED'))
RETURNING id, (SELECT pg_notify($4, $5)) AS announced
"""

EXPIRED_LEASES = f"""
SELECT {_COLUMNS} FROM pyjobqueue_jobs
WHERE queue_name = $1 AND status IN ('PROCESSING', 'ABORTING') AND lease_expires_at < $2
ORDER BY lease_expires_at, id
"""

# A job some unfinished job depends on stays (that one reads its output when it runs).
# Up to $4 of them: rows another cleanup is deleting are skipped, not waited for.
DELETE_FINISHED = f"""
DELETE FROM pyjobqueue_jobs WHERE id IN (
    SELECT job.id FROM pyjobqueue_jobs AS job
    WHERE job.queue_name = $1 AND job.status = $2 AND job.completed_at < $3
        AND NOT (job.has_dependants AND EXISTS (
            SELECT FROM pyjobqueue_dependencies AS link
            JOIN pyjobqueue_jobs AS dependant ON dependant.id = link.dependant_id
            WHERE link.dependency_id = job.id AND dependant.status IN {_HOLDING_STATUSES}))
    LIMIT $4
    FOR UPDATE SKIP LOCKED
)
"""

DELETE_JOB = "DELETE FROM pyjobqueue_jobs WHERE queue_name = $1 AND id = $2"

DELETE_QUEUE = """
WITH events AS (DELETE FROM pyjobqueue_events WHERE queue_name = $1)
DELETE FROM pyjobqueue_jobs WHERE queue_name = $1
"""

# -- the queue's own state (pyjobqueue_queues) -------------------------------------------------

# Whether it changed: a row comes back only when the queue was not paused before.
PAUSE_QUEUE = """
INSERT INTO pyjobqueue_queues AS queue (queue_name, paused, updated_at) VALUES ($1, true, now())
ON CONFLICT (queue_name) DO UPDATE SET paused = true, updated_at = now() WHERE NOT queue.paused
RETURNING queue_name
"""

# A queue without a row was never paused: nothing to resume.
RESUME_QUEUE = """
UPDATE pyjobqueue_queues SET paused = false, updated_at = now()
WHERE queue_name = $1 AND paused
RETURNING queue_name
"""

IS_PAUSED = "SELECT EXISTS (SELECT FROM pyjobqueue_queues WHERE queue_name = $1 AND paused)"

# -- schedules ----------------------------------------------------------------------------------

SCHEDULE_STATES = (
    "SELECT name, spec, last_tick, next_tick FROM pyjobqueue_schedules WHERE queue_name = $1"
)

# A schedule's row, created when missing, then locked until the transaction ends: the
# servers that check one tick at once take turns, and only the first enqueues it.
ENSURE_SCHEDULE = """
INSERT INTO pyjobqueue_schedules (queue_name, name, spec, last_tick, next_tick)
VALUES ($1, $2, '', NULL, $3)
ON CONFLICT (queue_name, name) DO NOTHING
"""
LOCK_SCHEDULE = """
SELECT name, spec, last_tick, next_tick FROM pyjobqueue_schedules
WHERE queue_name = $1 AND name = $2
FOR UPDATE
"""
SET_SCHEDULE = """
UPDATE pyjobqueue_schedules SET spec = $3, last_tick = $4, next_tick = $5
WHERE queue_name = $1 AND name = $2
"""

# -- servers (heartbeats) -------------------------------------------------------------------

_SERVER_COLUMNS = (
    "server_id, host, pid, kinds, worker_count, started_at, last_seen, expires_at, paused"
)
# Upsert a heartbeat ($2...$10) of queue $1 and forget those that expired before $11.
RECORD_SERVER = f"""
WITH forgotten AS (
    DELETE FROM pyjobqueue_servers WHERE queue_name = $1 AND expires_at < $11
)
INSERT INTO pyjobqueue_servers (queue_name, {_SERVER_COLUMNS})
VALUES ($1, $2, $3, $4, $5::json, $6, $7, $8, $9, $10)
ON CONFLICT (queue_name, server_id) DO UPDATE SET
    host = excluded.host, pid = excluded.pid, kinds = excluded.kinds,
    worker_count = excluded.worker_count, started_at = excluded.started_at,
    last_seen = excluded.last_seen, expires_at = excluded.expires_at, paused = excluded.paused
"""
REMOVE_SERVER = "DELETE FROM pyjobqueue_servers WHERE queue_name = $1 AND server_id = $2"
SERVERS = f"SELECT {_SERVER_COLUMNS} FROM pyjobqueue_servers WHERE queue_name = $1"

# -- events -----------------------------------------------------------------------------------

# Log one event ($3, JSON; $2 its job; $5 its name) of queue $1 and notify channel $4 of it.
INSERT_EVENT = f"""
WITH logged AS (
    INSERT INTO pyjobqueue_events (queue_name, job_id, payload) VALUES ($1, $2, $3::json)
    RETURNING id, payload
)
SELECT {_notify_logged("$4", "$5::text")} FROM logged
"""

# The events of queue $1 after id $2, to replay what a subscriber missed.
EVENTS_AFTER = """
SELECT id, payload FROM pyjobqueue_events WHERE queue_name = $1 AND id > $2 ORDER BY id
"""

LAST_EVENT_ID = "SELECT coalesce(max(id), 0) FROM pyjobqueue_events"

# The log keeps events for $1 seconds: long enough to ride out an outage.
PRUNE_EVENTS = "DELETE FROM pyjobqueue_events WHERE created_at < now() - make_interval(secs => $1)"

FETCH_EVENT = "SELECT payload FROM pyjobqueue_events WHERE id = $1 AND queue_name = $2"

HEALTH_CHECK = "SELECT 1"

# -- rate limiter -------------------------------------------------------------------------------

# Held until the transaction ends: the count and the insert that follow are atomic.
LOCK_RATE_QUEUE = f"SELECT pg_advisory_xact_lock({RATE_LOCK_NAMESPACE}, hashtext($1))"

RECORD_EXECUTION_IF_ROOM = """
INSERT INTO pyjobqueue_rate_executions (queue_name, executed_at)
SELECT $1, $4
WHERE (
    SELECT count(*) FROM pyjobqueue_rate_executions WHERE queue_name = $1 AND executed_at >= $3
) < $2
RETURNING executed_at
"""

COUNT_EXECUTIONS = """
SELECT count(*) FROM pyjobqueue_rate_executions WHERE queue_name = $1 AND executed_at >= $2
"""

OLDEST_EXECUTION = """
SELECT min(executed_at) FROM pyjobqueue_rate_executions
WHERE queue_name = $1 AND executed_at >= $2
"""

GET_NEXT_AVAILABLE = "SELECT next_available_at FROM pyjobqueue_rate_limits WHERE queue_name = $1"

SET_NEXT_AVAILABLE = """
INSERT INTO pyjobqueue_rate_limits (queue_name, next_available_at) VALUES ($1, $2)
ON CONFLICT (queue_name) DO UPDATE SET next_available_at = excluded.next_available_at
"""

PRUNE_EXECUTIONS = """
DELETE FROM pyjobqueue_rate_executions WHERE queue_name = $1 AND executed_at < $2
"""

CLEAR_RATE_LIMIT = """
WITH executions AS (DELETE FROM pyjobqueue_rate_executions WHERE queue_name = $1)
DELETE FROM pyjobqueue_rate_limits WHERE queue_name = $1
"""

# A page of the queue's jobs, newest first (keyset: the next page starts below the
# last id), walking the primary key backwards until `limit` rows matched. The queue is
# compared as `queue_name || ''` so that no index on queue_name applies: the planner
# would otherwise take one whenever it believes the queue small (a new queue, stale
# statistics) and then sort every job of it, 150 ms at 200,000 jobs, where the walk
# costs 0.2 ms a page, and one pass over the table at worst, for matches that are rare
# (bench/console_paging.py). The engine passes the largest id for the first page.
PAGE_JOBS = f"""
SELECT {_COLUMNS} FROM pyjobqueue_jobs
WHERE (queue_name || '') = $1
  AND ($2::text IS NULL OR status = $2::text)
  AND ($3::text IS NULL OR kind = $3::text)
  AND id < $4
ORDER BY id DESC
LIMIT $5
"""
