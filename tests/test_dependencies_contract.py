"""Jobs that wait for other jobs (SPEC 8.7), on every storage backend: WAITING until
every dependency completed, released in the operation that stores the last outcome,
failed transitively with DependencyFailedError when one does not complete."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pyjobqueue import (
    AbortSignalJobError,
    DependencyFailedError,
    Job,
    JobContext,
    JobNotFoundError,
    JobQueueClient,
    JobQueueServer,
    JobStatus,
    PermanentJobError,
)
from pyjobqueue.events import EventName, JobEvent
from pyjobqueue.outcome import Outcome, OutcomeKind
from pyjobqueue.storage import QueueStorage, core

from .conftest import Storages, eventually
from .jobs import new_job

LEASE = timedelta(seconds=30)
FAST: dict[str, Any] = {"poll_interval_ms": 20, "cleanup_interval_ms": 50}


def now() -> datetime:
    return datetime.now(UTC)


class Sum(Job[dict[str, Any], int]):
    """Adds `add` to the outputs of the jobs it depends on; fails when told to."""

    kind = "sum"
    max_retries = 0

    async def execute(self, input: dict[str, Any], context: JobContext) -> int:
        outputs = await context.dependency_outputs()
        assert set(outputs) == set(context.job.depends_on)
        if input.get("fail"):
            raise PermanentJobError("told to fail")
        return int(input["add"]) + sum(int(output) for output in outputs.values())


# -- the storage, driven directly ---------------------------------------------------


async def claim_one(storage: QueueStorage) -> Job[Any, Any] | None:
    at = now()
    jobs = await storage.claim("w", at, at + LEASE, 1)
    return jobs[0] if jobs else None


async def complete(storage: QueueStorage, job: Job[Any, Any], output: Any = "done") -> None:
    assert job.id is not None and job.worker_id is not None
    outcome = Outcome(OutcomeKind.COMPLETE, now(), output=output)
    assert await storage.finish(job.id, job.worker_id, job.run_attempts, outcome)


async def fail(storage: QueueStorage, job: Job[Any, Any]) -> None:
    assert job.id is not None and job.worker_id is not None
    outcome = Outcome(OutcomeKind.FAIL, now(), error="boom", error_code="PermanentJobError")
    assert await storage.finish(job.id, job.worker_id, job.run_attempts, outcome)


async def status(storage: QueueStorage, job_id: int) -> JobStatus:
    job = await storage.get(job_id)
    assert job is not None
    return job.status


async def collect_errors(storage: QueueStorage) -> tuple[list[JobEvent], Any]:
    errors: list[JobEvent] = []

    def listener(event: JobEvent) -> None:
        if event.name == EventName.JOB_ERROR:
            errors.append(event)

    return errors, await storage.subscribe(listener)


async def test_a_waiting_job_is_never_claimed_and_is_released_by_the_last_completion(
    storage: QueueStorage,
) -> None:
    first, second = await storage.add_batch([new_job(), new_job()])
    (waiting,) = await storage.add_batch([new_job(depends_on=[first, second])])
    job = await storage.get(waiting)
    assert job is not None
    assert (job.status, job.depends_on, job.dependencies_left) == (
        JobStatus.WAITING,
        [first, second],
        2,
    )
    assert await storage.size(JobStatus.WAITING) == 1
    assert [j.id for j in await storage.peek(JobStatus.WAITING, 10)] == [waiting]
    claimed = await claim_one(storage)
    assert claimed is not None and claimed.id == first
    await complete(storage, claimed)
    assert await status(storage, waiting) is JobStatus.WAITING
    claimed = await claim_one(storage)
    assert claimed is not None and claimed.id == second
    assert await claim_one(storage) is None  # the waiting job is not claimable
    await complete(storage, claimed)
    # The outcome of the last dependency and the release are one operation.
    released = await storage.get(waiting)
    assert released is not None
    assert (released.status, released.dependencies_left) == (JobStatus.PENDING, 0)
    claimed = await claim_one(storage)
    assert claimed is not None and claimed.id == waiting
    assert claimed.depends_on == [first, second]


async def test_a_released_job_is_due_from_the_completion_that_released_it(
    storage: QueueStorage,
) -> None:
    later = now() + timedelta(hours=1)
    (dependency,) = await storage.add_batch([new_job()])
    soon, scheduled = await storage.add_batch(
        [new_job(depends_on=[dependency]), new_job(depends_on=[dependency], run_after=later)]
    )
    claimed = await claim_one(storage)
    assert claimed is not None and claimed.id == dependency
    await complete(storage, claimed)
    done = await storage.get(dependency)
    assert done is not None and done.completed_at is not None
    before_completion = done.completed_at - timedelta(milliseconds=1)
    released = await storage.get(soon)
    assert released is not None and released.status is JobStatus.PENDING
    assert released.run_after == done.completed_at  # it was due before: now from then
    # A claim whose time is before the completion does not take it.
    assert await storage.claim("w", before_completion, before_completion + LEASE, 5) == []
    kept = await storage.get(scheduled)
    assert kept is not None and kept.run_after == later  # due later anyway: kept


async def test_a_failure_fails_every_job_waiting_on_it_transitively_with_one_event_each(
    storage: QueueStorage,
) -> None:
    root = await storage.add(new_job())
    other = await storage.add(new_job())
    (child,) = await storage.add_batch([new_job(depends_on=[root, other])])
    (grandchild,) = await storage.add_batch([new_job(depends_on=[child])])
    (unrelated,) = await storage.add_batch([new_job(depends_on=[other])])
    errors, unsubscribe = await collect_errors(storage)
    try:
        claimed = await claim_one(storage)
        assert claimed is not None and claimed.id == root
        await fail(storage, claimed)
        for job_id in (child, grandchild):
            job = await storage.get(job_id)
            assert job is not None
            assert (job.status, job.error, job.error_code) == (
                JobStatus.FAILED,
                "Dependency failed",
                "DependencyFailedError",
            )
            assert job.completed_at is not None
        assert await status(storage, unrelated) is JobStatus.WAITING
        await eventually(lambda: _at_least(errors, 2))
        failed = sorted(event.job_id for event in errors if event.job_id != root)
        assert failed == [child, grandchild]
        for event in errors:
            if event.job_id != root:
                assert (event.error, event.error_code) == (
                    "Dependency failed",
                    "DependencyFailedError",
                )
        # `other` completing later changes nothing for the failed child.
        claimed = await claim_one(storage)
        assert claimed is not None and claimed.id == other
        await complete(storage, claimed)
        assert await status(storage, child) is JobStatus.FAILED
        assert await status(storage, unrelated) is JobStatus.PENDING
    finally:
        await unsubscribe()


async def _at_least(events: list[JobEvent], count: int) -> bool:
    return len(events) >= count


async def test_dependencies_finished_at_submit_count_at_once(storage: QueueStorage) -> None:
    done = await storage.add(new_job())
    claimed = await claim_one(storage)
    assert claimed is not None
    await complete(storage, claimed)
    broken = await storage.add(new_job())
    claimed = await claim_one(storage)
    assert claimed is not None
    await fail(storage, claimed)
    errors, unsubscribe = await collect_errors(storage)
    try:
        (ready,) = await storage.add_batch([new_job(depends_on=[done])])
        assert await status(storage, ready) is JobStatus.PENDING
        (doomed,) = await storage.add_batch([new_job(depends_on=[done, broken])])
        job = await storage.get(doomed)
        assert job is not None
        assert (job.status, job.error_code) == (JobStatus.FAILED, "DependencyFailedError")
        await eventually(lambda: _at_least(errors, 1))
        assert [event.job_id for event in errors] == [doomed]
    finally:
        await unsubscribe()


async def test_an_unknown_dependency_stores_nothing(storages: Storages) -> None:
    storage = await storages.queue()
    elsewhere = await storages.queue("other")
    known = await storage.add(new_job())
    # (ids are per queue in memory, shared by the queues of one database elsewhere)
    *_, foreign = await elsewhere.add_batch([new_job(), new_job(), new_job()])
    for depends_on in ([known, 987654], [foreign]):
        with pytest.raises(JobNotFoundError, match="depends_on"):
            await storage.add_batch([new_job(depends_on=depends_on), new_job()])
    assert await storage.size(None) == 1


async def test_abort_disable_and_delete_of_a_dependency_fail_its_dependants(
    storage: QueueStorage,
) -> None:
    ids = await storage.add_batch([new_job(), new_job(), new_job()])
    dependants = []
    for job_id in ids:
        dependants += await storage.add_batch([new_job(depends_on=[job_id])])
    (last,) = await storage.add_batch([new_job(depends_on=[dependants[0]])])
    # Aborting a WAITING job fails it like a PENDING one, and its dependants with it.
    assert await storage.abort(dependants[0], now()) is JobStatus.FAILED
    aborted = await storage.get(dependants[0])
    assert aborted is not None and aborted.error_code == AbortSignalJobError.__name__
    assert await status(storage, last) is JobStatus.FAILED
    assert await status(storage, ids[0]) is JobStatus.PENDING  # upstream is untouched
    assert await storage.disable(ids[1], now())
    assert await status(storage, dependants[1]) is JobStatus.FAILED
    assert await storage.delete(ids[2])
    assert await status(storage, dependants[2]) is JobStatus.FAILED
    # A WAITING job can be disabled too.
    (waiting,) = await storage.add_batch([new_job(depends_on=[ids[0]])])
    assert await storage.disable(waiting, now())
    assert await status(storage, waiting) is JobStatus.DISABLED


async def test_a_deleted_dependency_fails_its_dependants_with_their_events(
    storage: QueueStorage,
) -> None:
    dependency = await storage.add(new_job())
    (dependant,) = await storage.add_batch([new_job(depends_on=[dependency])])
    errors, unsubscribe = await collect_errors(storage)
    try:
        assert await storage.delete(dependency)
        await eventually(lambda: _at_least(errors, 1))
        assert [(event.job_id, event.error_code) for event in errors] == [
            (dependant, "DependencyFailedError")
        ]
        assert await status(storage, dependant) is JobStatus.FAILED
    finally:
        await unsubscribe()


async def test_a_job_that_itself_failed_with_the_dependency_error_fails_its_dependants(
    storage: QueueStorage,
) -> None:
    # The error code is the job's own (it re-raised DependencyFailedError): it is a
    # failure like any other for the jobs waiting on it.
    dependency = await storage.add(new_job())
    (dependant,) = await storage.add_batch([new_job(depends_on=[dependency])])
    claimed = await claim_one(storage)
    assert claimed is not None and claimed.id == dependency
    outcome = Outcome(OutcomeKind.FAIL, now(), error="upstream", error_code="DependencyFailedError")
    assert await storage.finish(dependency, "w", claimed.run_attempts, outcome)
    assert await status(storage, dependant) is JobStatus.FAILED


async def test_aborting_a_run_aborts_each_of_its_jobs_as_itself(storage: QueueStorage) -> None:
    first = await storage.add(new_job(job_run_id="run"))
    (second,) = await storage.add_batch([new_job(job_run_id="run", depends_on=[first])])
    (outside,) = await storage.add_batch([new_job(depends_on=[second])])
    errors, unsubscribe = await collect_errors(storage)
    try:
        changed = await storage.abort_job_run("run", now())
        assert changed == [(first, JobStatus.FAILED), (second, JobStatus.FAILED)]
        for job_id in (first, second):
            job = await storage.get(job_id)
            assert job is not None and job.error_code == AbortSignalJobError.__name__
        # Only the job outside the run fails for its dependency, with its event.
        await eventually(lambda: _at_least(errors, 1))
        assert [(event.job_id, event.error_code) for event in errors] == [
            (outside, "DependencyFailedError")
        ]
    finally:
        await unsubscribe()


async def test_a_job_failed_at_submit_still_meets_a_held_unique_key(
    storage: QueueStorage,
) -> None:
    broken = await storage.add(new_job())
    claimed = await claim_one(storage)
    assert claimed is not None
    await fail(storage, claimed)
    holder = await storage.add(new_job(unique_key="k"))
    (again,) = await storage.add_jobs([new_job(unique_key="k", depends_on=[broken])])
    assert (again.id, again.created) == (holder, False)
    first, second = await storage.add_jobs(
        [new_job(unique_key="j", depends_on=[broken]), new_job(unique_key="j")]
    )
    assert first.created and (second.id, second.created) == (first.id, False)


async def test_cleanup_keeps_a_completed_dependency_until_its_dependants_finish(
    storage: QueueStorage,
) -> None:
    first = await storage.add(new_job())
    second = await storage.add(new_job())
    (waiting,) = await storage.add_batch([new_job(depends_on=[first, second])])
    claimed = await claim_one(storage)
    assert claimed is not None and claimed.id == first
    await complete(storage, claimed, output={"part": 1})
    later = now() + timedelta(hours=1)
    assert await storage.delete_finished(JobStatus.COMPLETED, later) == 0
    assert await storage.get(first) is not None
    for _ in range(2):
        claimed = await claim_one(storage)
        assert claimed is not None
        await complete(storage, claimed)
    assert claimed.id == waiting
    assert await storage.delete_finished(JobStatus.COMPLETED, later) == 3


async def test_cleanup_deletes_chunk_by_chunk_past_the_jobs_it_keeps(
    storage: QueueStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(core, "CLEANUP_CHUNK", 3)
    ids = await storage.add_batch([new_job({"i": i}) for i in range(9)])
    # The third job has a dependant that has not finished: it stays, wherever it sits.
    (waiting,) = await storage.add_batch([new_job(depends_on=[ids[2]])])
    for _ in ids:
        claimed = await claim_one(storage)
        assert claimed is not None and claimed.id in ids
        await complete(storage, claimed)
    later = now() + timedelta(hours=1)
    assert await storage.delete_finished(JobStatus.COMPLETED, later) == 8
    assert [job.id for job in await storage.peek(JobStatus.COMPLETED, 20)] == [ids[2]]
    assert await status(storage, waiting) is JobStatus.PENDING
    assert await storage.delete_finished(JobStatus.COMPLETED, later) == 0


async def test_retry_of_a_dependant_needs_its_dependencies_completed(
    storage: QueueStorage,
) -> None:
    dependency = await storage.add(new_job())
    (dependant,) = await storage.add_batch([new_job(depends_on=[dependency])])
    claimed = await claim_one(storage)
    assert claimed is not None
    await fail(storage, claimed)
    assert await status(storage, dependant) is JobStatus.FAILED
    assert not await storage.retry(dependant, now())  # its dependency failed
    assert await storage.retry(dependency, now())
    claimed = await claim_one(storage)
    assert claimed is not None and claimed.id == dependency
    await complete(storage, claimed)
    assert await storage.retry(dependant, now())
    assert await status(storage, dependant) is JobStatus.PENDING


async def test_a_waiting_job_holds_its_unique_key(storage: QueueStorage) -> None:
    dependency = await storage.add(new_job())
    (first,) = await storage.add_jobs([new_job(unique_key="k", depends_on=[dependency])])
    assert first.created
    (again,) = await storage.add_jobs([new_job(unique_key="k")])
    assert (again.id, again.created) == (first.id, False)


# -- clients and servers ------------------------------------------------------------------


@pytest.fixture
async def queue(storage: QueueStorage) -> AsyncIterator[tuple[JobQueueClient[Any, Any], Any]]:
    server: JobQueueServer[Any, Any] = JobQueueServer(Sum, storage=storage, **FAST)
    client: JobQueueClient[Any, Any] = JobQueueClient(storage=storage)
    client.attach(server)
    await server.start()
    try:
        yield client, server
    finally:
        await server.stop()
        client.detach()


async def test_a_chain_of_a_hundred_jobs_runs_in_order(queue: Any) -> None:
    client, _server = queue
    handles = [await client.submit({"add": 1}, kind=Sum)]
    for _ in range(99):
        handles.append(await client.submit({"add": 1}, kind=Sum, depends_on=[handles[-1]]))
    assert await handles[-1].wait_for(timeout=60) == 100
    jobs = [await client.get_job(handle.id) for handle in handles]
    assert [job.output for job in jobs] == list(range(1, 101))
    for earlier, later in itertools.pairwise(jobs):
        assert later.last_ran_at >= earlier.completed_at


async def test_a_diamond_combines_outputs_and_a_failure_in_it_fails_what_follows(
    queue: Any,
) -> None:
    client, server = queue
    errors: list[int] = []
    server.on(EventName.JOB_ERROR, lambda queue_name, job_id, error: errors.append(job_id))
    top = await client.submit({"add": 1}, kind=Sum)
    left = await client.submit({"add": 10}, kind=Sum, depends_on=[top])
    right = await client.submit({"add": 100}, kind=Sum, depends_on=[top.id])
    bottom = await client.submit({"add": 1000}, kind=Sum, depends_on=[left, right])
    assert await bottom.wait_for(timeout=30) == 1000 + 11 + 101

    top = await client.submit({"add": 1}, kind=Sum)
    left = await client.submit({"add": 10, "fail": True}, kind=Sum, depends_on=[top])
    right = await client.submit({"add": 100}, kind=Sum, depends_on=[top])
    bottom = await client.submit({"add": 1000}, kind=Sum, depends_on=[left, right])
    after = await client.submit({"add": 1}, kind=Sum, depends_on=[bottom])
    with pytest.raises(PermanentJobError, match="told to fail"):
        await left.wait_for(timeout=30)
    for handle in (bottom, after):
        with pytest.raises(DependencyFailedError, match="Dependency failed"):
            await handle.wait_for(timeout=30)
    assert await right.wait_for(timeout=30) == 101
    await eventually(lambda: _listed(errors, 3))
    assert sorted(errors) == sorted([left.id, bottom.id, after.id])  # one job_error each


async def _listed(items: list[int], count: int) -> bool:
    await asyncio.sleep(0)
    return len(items) >= count


async def test_fan_out_fan_in_with_a_batch(queue: Any) -> None:
    client, _server = queue
    parts = await client.submit_batch([{"add": n} for n in range(1, 11)], kind=Sum)
    (total,) = await client.submit_batch([{"add": 0}], kind=Sum, depends_on=parts)
    assert await total.wait_for(timeout=30) == sum(range(1, 11))
    waiting = await client.submit_batch(
        [{"add": 1}, {"add": 2}], kind=Sum, depends_on=[total, parts[0]]
    )
    assert [await handle.wait_for(timeout=30) for handle in waiting] == [57, 58]


async def test_bad_dependencies_are_refused_and_store_nothing(queue: Any) -> None:
    client, _server = queue
    for bad, error in (
        ("1", TypeError),
        (1, TypeError),
        ([True], TypeError),
        ([1.0], TypeError),
        ([0], ValueError),
        ([-3], ValueError),
    ):
        with pytest.raises(error, match="depends_on"):
            await client.submit({"add": 1}, depends_on=bad)
    with pytest.raises(JobNotFoundError):
        await client.submit({"add": 1}, depends_on=[424242])
    assert await client.size(None) == 0
