"""The SQLite schema, as numbered migrations (see `pyjobqueue.storage.migrations`).

Append, never edit: a database created by an older release is brought up to date by
the migrations it lacks, each in the same transaction as the record of its version.
"""

from __future__ import annotations

from ...transitions import DEPENDENCY_FAILED, DEPENDENCY_FAILED_CODE
from ..migrations import Migration

# The table that records the versions applied (the name of the first release: see
# queries.py).
MIGRATIONS_TABLE = "pyjobqueue_schema_version"

# The time now as the integer microseconds times are stored in (inside a trigger).
_NOW = "CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)"


def _available_json() -> str:
    """The JSON of `JobEvent.job_available` (an SQL expression)."""
    return (
        "json_object('name', 'job_available', 'queue_name', NEW.queue_name, 'job_id', 0, "
        "'args', json_array(), 'origin', '', 'error_code', NULL)"
    )


def _fail_waiting(dependency: str, at: str, when: str = "1") -> str:
    """The UPDATE that fails (`transitions.dependency_failed`) every WAITING job that
    waits for `dependency`, directly or through other WAITING jobs, at time `at`, each
    with the JSON of its `JobEvent.job_error` in `outbox`."""
    return f"""UPDATE pyjobqueue_jobs
            SET status = 'FAILED', error = '{DEPENDENCY_FAILED}',
                error_code = '{DEPENDENCY_FAILED_CODE}', completed_at = {at},
                dependencies_left = 0,
                outbox = json_object('name', 'job_error', 'queue_name', queue_name,
                    'job_id', id, 'args', json_array('{DEPENDENCY_FAILED}'), 'origin', '',
                    'error_code', '{DEPENDENCY_FAILED_CODE}')
            WHERE {when} AND status = 'WAITING' AND id IN (
                WITH RECURSIVE waiting(id) AS (
                    SELECT link.dependant_id FROM pyjobqueue_dependencies AS link
                    WHERE link.dependency_id = {dependency}
                    UNION
                    SELECT link.dependant_id
                    FROM waiting JOIN pyjobqueue_dependencies AS link
                        ON link.dependency_id = waiting.id
                    JOIN pyjobqueue_jobs AS job ON job.id = waiting.id
                    WHERE job.status = 'WAITING'
                )
                SELECT id FROM waiting
            );"""


def _completion_trigger(released: str) -> str:
    """The trigger of a completion (see migration 6); `released`: what more it sets on
    the dependants it makes PENDING."""
    return f"""
        CREATE TRIGGER pyjobqueue_jobs_dependency_completed
        AFTER UPDATE OF status ON pyjobqueue_jobs
        WHEN NEW.has_dependants AND NEW.status = 'COMPLETED' AND OLD.status <> 'COMPLETED'
        BEGIN
            UPDATE pyjobqueue_jobs
            SET dependencies_left = max(dependencies_left - 1, 0),
                status = CASE WHEN dependencies_left <= 1 THEN 'PENDING' ELSE status END{released}
            WHERE status = 'WAITING' AND id IN (
                SELECT dependant_id FROM pyjobqueue_dependencies WHERE dependency_id = NEW.id
            );
            INSERT INTO pyjobqueue_events (queue_name, payload, created_at)
            VALUES (NEW.queue_name, {_available_json()}, {_NOW});
        END
        """


# The release rule since migration 7: a dependant is due no sooner than the completion
# that released it (a claim that began before it never takes it).
_RELEASED_AFTER_COMPLETION = """,
                run_after = CASE WHEN dependencies_left <= 1
                    THEN max(run_after, NEW.completed_at) ELSE run_after END"""


MIGRATIONS: tuple[Migration[tuple[str, ...]], ...] = (
    Migration(
        1,
        "jobs, the change feed, rate limiter executions and holds",
        (
            # AUTOINCREMENT: an id is never reused after a delete, so a client still
            # waiting on a deleted job cannot be answered by a newer job.
            """
        CREATE TABLE pyjobqueue_jobs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            queue_name TEXT NOT NULL,
            input TEXT NOT NULL,
            output TEXT,
            status TEXT NOT NULL,
            progress REAL NOT NULL DEFAULT 0,
            progress_message TEXT NOT NULL DEFAULT '',
            progress_details TEXT,
            max_retries INTEGER NOT NULL,
            run_attempts INTEGER NOT NULL DEFAULT 0,
            error TEXT,
            error_code TEXT,
            created_at INTEGER NOT NULL,
            completed_at INTEGER,
            run_after INTEGER NOT NULL,
            deadline_at INTEGER,
            last_ran_at INTEGER,
            job_run_id TEXT,
            fingerprint TEXT,
            worker_id TEXT,
            lease_expires_at INTEGER
        )
        """,
            # Claims, peek, size and lease scans walk this index in claim order.
            """
        CREATE INDEX pyjobqueue_jobs_claim
        ON pyjobqueue_jobs (queue_name, status, run_after, id)
        """,
            "CREATE INDEX pyjobqueue_jobs_run ON pyjobqueue_jobs (queue_name, job_run_id)",
            "CREATE INDEX pyjobqueue_jobs_fingerprint ON pyjobqueue_jobs (queue_name, fingerprint)",
            # The change feed: AUTOINCREMENT keeps ids rising after pruning, so a
            # subscriber's "id > last seen" never skips a new event.
            """
        CREATE TABLE pyjobqueue_events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            queue_name TEXT NOT NULL,
            payload TEXT NOT NULL,
            created_at INTEGER NOT NULL
        )
        """,
            """
        CREATE TABLE pyjobqueue_rate_executions (
            id INTEGER PRIMARY KEY,
            queue_name TEXT NOT NULL,
            executed_at INTEGER NOT NULL
        )
        """,
            """
        CREATE INDEX pyjobqueue_rate_executions_window
        ON pyjobqueue_rate_executions (queue_name, executed_at)
        """,
            """
        CREATE TABLE pyjobqueue_rate_holds (
            queue_name TEXT PRIMARY KEY,
            next_available_at INTEGER NOT NULL
        )
        """,
        ),
    ),
    Migration(
        2,
        "an outcome and its event in one statement",
        (
            "ALTER TABLE pyjobqueue_jobs ADD COLUMN outbox TEXT",
            # The statement that sets `outbox` stores its event in the same transaction;
            # the column is emptied again at once (recursive triggers are off).
            """
            CREATE TRIGGER pyjobqueue_jobs_outbox AFTER UPDATE OF outbox ON pyjobqueue_jobs
            WHEN NEW.outbox IS NOT NULL
            BEGIN
                INSERT INTO pyjobqueue_events (queue_name, payload, created_at)
                VALUES (
                    NEW.queue_name,
                    NEW.outbox,
                    CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)
                );
                UPDATE pyjobqueue_jobs SET outbox = NULL WHERE id = NEW.id;
            END
            """,
        ),
    ),
    Migration(
        3,
        "kinds, priorities, unique keys, timeouts, tracebacks, metadata; paused queues",
        (
            # Rows of older releases read as: no kind, priority 0, no key, metadata {}.
            "ALTER TABLE pyjobqueue_jobs ADD COLUMN kind TEXT",
            "ALTER TABLE pyjobqueue_jobs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE pyjobqueue_jobs ADD COLUMN unique_key TEXT",
            "ALTER TABLE pyjobqueue_jobs ADD COLUMN metadata TEXT",
            "ALTER TABLE pyjobqueue_jobs ADD COLUMN timeout_ms REAL",
            "ALTER TABLE pyjobqueue_jobs ADD COLUMN error_traceback TEXT",
            # The claim order is now priority DESC, run_after, id. The old index is
            # dropped, not kept beside the new one: its range on run_after looks more
            # selective to the planner, which would then sort every due job.
            "DROP INDEX pyjobqueue_jobs_claim",
            """
        CREATE INDEX pyjobqueue_jobs_claim
        ON pyjobqueue_jobs (queue_name, status, priority DESC, run_after, id)
        """,
            # The claims of a server (its kinds, and no kind) walk this index once per
            # kind, so a backlog of other kinds is never read; peek, size and counts
            # by kind read it alone.
            """
        CREATE INDEX pyjobqueue_jobs_kind
        ON pyjobqueue_jobs (queue_name, kind, status, priority DESC, run_after, id)
        """,
            # At most one unfinished job per key and queue, whatever the process.
            # WAITING is the status of a job that waits for others (a later release).
            """
        CREATE UNIQUE INDEX pyjobqueue_jobs_unique_key
        ON pyjobqueue_jobs (queue_name, unique_key)
        WHERE unique_key IS NOT NULL
        AND status IN ('WAITING', 'PENDING', 'PROCESSING', 'ABORTING')
        """,
            # Per-queue state kept in the file: whether the queue is paused.
            """
        CREATE TABLE pyjobqueue_queues (
            queue_name TEXT PRIMARY KEY,
            paused INTEGER NOT NULL DEFAULT 0,
            updated_at INTEGER NOT NULL
        )
        """,
        ),
    ),
    Migration(
        4,
        "schedules: the last and next tick of each schedule of a queue",
        (
            # One row per schedule and queue; enqueuing a tick advances its row and
            # inserts the job in one write transaction (pyjobqueue.schedules).
            """
        CREATE TABLE pyjobqueue_schedules (
            queue_name TEXT NOT NULL,
            name TEXT NOT NULL,
            spec TEXT NOT NULL,
            last_tick INTEGER,
            next_tick INTEGER NOT NULL,
            PRIMARY KEY (queue_name, name)
        )
        """,
        ),
    ),
    Migration(
        5,
        "the servers of each queue: their last heartbeat",
        (
            """
        CREATE TABLE pyjobqueue_servers (
            queue_name TEXT NOT NULL,
            server_id TEXT NOT NULL,
            host TEXT NOT NULL,
            pid INTEGER,
            kinds TEXT NOT NULL,
            worker_count INTEGER NOT NULL,
            started_at INTEGER NOT NULL,
            last_seen INTEGER NOT NULL,
            expires_at INTEGER NOT NULL,
            paused INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (queue_name, server_id)
        )
        """,
        ),
    ),
    Migration(
        6,
        "dependencies: WAITING jobs, who waits for whom, released and failed by triggers",
        (
            # depends_on: a JSON array of ids (NULL: none); dependencies_left: how many
            # have not completed; has_dependants: some job waits for this one, so its
            # triggers below fire (a job without dependants pays nothing for them).
            "ALTER TABLE pyjobqueue_jobs ADD COLUMN depends_on TEXT",
            "ALTER TABLE pyjobqueue_jobs ADD COLUMN dependencies_left INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE pyjobqueue_jobs ADD COLUMN has_dependants INTEGER NOT NULL DEFAULT 0",
            """
        CREATE TABLE pyjobqueue_dependencies (
            dependency_id INTEGER NOT NULL,
            dependant_id INTEGER NOT NULL,
            PRIMARY KEY (dependency_id, dependant_id)
        ) WITHOUT ROWID
        """,
            # `transitions.settle_dependants`, in the statement that stores the outcome:
            # a completion counts for each WAITING dependant (PENDING at the last one)
            # and hints every process's workers through the events table.
            _completion_trigger(""),
            # A failure or a disabling fails every job waiting on it, transitively, each
            # with its job_error event (through the outbox trigger). The walk goes past
            # the jobs it fails; their own updates do not fire this trigger again
            # (recursive triggers are off: SQLite's default, which we keep).
            f"""
        CREATE TRIGGER pyjobqueue_jobs_dependency_failed
        AFTER UPDATE OF status ON pyjobqueue_jobs
        WHEN NEW.has_dependants AND NEW.status IN ('FAILED', 'DISABLED')
        AND OLD.status NOT IN ('COMPLETED', 'FAILED', 'DISABLED')
        BEGIN
            {_fail_waiting("NEW.id", "coalesce(NEW.completed_at, " + _NOW + ")")}
        END
        """,
            # Deleting an unfinished job fails those waiting on it; its links go.
            f"""
        CREATE TRIGGER pyjobqueue_jobs_dependency_deleted
        AFTER DELETE ON pyjobqueue_jobs
        WHEN OLD.has_dependants
        BEGIN
            {_fail_waiting("OLD.id", _NOW, "OLD.status NOT IN ('COMPLETED', 'FAILED', 'DISABLED')")}
            DELETE FROM pyjobqueue_dependencies WHERE dependency_id = OLD.id;
        END
        """,
            # A deleted dependant is nobody's dependant any more (primary key lookups).
            """
        CREATE TRIGGER pyjobqueue_jobs_dependant_deleted
        AFTER DELETE ON pyjobqueue_jobs
        WHEN OLD.depends_on IS NOT NULL
        BEGIN
            DELETE FROM pyjobqueue_dependencies
            WHERE dependant_id = OLD.id
            AND dependency_id IN (SELECT value FROM json_each(OLD.depends_on));
        END
        """,
        ),
    ),
    Migration(
        7,
        "a released dependant is due from its release",
        (
            "DROP TRIGGER pyjobqueue_jobs_dependency_completed",
            _completion_trigger(_RELEASED_AFTER_COMPLETION),
        ),
    ),
)

LATEST_VERSION = len(MIGRATIONS)
