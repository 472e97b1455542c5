"""What only the SQLite backend has for SPEC section 8: schema migration 3 of a file in
use, the query plans of claims, lookups and peeks, and unique keys across processes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pyjobqueue import transitions
from pyjobqueue.job import Job, JobStatus
from pyjobqueue.outcome import Outcome, OutcomeKind
from pyjobqueue.storage import SqliteQueueStorage
from pyjobqueue.storage.sqlite import migrations, queries

from .backend_sqlite import BACKEND
from .children import START_TIMEOUT, Child

pytestmark = pytest.mark.skipif(
    BACKEND.unavailable_reason() is not None, reason=str(BACKEND.unavailable_reason())
)

T0 = datetime(2031, 3, 4, 5, 6, 7, tzinfo=UTC)
LEASE = timedelta(seconds=30)


def micros(when: datetime) -> int:
    return (when - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "jobs.db"


@pytest.fixture
async def storage(path: Path) -> AsyncIterator[SqliteQueueStorage]:
    async with SqliteQueueStorage(path, "q", poll_interval_ms=20) as opened:
        yield opened


@contextlib.contextmanager
def raw_session(path: Path) -> Iterator[sqlite3.Connection]:
    """A plain stdlib connection to the file, as another program would open it."""
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        yield connection
    finally:
        connection.close()


# -- a file of the previous release, upgraded in place ------------------------------------

# The INSERT of the release before migration 3, as its processes still run it.
RELEASE_2_INSERT = """
INSERT INTO pyjobqueue_jobs (
    queue_name, input, output, status, progress, progress_message, progress_details,
    max_retries, run_attempts, error, error_code, created_at, completed_at, run_after,
    deadline_at, last_ran_at, job_run_id, fingerprint
) VALUES (
    :queue_name, :input, :output, :status, :progress, :progress_message, :progress_details,
    :max_retries, :run_attempts, :error, :error_code, :created_at, :completed_at, :run_after,
    :deadline_at, :last_ran_at, :job_run_id, :fingerprint
)
"""


def release_2_row(name: str, run_after: datetime, status: str = "PENDING") -> dict[str, Any]:
    """The parameters of RELEASE_2_INSERT for a job with input {"name": name}."""
    return {
        "queue_name": "q",
        "input": json.dumps({"name": name}),
        "output": None,
        "status": status,
        "progress": 0.0,
        "progress_message": "",
        "progress_details": None,
        "max_retries": 2,
        "run_attempts": 0,
        "error": None,
        "error_code": None,
        "created_at": micros(T0),
        "completed_at": None,
        "run_after": micros(run_after),
        "deadline_at": None,
        "last_ran_at": None,
        "job_run_id": None,
        "fingerprint": None,
    }


def release_2_file(path: Path, rows: list[dict[str, Any]]) -> list[int]:
    """A file as the previous release leaves it (migrations 1 and 2), with these jobs."""
    with raw_session(path) as connection:
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute(queries.CREATE_MIGRATIONS_TABLE)
        for migration in migrations.MIGRATIONS[:2]:
            for statement in migration.steps:
                connection.execute(statement)
            connection.execute(
                f"INSERT INTO {migrations.MIGRATIONS_TABLE} VALUES (?, 0)", (migration.version,)
            )
        return [
            connection.execute(RELEASE_2_INSERT + "RETURNING id", row).fetchone()[0] for row in rows
        ]


def plan(path: Path, statement: str, params: dict[str, Any]) -> list[tuple[int, int, str]]:
    """EXPLAIN QUERY PLAN of a statement on the file: (id, parent, detail) rows."""
    with raw_session(path) as connection:
        rows = connection.execute(f"EXPLAIN QUERY PLAN {statement}", params).fetchall()
    return [(row[0], row[1], row[3]) for row in rows]


def details(rows: list[tuple[int, int, str]]) -> list[str]:
    return [detail for _id, _parent, detail in rows]


CLAIM_PARAMS = {
    "queue_name": "q",
    "worker_id": "w",
    "now": micros(T0),
    "lease_until": micros(T0 + LEASE),
    "limit": 10,
    "origin": None,
}
CLAIM_INDEX_WALK = "USING COVERING INDEX pyjobqueue_jobs_claim (queue_name=? AND status=?)"
KIND_INDEX_WALK = (
    "SEARCH pyjobqueue_jobs USING COVERING INDEX pyjobqueue_jobs_kind "
    "(queue_name=? AND kind=? AND status=?)"
)


async def test_a_file_of_the_previous_release_is_upgraded_in_place(path: Path) -> None:
    rows = [
        release_2_row("late", T0 - timedelta(seconds=1)),
        release_2_row("early", T0 - timedelta(seconds=3)),
        release_2_row("done", T0 - timedelta(seconds=9), status="COMPLETED"),
        release_2_row("middle", T0 - timedelta(seconds=2)),
        release_2_row("running", T0 - timedelta(seconds=5)),
    ]
    late, early, done, middle, running = release_2_file(path, rows)
    with raw_session(path) as connection:  # a worker of that release runs one of them
        connection.execute(
            "UPDATE pyjobqueue_jobs SET status = 'PROCESSING', worker_id = 'old', "
            "run_attempts = 1, lease_expires_at = ? WHERE id = ?",
            (micros(T0 + LEASE), running),
        )
    async with SqliteQueueStorage(path, "q") as storage:
        for job_id, name in [(late, "late"), (early, "early"), (done, "done")]:
            job = await storage.get(job_id)
            assert job is not None and job.input == {"name": name}
            assert (job.kind, job.priority, job.unique_key, job.metadata) == (None, 0, None, {})
            assert (job.timeout_ms, job.error_traceback, job.unreadable) == (None, None, None)
        pending = await storage.peek(JobStatus.PENDING, 10)
        assert [job.id for job in pending] == [early, middle, late]
        assert await storage.counts() == {
            (None, JobStatus.PENDING): 3,
            (None, JobStatus.COMPLETED): 1,
            (None, JobStatus.PROCESSING): 1,
        }
        # The old worker's attempt still ends as it would have.
        outcome = Outcome(OutcomeKind.COMPLETE, T0, output={"ok": True})
        assert await storage.finish(running, "old", 1, outcome)
        # A process of that release still running inserts its way; the job reads as new.
        with raw_session(path) as connection:
            row = release_2_row("from an old process", T0 - timedelta(seconds=4))
            (older,) = connection.execute(RELEASE_2_INSERT + "RETURNING id", row).fetchone()
        urgent = await storage.add(Job(input={"name": "urgent"}, priority=1, run_after=T0))
        claimed = await storage.claim("w", T0, T0 + LEASE, 10, kinds={"anything"})
        assert [job.id for job in claimed] == [urgent, older, early, middle, late]
    with raw_session(path) as connection:
        versions = connection.execute(f"SELECT version FROM {migrations.MIGRATIONS_TABLE}")
        assert [version for (version,) in versions] == list(range(1, migrations.LATEST_VERSION + 1))
        claim_index = connection.execute("PRAGMA index_xinfo(pyjobqueue_jobs_claim)").fetchall()
        assert [(row[2], row[3]) for row in claim_index if row[5]] == [
            ("queue_name", 0),
            ("status", 0),
            ("priority", 1),  # descending
            ("run_after", 0),
            ("id", 0),
        ]
        tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master")}
    assert {"pyjobqueue_queues", "pyjobqueue_jobs_kind", "pyjobqueue_jobs_unique_key"} <= tables
    assert CLAIM_INDEX_WALK in " ".join(details(plan(path, queries.CLAIM_JOBS, CLAIM_PARAMS)))


# -- query plans ---------------------------------------------------------------------------


async def fill(storage: SqliteQueueStorage, path: Path) -> None:
    """Thousands of jobs of a few kinds, priorities, statuses and keys (some pending)."""
    jobs: list[Job[Any, Any]] = [
        Job(
            input={"i": i},
            kind=[None, "a", "a", "a", "b"][i % 5],
            priority=[0, 0, 0, 5, -1][i % 7 % 5],
            unique_key=f"key {i}" if i % 3 == 0 else None,
            run_after=T0 - timedelta(seconds=i % 100 - 50),
        )
        for i in range(3000)
    ]
    await storage.add_batch(jobs)
    with raw_session(path) as connection:  # most of them done, as in a queue that runs
        connection.execute(
            "UPDATE pyjobqueue_jobs SET status = 'COMPLETED', completed_at = 1 WHERE id % 4 <> 0"
        )


@pytest.mark.parametrize("analyzed", [False, True], ids=["as created", "after ANALYZE"])
async def test_claims_read_their_index_in_claim_order(
    storage: SqliteQueueStorage, path: Path, analyzed: bool
) -> None:
    """One index walk in claim order at any depth: no sort of the due jobs, whatever the
    planner knows of the data (ANALYZE gives it statistics)."""
    await fill(storage, path)
    if analyzed:
        with raw_session(path) as connection:
            connection.execute("ANALYZE")
    any_kind = details(plan(path, queries.CLAIM_JOBS, CLAIM_PARAMS))
    assert any(CLAIM_INDEX_WALK in detail for detail in any_kind), any_kind
    assert not any("TEMP B-TREE" in detail for detail in any_kind), any_kind

    # A server's kinds (and no kind): one walk of the kind index per kind, in claim
    # order; only the few jobs those walks return (at most `limit` each) are sorted.
    params = {**CLAIM_PARAMS, "kind_0": "a", "kind_1": "b"}
    of_kinds = plan(path, queries.claim_jobs_of_each_kind(2), params)
    assert details(of_kinds).count(KIND_INDEX_WALK) == 3, of_kinds
    parents = {row_id: parent for row_id, parent, _detail in of_kinds}
    kinds = {row_id: detail for row_id, _parent, detail in of_kinds}
    sorts = [row_id for row_id, _parent, detail in of_kinds if "TEMP B-TREE" in detail]
    assert len(sorts) == 1, of_kinds
    assert kinds[parents[sorts[0]]].startswith("LIST SUBQUERY"), of_kinds  # not in a walk

    many = details(plan(path, queries.CLAIM_JOBS_OF_KINDS, {**CLAIM_PARAMS, "kinds": '["a"]'}))
    assert any("USING INDEX pyjobqueue_jobs_claim (queue_name=? AND status=?)" in d for d in many)
    assert not any("TEMP B-TREE" in detail for detail in many), many


@pytest.mark.parametrize("analyzed", [False, True], ids=["as created", "after ANALYZE"])
async def test_outcomes_find_their_jobs_by_id_however_many_run(
    storage: SqliteQueueStorage, path: Path, analyzed: bool
) -> None:
    """A batch of outcomes reads its own JSON once and each job by its id: walking the
    running jobs instead (the claim index) costs the batch once per running job."""
    await fill(storage, path)
    await storage.claim("w", T0 + LEASE, T0 + 2 * LEASE, 500)
    if analyzed:
        with raw_session(path) as connection:
            connection.execute("ANALYZE")
    outcomes = [{"id": job_id, "worker_id": "w", "attempt": 1} for job_id in range(4, 40, 4)]
    params = {"queue_name": "q", "finishes": json.dumps(outcomes)}
    steps = details(plan(path, queries.FINISH_ATTEMPTS, params))
    assert steps[0].startswith("SCAN json_each"), steps
    assert "SEARCH job USING INTEGER PRIMARY KEY (rowid=?)" in steps, steps


@pytest.mark.parametrize("analyzed", [False, True], ids=["as created", "after ANALYZE"])
async def test_peeks_and_key_lookups_use_their_indexes(
    storage: SqliteQueueStorage, path: Path, analyzed: bool
) -> None:
    await fill(storage, path)
    if analyzed:
        with raw_session(path) as connection:
            connection.execute("ANALYZE")
    peek: dict[str, Any] = {"queue_name": "q", "status": "PENDING", "limit": 5}
    checks: list[tuple[str, dict[str, Any], str]] = [
        (queries.PEEK_JOBS, peek, "pyjobqueue_jobs_claim (queue_name=? AND status=?)"),
        (
            queries.PEEK_JOBS_OF_KIND,
            {**peek, "kind": "a"},
            "pyjobqueue_jobs_kind (queue_name=? AND kind=? AND status=?)",
        ),
        (
            queries.COUNT_JOBS_BY_KIND_AND_STATUS,
            {"queue_name": "q"},
            "COVERING INDEX pyjobqueue_jobs_kind (queue_name=?)",
        ),
    ]
    for statement, params, index in checks:
        steps = details(plan(path, statement, params))
        assert any(index in detail for detail in steps), steps
        assert not any("TEMP B-TREE" in detail for detail in steps), steps
    # Finding who holds a key is one lookup in the unique index per key, never a walk
    # over every held key.
    unique = "pyjobqueue_jobs_unique_key (queue_name=? AND unique_key=?)"
    holders: dict[str, Any] = {"queue_name": "q", "unique_keys": '["key 3", "key 6"]'}
    retry: dict[str, Any] = {"queue_name": "q", "id": 4, "now": 0}
    for statement, lookup in [(queries.UNIQUE_KEY_HOLDERS, holders), (queries.RETRY_JOB, retry)]:
        steps = details(plan(path, statement, lookup))
        assert any(unique in detail for detail in steps), steps


async def claim_steps(storage: SqliteQueueStorage, kinds: frozenset[str]) -> tuple[list[int], int]:
    """Claim one job of `kinds`: its id, and how many steps of SQLite's virtual machine
    the claim took."""
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    connection = storage._database._connection
    assert connection is not None
    await connection.set_progress_handler(count, 1)
    try:
        claimed = await storage.claim("w", T0, T0 + LEASE, 1, kinds=kinds)
    finally:
        await connection.set_progress_handler(count, 0)  # below 1: off
    return [job.id or 0 for job in claimed], steps


async def test_a_backlog_of_other_kinds_costs_a_claim_nothing(storage: SqliteQueueStorage) -> None:
    """A server of a rare kind claims with as little work beside 5,000 due jobs of a
    busy kind, ahead of its own in claim order, as beside none."""
    one_kind = frozenset({"rare"})
    # A server of more kinds than it reads apart walks the claim index instead.
    many_kinds = one_kind | {f"kind {i}" for i in range(queries.MAX_KINDS_READ_APART)}

    async def claims() -> tuple[int, int]:
        rare = await storage.add_batch([Job(input="rare", kind="rare", run_after=T0)] * 2)
        (claimed, read_apart), (walked, walk) = [
            await claim_steps(storage, kinds) for kinds in (one_kind, many_kinds)
        ]
        assert claimed + walked == rare
        return read_apart, walk

    alone_read_apart, alone_walk = await claims()
    busy: Job[Any, Any] = Job(input="busy", kind="busy", priority=1, run_after=T0 - LEASE)
    await storage.add_batch([busy] * 5000)
    beside_read_apart, beside_walk = await claims()
    assert beside_read_apart < alone_read_apart * 1.5, (alone_read_apart, beside_read_apart)
    assert beside_walk > alone_walk * 50, (alone_walk, beside_walk)  # it reads the backlog


@pytest.mark.parametrize("count", [queries.MAX_KINDS_READ_APART, queries.MAX_KINDS_READ_APART + 8])
async def test_servers_of_many_kinds_claim_what_the_rules_say(
    storage: SqliteQueueStorage, count: int
) -> None:
    """Up to MAX_KINDS_READ_APART kinds one walk each, more in one walk: the same jobs."""
    kinds = frozenset(f"kind {i}" for i in range(count))
    names = [None, "other", *sorted(kinds)]
    jobs: list[Job[Any, Any]] = [
        Job(
            input=i,
            kind=names[i % len(names)],
            priority=i % 3,
            run_after=T0 - timedelta(seconds=i % 11 - 2),
        )
        for i in range(4 * len(names))
    ]
    await storage.add_batch(jobs)
    pending = await storage.peek(JobStatus.PENDING, len(jobs))
    expected = [job.id for job in pending if transitions.is_claimable(job, T0, kinds)]
    claimed = await storage.claim("w", T0, T0 + LEASE, len(expected) - 5, kinds=kinds)
    assert [job.id for job in claimed] == expected[:-5]
    assert len(await storage.claim("w", T0, T0 + LEASE, 100, kinds=kinds)) == 5


# -- unique keys across processes ------------------------------------------------------------

# Two storages (connections) in one process submit 20 times at once with one shared key,
# alone or in a batch beside a key of their own, and print what became of each job.
SUBMITTER = """
import asyncio, json, sys
from pyjobqueue.job import Job
from pyjobqueue.storage import SqliteQueueStorage

async def main(path, name):
    storages = [SqliteQueueStorage(path, "q") for _ in range(2)]
    for storage in storages:
        await storage.setup_database()
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)

    async def submit(i):
        shared = Job(input=[name, i], unique_key="once")
        jobs = [shared] if i % 2 else [Job(input=[name, i], unique_key=f"{name} {i}"), shared]
        return [list(added) for added in await storages[i % 2].add_jobs(jobs)]

    print(json.dumps(await asyncio.gather(*(submit(i) for i in range(20)))), flush=True)
    for storage in storages:
        await storage.close()

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


@pytest.fixture
async def children() -> AsyncIterator[list[Child]]:
    started: list[Child] = []
    yield started
    for child in started:
        await child.ensure_ended()


@pytest.mark.slow
async def test_processes_submitting_one_key_at_once_store_one_job(
    path: Path, tmp_path: Path, children: list[Child]
) -> None:
    async with SqliteQueueStorage(path, "q"):
        pass  # the schema exists before the race
    for n in range(4):
        children.append(Child(f"submitter-{n}", tmp_path, "-c", SUBMITTER, str(path), f"p{n}"))
    await asyncio.gather(*(child.start() for child in children))
    for child in children:
        assert child.process is not None and child.process.stdin is not None
        child.process.stdin.write(b"go\n")  # they race from here
    outputs = [json.loads(await child.read_line(START_TIMEOUT)) for child in children]
    for child in children:
        await child.stop()
    shared = [rounds[-1] for output in outputs for rounds in output]
    own = [rounds[0] for output in outputs for rounds in output if len(rounds) == 2]
    assert len(shared) == 80 and len(own) == 40
    assert len({job_id for job_id, _created in shared}) == 1
    assert sum(created for _id, created in shared) == 1
    assert all(created for _id, created in own)
    async with SqliteQueueStorage(path, "q") as storage:
        assert await storage.size() == 41
        (holder,) = [
            job for job in await storage.peek(JobStatus.PENDING, 100) if job.unique_key == "once"
        ]
        assert holder.id == shared[0][0]
