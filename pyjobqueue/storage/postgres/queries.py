"""Every SQL statement of the PostgreSQL storage, by name, and the schema migrations.

Values are always bound as parameters ($1, $2...); only the constant job statuses
below are written into the SQL, so that the partial indexes match every plan.
All queues share the tables and each statement filters by `queue_name`.
"""

from __future__ import annotations

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

# Every job event is a row of pyjobqueue_events (its id orders the queue's events), and
# a notification of the queue's channel tells subscribers: 'S<id>:<event JSON>' when it
# fits in one, 'R<id>' (read the row) when it does not. A subscriber that lost its
# LISTEN connection reads what it missed back from the table.
NOTIFY_BODY_LIMIT = 7800  # bytes of event JSON in a notification (NOTIFY stops at 8000)


def _notify_logged(channel: str) -> str:
    """pg_notify of the row `logged` of pyjobqueue_events on `channel`."""
    return (
        f"pg_notify({channel}, CASE WHEN octet_length(logged.payload::text) < "
        f"{NOTIFY_BODY_LIMIT} THEN 'S' || logged.id || ':' || logged.payload::text "
        "ELSE 'R' || logged.id END)"
    )


# -- jobs -----------------------------------------------------------------------------------

JOB_COLUMNS = (
    "id",
    "queue_name",
    "input",
    "output",
    "status",
    "progress",
    "progress_message",
    "progress_details",
    "max_retries",
    "run_attempts",
    "error",
    "error_code",
    "created_at",
    "completed_at",
    "run_after",
    "deadline_at",
    "last_ran_at",
    "job_run_id",
    "fingerprint",
    "worker_id",
    "lease_expires_at",
)
_COLUMNS = ", ".join(JOB_COLUMNS)
_JOB_COLUMNS = ", ".join(f"job.{name}" for name in JOB_COLUMNS)

# One statement for any number of jobs; ids come from the sequence in input order.
# The uncorrelated sub-select runs once, and only when a row was inserted.
INSERT_JOBS = """
INSERT INTO pyjobqueue_jobs (
    queue_name, status, input, max_retries, created_at, run_after, deadline_at,
    job_run_id, fingerprint)
SELECT $1, 'PENDING', batch.input::json, batch.max_retries, batch.created_at, batch.run_after,
    batch.deadline_at, batch.job_run_id, batch.fingerprint
FROM unnest($2::text[], $3::bigint[], $4::timestamptz[], $5::timestamptz[],
    $6::timestamptz[], $7::text[], $8::text[])
    WITH ORDINALITY AS batch(input, max_retries, created_at, run_after, deadline_at,
        job_run_id, fingerprint, position)
ORDER BY batch.position
RETURNING id, (SELECT pg_notify($9, $10)) AS announced
"""

GET_JOB = f"SELECT {_COLUMNS} FROM pyjobqueue_jobs WHERE queue_name = $1 AND id = $2"

PEEK_JOBS = f"""
SELECT {_COLUMNS} FROM pyjobqueue_jobs
WHERE queue_name = $1 AND status = $2
ORDER BY run_after, id
LIMIT $3
"""

COUNT_JOBS_BY_STATUS = "SELECT count(*) FROM pyjobqueue_jobs WHERE queue_name = $1 AND status = $2"

COUNT_JOBS = "SELECT count(*) FROM pyjobqueue_jobs WHERE queue_name = $1"

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

# SKIP LOCKED: concurrent claimers take different rows instead of queueing on one.
CLAIM_JOBS = f"""
WITH next AS (
    SELECT id FROM pyjobqueue_jobs
    WHERE queue_name = $1 AND status = 'PENDING' AND run_after <= $2
    ORDER BY run_after, id
    LIMIT $5
    FOR UPDATE SKIP LOCKED
)
UPDATE pyjobqueue_jobs AS job
SET status = 'PROCESSING', worker_id = $3, run_attempts = job.run_attempts + 1,
    last_ran_at = $2, lease_expires_at = $4,
    progress = 0, progress_message = '', progress_details = NULL
FROM next
WHERE job.id = next.id
RETURNING {_JOB_COLUMNS}
"""

# CLAIM_JOBS that also logs and notifies (channel $6) job_start from origin $7 for each
# claimed job whose deadline has not passed at $2; the same JSON as JobEvent.to_json.
CLAIM_JOBS_ANNOUNCING = f"""
WITH next AS (
    SELECT id FROM pyjobqueue_jobs
    WHERE queue_name = $1 AND status = 'PENDING' AND run_after <= $2
    ORDER BY run_after, id
    LIMIT $5
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE pyjobqueue_jobs AS job
    SET status = 'PROCESSING', worker_id = $3, run_attempts = job.run_attempts + 1,
        last_ran_at = $2, lease_expires_at = $4,
        progress = 0, progress_message = '', progress_details = NULL
    FROM next
    WHERE job.id = next.id
    RETURNING {_JOB_COLUMNS}
), logged AS (
    INSERT INTO pyjobqueue_events (queue_name, job_id, payload)
    SELECT $1, claimed.id, json_build_object(
        'name', 'job_start', 'queue_name', claimed.queue_name, 'job_id', claimed.id,
        'args', json_build_array(), 'origin', $7::text, 'error_code', NULL
    )
    FROM claimed
    WHERE claimed.deadline_at IS NULL OR claimed.deadline_at > $2
    ORDER BY claimed.run_after, claimed.id
    RETURNING id, job_id, payload
), told AS (
    SELECT logged.job_id, {_notify_logged("$6")} AS told FROM logged
)
SELECT claimed.*, told.told FROM claimed LEFT JOIN told ON told.job_id = claimed.id
"""

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
# completed_at ($11) and run_after ($12) are set as the kind wants (NULL: kept). Each
# changed row logs and notifies (channel $14) its event ($13, JSON, when not NULL) and,
# when the job can be claimed again, the hint $15. The right-hand sides read the old row.
FINISH_ATTEMPTS = f"""
WITH changed AS (
    UPDATE pyjobqueue_jobs AS job
    SET status = f.status,
        output = CASE WHEN f.kind = 'COMPLETE' THEN f.output::json ELSE job.output END,
        progress = CASE WHEN f.kind = 'COMPLETE' THEN 100 ELSE job.progress END,
        error = CASE WHEN f.kind = 'REQUEUE' THEN job.error ELSE f.error END,
        error_code = CASE WHEN f.kind = 'REQUEUE' THEN job.error_code ELSE f.error_code END,
        completed_at = coalesce(f.completed_at, job.completed_at),
        run_after = coalesce(f.run_after, job.run_after),
        run_attempts = CASE WHEN f.kind = 'REQUEUE' THEN greatest(job.run_attempts - 1, 0)
            ELSE job.run_attempts END,
        worker_id = NULL, lease_expires_at = NULL
    FROM unnest($2::bigint[], $3::text[], $4::bigint[], $5::timestamptz[], $6::text[],
            $7::text[], $8::text[], $9::text[], $10::text[], $11::timestamptz[],
            $12::timestamptz[], $13::text[])
        AS f(id, worker_id, attempt, expired_before, kind, status, output, error, error_code,
            completed_at, run_after, payload)
    WHERE job.queue_name = $1 AND job.id = f.id AND job.worker_id = f.worker_id
        AND job.run_attempts = f.attempt AND job.status IN ('PROCESSING', 'ABORTING')
        AND (f.expired_before IS NULL OR job.lease_expires_at < f.expired_before)
    RETURNING job.id, f.kind, f.payload
), logged AS (
    INSERT INTO pyjobqueue_events (queue_name, job_id, payload)
    SELECT $1, changed.id, changed.payload::json FROM changed
    WHERE changed.payload IS NOT NULL
    ORDER BY changed.id
    RETURNING id, job_id, payload
), told AS (
    SELECT logged.job_id, {_notify_logged("$14")} AS told FROM logged
)
SELECT changed.id, told.told,
    CASE WHEN changed.kind IN ('RETRY', 'REQUEUE') THEN pg_notify($14, $15) END AS hinted
FROM changed LEFT JOIN told ON told.job_id = changed.id
"""

# abort: PENDING -> FAILED ($3 error, $4 error_code, $5 completed_at), PROCESSING -> ABORTING.
# The right-hand sides read the row as it was before this update.
_ABORT = """
UPDATE pyjobqueue_jobs
SET status = CASE status WHEN 'PENDING' THEN 'FAILED' ELSE 'ABORTING' END,
    error = CASE status WHEN 'PENDING' THEN $3 ELSE error END,
    error_code = CASE status WHEN 'PENDING' THEN $4 ELSE error_code END,
    completed_at = CASE status WHEN 'PENDING' THEN $5 ELSE completed_at END
"""

ABORT_JOB = f"""{_ABORT}
WHERE queue_name = $1 AND id = $2 AND status IN ('PENDING', 'PROCESSING')
RETURNING id, status
"""

ABORT_JOB_RUN = f"""{_ABORT}
WHERE queue_name = $1 AND job_run_id = $2 AND status IN ('PENDING', 'PROCESSING')
RETURNING id, status
"""

DISABLE_JOB = """
UPDATE pyjobqueue_jobs SET status = 'DISABLED', completed_at = $3
WHERE queue_name = $1 AND id = $2 AND status = 'PENDING'
RETURNING id
"""

# A finished job made new again: $3 run_after; announced like a new job ($4 channel, $5 hint).
RETRY_JOB = """
UPDATE pyjobqueue_jobs
SET status = 'PENDING', run_attempts = 0, run_after = $3, error = NULL, error_code = NULL,
    output = NULL, completed_at = NULL, progress = 0, progress_message = '',
    progress_details = NULL
WHERE queue_name = $1 AND id = $2 AND status IN ('FAILED', 'DISABLED')
RETURNING id, (SELECT pg_notify($4, $5)) AS announced
"""

EXPIRED_LEASES = f"""
SELECT {_COLUMNS} FROM pyjobqueue_jobs
WHERE queue_name = $1 AND status IN ('PROCESSING', 'ABORTING') AND lease_expires_at < $2
ORDER BY lease_expires_at, id
"""

DELETE_FINISHED = """
DELETE FROM pyjobqueue_jobs WHERE queue_name = $1 AND status = $2 AND completed_at < $3
"""

DELETE_JOB = "DELETE FROM pyjobqueue_jobs WHERE queue_name = $1 AND id = $2"

DELETE_QUEUE = """
WITH events AS (DELETE FROM pyjobqueue_events WHERE queue_name = $1)
DELETE FROM pyjobqueue_jobs WHERE queue_name = $1
"""

# -- events -----------------------------------------------------------------------------------

# Log one event ($3, JSON; $2 its job) of queue $1 and notify channel $4 of it.
INSERT_EVENT = f"""
WITH logged AS (
    INSERT INTO pyjobqueue_events (queue_name, job_id, payload) VALUES ($1, $2, $3::json)
    RETURNING id, payload
)
SELECT {_notify_logged("$4")} FROM logged
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
