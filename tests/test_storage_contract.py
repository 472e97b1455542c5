"""The storage contract: every QueueStorage / RateLimiterStorage backend passes these."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from pyjobqueue import JobStatus, transitions
from pyjobqueue._json import fingerprint
from pyjobqueue.events import JobEvent
from pyjobqueue.job import Job
from pyjobqueue.outcome import Outcome, OutcomeKind, decide_recovery
from pyjobqueue.storage import QueueStorage

from .conftest import Storages
from .jobs import new_job


def now() -> datetime:
    return datetime.now(UTC)


def same_time(a: datetime | None, b: datetime | None) -> bool:
    """Equal to the millisecond (every backend keeps at least that)."""
    if a is None or b is None:
        return a is b
    return a.tzinfo is not None and abs((a - b).total_seconds()) < 0.001


async def claim_one(
    storage: QueueStorage, worker: str = "w1", at: datetime | None = None
) -> Job[Any, Any]:
    when = at or now()
    jobs = await storage.claim(worker, when, when + timedelta(seconds=30), 1)
    assert len(jobs) == 1
    return jobs[0]


async def test_add_then_get_keeps_every_field(storage: QueueStorage) -> None:
    created = now()
    run_after = created - timedelta(seconds=5)
    deadline = created + timedelta(hours=1)
    value = {"text": 'héllo "quoted" \' ; DROP TABLE jobs; --', "items": [1, 2.5, None, True]}
    job_id = await storage.add(
        new_job(
            value,
            max_retries=3,
            job_run_id="run-1",
            created_at=created,
            run_after=run_after,
            deadline_at=deadline,
        )
    )
    job = await storage.get(job_id)
    assert job is not None
    assert job.id == job_id
    assert job.queue_name == storage.queue_name
    assert job.input == value
    assert job.status is JobStatus.PENDING
    assert job.max_retries == 3
    assert job.run_attempts == 0
    assert job.job_run_id == "run-1"
    assert job.fingerprint == fingerprint(value)
    assert same_time(job.created_at, created)
    assert same_time(job.run_after, run_after)
    assert same_time(job.deadline_at, deadline)
    assert job.output is None and job.error is None and job.error_code is None
    assert job.completed_at is None and job.last_ran_at is None and job.worker_id is None
    assert job.created_at.utcoffset() == timedelta(0)


async def test_get_unknown_id_is_none(storage: QueueStorage) -> None:
    assert await storage.get(987654321) is None


async def test_add_batch_returns_ids_in_order(storage: QueueStorage) -> None:
    ids = await storage.add_batch([new_job({"i": i}) for i in range(5)])
    assert len(set(ids)) == 5
    for i, job_id in enumerate(ids):
        job = await storage.get(job_id)
        assert job is not None and job.input == {"i": i}
    assert await storage.add_batch([]) == []


async def test_peek_and_size(storage: QueueStorage) -> None:
    base = now()
    late = await storage.add(new_job({"i": 0}, run_after=base + timedelta(seconds=2)))
    early = await storage.add(new_job({"i": 1}, run_after=base - timedelta(seconds=2)))
    middle = await storage.add(new_job({"i": 2}, run_after=base))
    assert [job.id for job in await storage.peek(JobStatus.PENDING, 10)] == [early, middle, late]
    assert [job.id for job in await storage.peek(JobStatus.PENDING, 2)] == [early, middle]
    assert await storage.peek(JobStatus.COMPLETED, 10) == []
    assert await storage.size(JobStatus.PENDING) == 3
    assert await storage.size(JobStatus.FAILED) == 0
    assert await storage.size() == 3


async def test_queues_at_one_location_are_isolated(storages: Storages) -> None:
    first = await storages.queue("first")
    second = await storages.queue("second ' \" ; select 1; -- ünï")
    a = await first.add(new_job({"same": 1}, job_run_id="run"))
    b = await second.add(new_job({"same": 1}, job_run_id="run"))
    assert await second.get(a) is None or a == b
    assert [job.id for job in await first.get_by_run_id("run")] == [a]
    assert [job.id for job in await second.get_by_run_id("run")] == [b]
    assert await first.size() == 1 and await second.size() == 1
    claimed = await claim_one(second)
    assert claimed.id == b and claimed.queue_name == second.queue_name
    assert await first.claim("w", now(), now() + timedelta(seconds=30), 5) != []
    await first.delete_all()
    assert await first.size() == 0
    assert await second.size() == 1


async def test_claim_respects_run_after_order_and_limit(storage: QueueStorage) -> None:
    base = now()
    future = await storage.add(new_job({"i": 0}, run_after=base + timedelta(hours=1)))
    ids = [
        await storage.add(new_job({"i": i}, run_after=base - timedelta(seconds=10 - i)))
        for i in range(1, 4)
    ]
    claimed = await storage.claim("w1", base, base + timedelta(seconds=30), 2)
    assert [job.id for job in claimed] == ids[:2]
    job = claimed[0]
    assert job.status is JobStatus.PROCESSING
    assert job.worker_id == "w1"
    assert job.run_attempts == 1
    assert same_time(job.last_ran_at, base)
    assert same_time(job.lease_expires_at, base + timedelta(seconds=30))
    stored = await storage.get(ids[0])
    assert stored is not None and stored.status is JobStatus.PROCESSING
    rest = await storage.claim("w2", base, base + timedelta(seconds=30), 10)
    assert [job.id for job in rest] == [ids[2]]
    assert await storage.claim("w3", base, base + timedelta(seconds=30), 10) == []
    assert (await storage.get(future)).status is JobStatus.PENDING  # type: ignore[union-attr]


async def test_concurrent_claims_are_exclusive(storages: Storages) -> None:
    storage = await storages.queue()
    ids = await storage.add_batch([new_job({"i": i}) for i in range(30)])
    others = [storage]
    if storages.backend.shares_location:
        others += [await storages.queue() for _ in range(3)]  # separate connections
    when = now()
    rounds = await asyncio.gather(
        *(
            others[i % len(others)].claim(f"w{i}", when, when + timedelta(seconds=30), 4)
            for i in range(12)
        )
    )
    claimed = [cast(int, job.id) for jobs in rounds for job in jobs]
    assert sorted(claimed) == sorted(ids)


async def test_lease_renewal_and_progress_are_guarded(storage: QueueStorage) -> None:
    job_id = await storage.add(new_job())
    job = await claim_one(storage, "w1")
    later = now() + timedelta(minutes=5)
    assert await storage.renew_lease(job_id, "w1", job.run_attempts, later) is JobStatus.PROCESSING
    assert same_time((await storage.get(job_id)).lease_expires_at, later)  # type: ignore[union-attr]
    assert await storage.renew_lease(job_id, "other", job.run_attempts, later) is None
    assert await storage.renew_lease(job_id, "w1", job.run_attempts + 1, later) is None
    details = {"stage": "ü", "n": [1, 2]}
    assert await storage.save_progress(job_id, "w1", 1, 42.5, "half", details)
    stored = await storage.get(job_id)
    assert stored is not None
    assert (stored.progress, stored.progress_message, stored.progress_details) == (
        42.5,
        "half",
        details,
    )
    assert not await storage.save_progress(job_id, "other", 1, 50, "x", None)


async def test_finish_complete(storage: QueueStorage) -> None:
    job_id = await storage.add(new_job())
    await claim_one(storage)
    at = now()
    output = {"result": ["ok", 1.5, {"nested": None}]}
    assert await storage.finish(job_id, "w1", 1, Outcome(OutcomeKind.COMPLETE, at, output=output))
    job = await storage.get(job_id)
    assert job is not None
    assert job.status is JobStatus.COMPLETED
    assert job.output == output
    assert job.progress == 100
    assert same_time(job.completed_at, at)
    assert job.worker_id is None
    # The attempt is over: a second finish (a stale worker) changes nothing.
    assert not await storage.finish(job_id, "w1", 1, Outcome(OutcomeKind.FAIL, at, error="x"))
    assert (await storage.get(job_id)).status is JobStatus.COMPLETED  # type: ignore[union-attr]


async def test_finish_fail_retry_and_requeue(storage: QueueStorage) -> None:
    failing, retrying, requeued = await storage.add_batch([new_job({"i": i}) for i in range(3)])
    await storage.claim("w1", now(), now() + timedelta(seconds=30), 3)
    at = now()
    assert await storage.finish(
        failing, "w1", 1, Outcome(OutcomeKind.FAIL, at, error="boom", error_code="ValueError")
    )
    job = await storage.get(failing)
    assert job is not None and job.status is JobStatus.FAILED
    assert (job.error, job.error_code) == ("boom", "ValueError")
    assert same_time(job.completed_at, at)

    retry_at = at + timedelta(minutes=10)
    assert await storage.finish(
        retrying,
        "w1",
        1,
        Outcome(
            OutcomeKind.RETRY, at, error="later", error_code="RetryableJobError", run_after=retry_at
        ),
    )
    job = await storage.get(retrying)
    assert job is not None and job.status is JobStatus.PENDING
    assert job.run_attempts == 1 and job.error == "later" and job.completed_at is None
    assert same_time(job.run_after, retry_at)
    assert await storage.claim("w2", now(), now() + timedelta(seconds=30), 5) == []

    assert await storage.finish(requeued, "w1", 1, Outcome(OutcomeKind.REQUEUE, at, run_after=at))
    job = await storage.get(requeued)
    assert job is not None and job.status is JobStatus.PENDING and job.run_attempts == 0
    again = await claim_one(storage, "w2")
    assert again.id == requeued and again.run_attempts == 1


async def test_finish_by_another_worker_or_attempt_is_refused(storage: QueueStorage) -> None:
    job_id = await storage.add(new_job())
    await claim_one(storage, "w1")
    outcome = Outcome(OutcomeKind.COMPLETE, now(), output=1)
    assert not await storage.finish(job_id, "w2", 1, outcome)
    assert not await storage.finish(job_id, "w1", 2, outcome)
    assert (await storage.get(job_id)).status is JobStatus.PROCESSING  # type: ignore[union-attr]


async def test_expired_leases_and_guarded_recovery(storage: QueueStorage) -> None:
    alive_id, dead_id = await storage.add_batch([new_job({"i": 0}), new_job({"i": 1})])
    start = now()
    await storage.claim("alive", start, start + timedelta(minutes=5), 1)
    await storage.claim("dead", start, start + timedelta(milliseconds=1), 1)
    check_at = start + timedelta(seconds=1)
    expired = await storage.expired_leases(check_at)
    assert [job.id for job in expired] == [dead_id]
    assert expired[0].worker_id == "dead"
    retry = Outcome(OutcomeKind.RETRY, check_at, error="lease", run_after=check_at)
    # A lease renewed since it was read as expired is not touched.
    await storage.renew_lease(dead_id, "dead", 1, check_at + timedelta(minutes=1))
    assert not await storage.finish(dead_id, "dead", 1, retry, lease_expired_before=check_at)
    await storage.renew_lease(dead_id, "dead", 1, start)
    assert await storage.finish(dead_id, "dead", 1, retry, lease_expired_before=check_at)
    assert (await storage.get(dead_id)).status is JobStatus.PENDING  # type: ignore[union-attr]
    assert (await storage.get(alive_id)).status is JobStatus.PROCESSING  # type: ignore[union-attr]


async def test_abort_transitions(storage: QueueStorage) -> None:
    # All three are due at once: claim order is by id, so the first one runs.
    running, pending, done = await storage.add_batch([new_job({"i": i}) for i in range(3)])
    assert (await claim_one(storage, "w")).id == running
    at = now()
    assert await storage.abort(pending, at) is JobStatus.FAILED
    job = await storage.get(pending)
    assert job is not None and job.status is JobStatus.FAILED
    assert job.error_code == "AbortSignalJobError" and same_time(job.completed_at, at)
    assert await storage.abort(running, at) is JobStatus.ABORTING
    assert await storage.abort(running, at) is None
    assert (
        await storage.renew_lease(running, "w", 1, at + timedelta(seconds=30)) is JobStatus.ABORTING
    )
    # `done` finished: an abort changes nothing.
    assert (await claim_one(storage, "w2")).id == done
    await storage.finish(done, "w2", 1, Outcome(OutcomeKind.COMPLETE, at, output={"ok": 1}))
    assert await storage.abort(done, at) is None
    job = await storage.get(done)
    assert job is not None and job.status is JobStatus.COMPLETED and job.output == {"ok": 1}
    assert await storage.abort(123456789, at) is None


async def test_abort_job_run_and_disable(storage: QueueStorage) -> None:
    ids = await storage.add_batch([new_job({"i": i}, job_run_id="batch") for i in range(3)])
    other = await storage.add(new_job({"i": 9}, job_run_id="other"))
    await storage.claim("w", now(), now() + timedelta(seconds=30), 1)
    changed = dict(await storage.abort_job_run("batch", now()))
    assert changed == {
        ids[0]: JobStatus.ABORTING,
        ids[1]: JobStatus.FAILED,
        ids[2]: JobStatus.FAILED,
    }
    assert (await storage.get(other)).status is JobStatus.PENDING  # type: ignore[union-attr]
    assert await storage.abort_job_run("batch", now()) == []
    at = now()
    assert await storage.disable(other, at)
    job = await storage.get(other)
    assert job is not None and job.status is JobStatus.DISABLED and same_time(job.completed_at, at)
    assert not await storage.disable(other, at)
    assert not await storage.disable(ids[1], at)
    assert await storage.claim("w", now(), now() + timedelta(seconds=30), 5) == []


async def test_find_completed_by_fingerprint(storage: QueueStorage) -> None:
    value = {"b": 2, "a": [1, "x"]}
    first, second = await storage.add_batch([new_job(value), new_job({"other": 1})])
    assert await storage.find_completed_by_fingerprint(fingerprint(value)) is None
    await storage.claim("w", now(), now() + timedelta(seconds=30), 2)
    await storage.finish(first, "w", 1, Outcome(OutcomeKind.COMPLETE, now(), output={"r": 1}))
    await storage.finish(second, "w", 1, Outcome(OutcomeKind.FAIL, now(), error="x"))
    found = await storage.find_completed_by_fingerprint(fingerprint({"a": [1, "x"], "b": 2}))
    assert found is not None and found.id == first and found.output == {"r": 1}
    assert await storage.find_completed_by_fingerprint(fingerprint({"other": 1})) is None


async def test_outcomes_written_together_with_a_nul_and_a_lone_surrogate(
    storage: QueueStorage,
) -> None:
    # The texts of errors come from anywhere (an undecodable file name): one of them
    # never fails the write, nor the outcomes written with it.
    first, second = await storage.add_batch([new_job({"i": 1}), new_job({"i": 2})])
    await storage.claim("w", now(), now() + timedelta(seconds=30), 2)
    error = "bad \x00 file \udcff name"
    failed = Outcome(OutcomeKind.FAIL, now(), error=error, traceback=f"Traceback: {error}")
    done = Outcome(OutcomeKind.COMPLETE, now(), output={"ok": "\x00"})
    applied = await asyncio.gather(
        storage.finish(first, "w", 1, failed), storage.finish(second, "w", 1, done)
    )
    assert list(applied) == [True, True]
    job = await storage.get(first)
    assert job is not None and job.status is JobStatus.FAILED
    assert job.error is not None and job.error.startswith("bad ") and "name" in job.error
    assert job.error_traceback is not None and "file" in job.error_traceback
    other = await storage.get(second)
    assert other is not None and other.output == {"ok": "\x00"}


async def test_delete_finished_by_status_and_age(storage: QueueStorage) -> None:
    ids = await storage.add_batch([new_job({"i": i}) for i in range(4)])
    await storage.claim("w", now(), now() + timedelta(seconds=30), 3)
    old, recent = now() - timedelta(hours=2), now()
    await storage.finish(ids[0], "w", 1, Outcome(OutcomeKind.COMPLETE, old, output=1))
    await storage.finish(ids[1], "w", 1, Outcome(OutcomeKind.COMPLETE, recent, output=2))
    await storage.finish(ids[2], "w", 1, Outcome(OutcomeKind.FAIL, old, error="x"))
    cutoff = now() - timedelta(hours=1)
    assert await storage.delete_finished(JobStatus.COMPLETED, cutoff) == 1
    assert await storage.get(ids[0]) is None
    assert await storage.get(ids[1]) is not None
    assert await storage.get(ids[2]) is not None
    assert await storage.delete_finished(JobStatus.FAILED, cutoff) == 1
    with pytest.raises(ValueError):
        await storage.delete_finished(JobStatus.PENDING, cutoff)
    assert await storage.delete(ids[3])
    assert not await storage.delete(ids[3])
    assert await storage.size() == 1


async def test_publish_reaches_subscribers_until_unsubscribed(storages: Storages) -> None:
    publisher = await storages.queue()
    listener_storage = await storages.queue() if storages.backend.shares_location else publisher
    received: asyncio.Queue[JobEvent] = asyncio.Queue()
    unsubscribe = await listener_storage.subscribe(received.put_nowait)
    when = datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    sent = [
        JobEvent("job_progress", publisher.queue_name, 7, (55.5, "mid ü", {"k": [1]}), "me"),
        JobEvent("job_retry", publisher.queue_name, 7, (when,), "me"),
        JobEvent("job_error", publisher.queue_name, 7, ("bad",), "me", "PermanentJobError"),
    ]
    for event in sent:
        await publisher.publish(event)
    got: list[JobEvent] = []
    while len(got) < len(sent):
        event = await asyncio.wait_for(received.get(), 10)
        if event.name != "job_available":
            got.append(event)
    assert got == sent
    await unsubscribe()
    await publisher.publish(sent[0])
    other = await storages.queue("elsewhere")
    await other.publish(JobEvent("job_start", other.queue_name, 1))
    with pytest.raises(TimeoutError):
        while True:
            event = await asyncio.wait_for(received.get(), 0.5)
            assert event.name == "job_available"


async def test_subscribe_with_names_delivers_only_those_events(storages: Storages) -> None:
    publisher = await storages.queue()
    listener_storage = await storages.queue() if storages.backend.shares_location else publisher
    named: asyncio.Queue[JobEvent] = asyncio.Queue()
    every: asyncio.Queue[JobEvent] = asyncio.Queue()
    name = publisher.queue_name
    # A large event takes PostgreSQL's events table instead of the notification.
    sent = [
        JobEvent("job_progress", name, 7, (10.0, "", None), "me"),
        JobEvent("job_complete", name, 7, ({"text": "é" * 6000},), "me"),
        JobEvent("job_error", name, 8, ("bad",), "me", "PermanentJobError"),
    ]
    # Alone, the named subscriber makes the storage leave out what it does not take.
    stop_named = await listener_storage.subscribe(named.put_nowait, names={"job_error"})
    for event in sent:
        await publisher.publish(event)
    assert await asyncio.wait_for(named.get(), 10) == sent[2]
    # Beside a subscriber of every event, it still gets only its own.
    stop_every = await listener_storage.subscribe(every.put_nowait)
    for event in sent:
        await publisher.publish(event)
    assert await job_events(every, expected=3) == sent
    assert await asyncio.wait_for(named.get(), 10) == sent[2]
    assert named.empty()
    await stop_every()
    await stop_named()


async def job_events(received: asyncio.Queue[JobEvent], expected: int) -> list[JobEvent]:
    """The job events that arrive (hints left out): `expected` of them, then a second of
    quiet in which no more may come."""
    got: list[JobEvent] = []
    with pytest.raises(TimeoutError):
        while True:
            event = await asyncio.wait_for(received.get(), 1.0 if len(got) >= expected else 10)
            if event.name != "job_available":
                got.append(event)
    return got


async def test_claim_can_announce_the_starts(storages: Storages) -> None:
    storage = await storages.queue()
    listener_storage = await storages.queue() if storages.backend.shares_location else storage
    received: asyncio.Queue[JobEvent] = asyncio.Queue()
    unsubscribe = await listener_storage.subscribe(received.put_nowait)
    at = now()
    quiet, late, first, second = await storage.add_batch(
        [
            new_job({"i": 0}),
            new_job({"i": 1}, deadline_at=at - timedelta(seconds=1)),  # fails, never starts
            new_job({"i": 2}, deadline_at=at + timedelta(hours=1)),
            new_job({"i": 3}),
        ]
    )
    at = now()
    lease = at + timedelta(seconds=30)
    assert [job.id for job in await storage.claim("w1", at, lease, 1)] == [quiet]
    claimed = await storage.claim("w2", at, lease, 5, start_origin="server-2")
    assert [job.id for job in claimed] == [late, first, second]
    got = await job_events(received, expected=2)
    assert sorted(got, key=lambda event: event.job_id) == [
        JobEvent("job_start", storage.queue_name, job_id, (), "server-2")
        for job_id in (first, second)
    ]
    await unsubscribe()


async def test_finish_publishes_its_event_only_when_it_applies(storages: Storages) -> None:
    storage = await storages.queue()
    listener_storage = await storages.queue() if storages.backend.shares_location else storage
    received: asyncio.Queue[JobEvent] = asyncio.Queue()
    unsubscribe = await listener_storage.subscribe(received.put_nowait)
    small, large = await storage.add_batch([new_job({"i": 0}), new_job({"i": 1})])
    await storage.claim("w1", now(), now() + timedelta(seconds=30), 2)
    at = now()
    # An output too large for one PostgreSQL notification takes the events table.
    big = {"text": "é" * 6000}
    done = JobEvent("job_complete", storage.queue_name, small, ({"r": 1},), "me")
    big_done = JobEvent("job_complete", storage.queue_name, large, (big,), "me")
    stale = JobEvent("job_error", storage.queue_name, small, ("stale",), "me", "X")
    complete = Outcome(OutcomeKind.COMPLETE, at, output={"r": 1})
    assert await storage.finish(small, "w1", 1, complete, event=done)
    assert not await storage.finish(small, "w1", 1, Outcome(OutcomeKind.FAIL, at), event=stale)
    big_outcome = Outcome(OutcomeKind.COMPLETE, at, output=big)
    assert not await storage.finish(large, "w2", 1, big_outcome, event=stale)
    assert await storage.finish(large, "w1", 1, big_outcome, event=big_done)
    got = await job_events(received, expected=2)
    assert got == [done, big_done]
    await unsubscribe()


# -- rate limiter storage ---------------------------------------------------------------


async def test_rate_limiter_storage_counts_and_windows(storages: Storages) -> None:
    limits = await storages.rate_limiter()
    queue = storages.queue_name("rl")
    base = now()
    window_start = base - timedelta(seconds=10)
    for i in range(3):
        assert await limits.try_record_execution(
            queue, 3, window_start, base + timedelta(seconds=i)
        )
    assert not await limits.try_record_execution(
        queue, 3, window_start, base + timedelta(seconds=4)
    )
    assert await limits.execution_count(queue, window_start) == 3
    assert await limits.execution_count(queue, base + timedelta(seconds=1)) == 2
    assert same_time(await limits.oldest_execution_time(queue, window_start), base)
    assert await limits.execution_count(storages.queue_name("other"), window_start) == 0
    # Later window: the first execution has left it.
    assert await limits.try_record_execution(queue, 3, base + timedelta(milliseconds=500), base)
    assert await limits.prune(queue, base + timedelta(seconds=1)) == 2
    assert await limits.execution_count(queue, window_start) == 2
    hold = base + timedelta(minutes=1)
    assert await limits.get_next_available_time(queue) is None
    await limits.set_next_available_time(queue, hold)
    assert same_time(await limits.get_next_available_time(queue), hold)
    await limits.set_next_available_time(queue, None)
    assert await limits.get_next_available_time(queue) is None
    await limits.set_next_available_time(queue, hold)
    await limits.clear(queue)
    assert await limits.execution_count(queue, window_start) == 0
    assert await limits.get_next_available_time(queue) is None


async def test_rate_limiter_record_is_atomic(storages: Storages) -> None:
    stores = [await storages.rate_limiter()]
    if storages.backend.shares_location:
        stores += [await storages.rate_limiter() for _ in range(3)]
    queue = storages.queue_name("atomic")
    base = now()
    results = await asyncio.gather(
        *(
            stores[i % len(stores)].try_record_execution(
                queue, 5, base - timedelta(seconds=60), base
            )
            for i in range(40)
        )
    )
    assert sum(results) == 5


async def test_retry_makes_a_finished_job_new(storage: QueueStorage) -> None:
    failed, disabled, completed, pending = await storage.add_batch(
        [new_job({"i": i}, max_retries=0) for i in range(4)]
    )
    assert await storage.disable(disabled, now())
    claimed = await storage.claim("w", now(), now() + timedelta(seconds=30), 2)
    assert [job.id for job in claimed] == [failed, completed]
    fail = Outcome(OutcomeKind.FAIL, now(), error="x", error_code="ValueError")
    assert await storage.finish(failed, "w", 1, fail)
    assert await storage.finish(completed, "w", 1, Outcome(OutcomeKind.COMPLETE, now(), output=1))
    at = now()
    assert await storage.retry(failed, at)
    job = await storage.get(failed)
    assert job is not None and job.status is JobStatus.PENDING
    assert (job.run_attempts, job.error, job.error_code, job.completed_at) == (0, None, None, None)
    assert same_time(job.run_after, at)
    assert await storage.retry(disabled, at)
    assert not await storage.retry(completed, at)
    assert not await storage.retry(pending, at)
    assert not await storage.retry(failed, at)  # PENDING again
    assert not await storage.retry(10**9, at)
    claimed = await storage.claim("w2", now(), now() + timedelta(seconds=30), 5)
    assert sorted(cast(int, job.id) for job in claimed) == sorted([failed, disabled, pending])


# -- the transition table: each backend applies exactly the rules of pyjobqueue.transitions --

T0 = datetime(2031, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)
LEASE = T0 + timedelta(seconds=30)
LATER = T0 + timedelta(seconds=2)
State = Callable[[QueueStorage], Awaitable[int]]


async def _fresh(storage: QueueStorage) -> int:
    job = new_job(
        {"state": "fresh"},
        run_after=T0 - timedelta(seconds=1),
        kind="resize",
        priority=3,
        metadata={"tenant": "a"},
    )
    return await storage.add(job)


async def _running(storage: QueueStorage) -> int:
    job_id = await _fresh(storage)
    (claimed,) = await storage.claim("w1", T0, LEASE, 1)
    assert claimed.id == job_id
    return job_id


async def _running_with_progress(storage: QueueStorage) -> int:
    job_id = await _running(storage)
    assert await storage.save_progress(job_id, "w1", 1, 40.0, "halfway", {"step": 2})
    return job_id


async def _ended(storage: QueueStorage, outcome: Outcome) -> int:
    job_id = await _running_with_progress(storage)
    assert await storage.finish(job_id, "w1", 1, outcome)
    return job_id


async def _retried(storage: QueueStorage) -> int:
    retry = Outcome(
        OutcomeKind.RETRY, T0, error="boom", error_code="RetryableJobError", traceback="at x"
    )
    return await _ended(storage, replace(retry, run_after=T0 - timedelta(microseconds=5)))


async def _aborting(storage: QueueStorage) -> int:
    job_id = await _running_with_progress(storage)
    assert await storage.abort(job_id, T0) is JobStatus.ABORTING
    return job_id


async def _waiting(storage: QueueStorage) -> int:
    # Its dependency is not due before the day after: no claim of the table takes it.
    dependency = await storage.add(new_job({"state": "later"}, run_after=T0 + timedelta(days=1)))
    job = new_job({"state": "waiting"}, run_after=T0 - timedelta(seconds=1), kind="resize")
    (job_id,) = await storage.add_batch([replace(job, depends_on=[dependency])])
    return job_id


async def _disabled(storage: QueueStorage) -> int:
    job_id = await _fresh(storage)
    assert await storage.disable(job_id, T0)
    return job_id


STATES: dict[str, State] = {
    "pending": _fresh,
    "pending after a retry": _retried,
    "processing": _running,
    "processing with progress": _running_with_progress,
    "aborting": _aborting,
    "completed": lambda s: _ended(s, Outcome(OutcomeKind.COMPLETE, T0, output={"ok": [1, 2]})),
    "failed": lambda s: _ended(
        s, Outcome(OutcomeKind.FAIL, T0, error="bad", error_code="E", traceback="at y")
    ),
    "disabled": _disabled,
    "waiting": _waiting,
}


@dataclasses.dataclass(frozen=True)
class Operation:
    """One storage operation, and what `transitions` says it does to a job record."""

    on_storage: Callable[[QueueStorage, int], Awaitable[Any]]
    on_record: Callable[[Job[Any, Any]], Any]


def _finish(
    outcome: Outcome, worker: str = "w1", attempt: int = 1, expired_before: datetime | None = None
) -> Operation:
    def on_record(job: Job[Any, Any]) -> bool:
        if not transitions.is_attempt(job, worker, attempt):
            return False
        if not transitions.lease_expired(job, expired_before):
            return False
        transitions.finish(job, outcome)
        return True

    async def on_storage(storage: QueueStorage, job_id: int) -> bool:
        return await storage.finish(job_id, worker, attempt, outcome, expired_before)

    return Operation(on_storage, on_record)


def _claim(kinds: frozenset[str] | None = None) -> Operation:
    def on_record(job: Job[Any, Any]) -> list[int]:
        if not transitions.is_claimable(job, LATER, kinds):
            return []
        transitions.claim(job, "w2", LATER, LATER + timedelta(seconds=30))
        return [job.id or 0]

    async def on_storage(storage: QueueStorage, job_id: int) -> list[int]:
        claimed = await storage.claim("w2", LATER, LATER + timedelta(seconds=30), 5, None, kinds)
        return [job.id or 0 for job in claimed]

    return Operation(on_storage, on_record)


def _renew(worker: str, attempt: int) -> Operation:
    def on_record(job: Job[Any, Any]) -> JobStatus | None:
        if not transitions.is_attempt(job, worker, attempt):
            return None
        return transitions.renew_lease(job, LATER + timedelta(seconds=30))

    async def on_storage(storage: QueueStorage, job_id: int) -> JobStatus | None:
        return await storage.renew_lease(job_id, worker, attempt, LATER + timedelta(seconds=30))

    return Operation(on_storage, on_record)


def _progress(worker: str, attempt: int) -> Operation:
    def on_record(job: Job[Any, Any]) -> bool:
        if not transitions.is_attempt(job, worker, attempt):
            return False
        transitions.save_progress(job, 75.5, "nearly", {"left": [1]})
        return True

    async def on_storage(storage: QueueStorage, job_id: int) -> bool:
        return await storage.save_progress(job_id, worker, attempt, 75.5, "nearly", {"left": [1]})

    return Operation(on_storage, on_record)


def _recover() -> Operation:
    """What the server's lease recovery does: a still-expired lease, decided by outcome.py."""

    async def on_storage(storage: QueueStorage, job_id: int) -> bool:
        late = T0 + timedelta(minutes=5)
        expired = [job for job in await storage.expired_leases(late) if job.id == job_id]
        if not expired:
            return False
        job = expired[0]
        assert job.worker_id is not None
        outcome = decide_recovery(job, late)
        return await storage.finish(job_id, job.worker_id, job.run_attempts, outcome, late)

    def on_record(job: Job[Any, Any]) -> bool:
        late = T0 + timedelta(minutes=5)
        if not transitions.lease_has_expired(job, late) or job.worker_id is None:
            return False
        outcome = decide_recovery(job, late)
        return bool(_finish(outcome, job.worker_id, job.run_attempts, late).on_record(job))

    return Operation(on_storage, on_record)


def _user(name: str) -> Operation:
    async def on_storage(storage: QueueStorage, job_id: int) -> Any:
        return await getattr(storage, name)(job_id, LATER)

    def on_record(job: Job[Any, Any]) -> Any:
        return getattr(transitions, name)(job, LATER)

    return Operation(on_storage, on_record)


def _abort_run() -> Operation:
    async def on_storage(storage: QueueStorage, job_id: int) -> Any:
        job = await storage.get(job_id)
        assert job is not None and job.job_run_id is None
        return await storage.abort_job_run("no-such-run", LATER)

    return Operation(on_storage, lambda job: [])


_COMPLETE = Outcome(OutcomeKind.COMPLETE, LATER, output={"done": True, "n": 2.5})
_TRACE = "Traceback (most recent call last):\n  ValueError: it broke\n"
_FAIL = Outcome(
    OutcomeKind.FAIL, LATER, error="it broke", error_code="ValueError", traceback=_TRACE
)
_RETRY = Outcome(
    OutcomeKind.RETRY,
    LATER,
    error="again",
    error_code="RetryableJobError",
    run_after=LATER + timedelta(seconds=9),
    traceback=_TRACE,
)
_REQUEUE = Outcome(OutcomeKind.REQUEUE, LATER, run_after=LATER)
_SNOOZE = Outcome(OutcomeKind.REQUEUE, LATER, run_after=LATER + timedelta(hours=1), snoozed=True)

OPERATIONS: dict[str, Operation] = {
    "claim": _claim(),
    "claim of its kind": _claim(frozenset({"resize", "other"})),
    "claim of other kinds": _claim(frozenset({"send_email"})),
    "renew the lease": _renew("w1", 1),
    "renew another worker's lease": _renew("w2", 1),
    "save progress": _progress("w1", 1),
    "save progress of an old attempt": _progress("w1", 0),
    "complete": _finish(_COMPLETE),
    "fail": _finish(_FAIL),
    "retry later": _finish(_RETRY),
    "requeue on stop": _finish(_REQUEUE),
    "snooze": _finish(_SNOOZE),
    "complete as another worker": _finish(_COMPLETE, worker="w2"),
    "fail an old attempt": _finish(_FAIL, attempt=0),
    "recover while the lease lives": _finish(_FAIL, expired_before=T0 + timedelta(seconds=10)),
    "recover an expired lease": _recover(),
    "abort": _user("abort"),
    "disable": _user("disable"),
    "retry": _user("retry"),
    "abort another run": _abort_run(),
}


@pytest.mark.parametrize("operation", OPERATIONS, ids=str)
async def test_every_transition_follows_the_pure_rules(
    storage: QueueStorage, operation: str
) -> None:
    """From every state, the storage's result and stored job are what `transitions` says."""
    apply = OPERATIONS[operation]
    mismatches = []
    for state, build in STATES.items():
        job_id = await build(storage)
        before = await storage.get(job_id)
        assert before is not None
        expected_job = replace(before)
        expected = apply.on_record(expected_job)
        result = await apply.on_storage(storage, job_id)
        after = await storage.get(job_id)
        assert after is not None
        if result != expected:
            mismatches.append(f"{state}: returned {result!r}, the rules say {expected!r}")
        for field, value in expected_job.fields().items():
            if getattr(after, field) != value:
                got = getattr(after, field)
                mismatches.append(f"{state}: {field} is {got!r}, the rules say {value!r}")
        assert await storage.delete(job_id)  # one job at a time: claims see only the next one
    assert not mismatches, "\n".join(mismatches)


async def test_a_recovered_job_keeps_its_place_in_the_queue(storage: QueueStorage) -> None:
    start = now()
    crashed = await storage.add(new_job({"i": 0}, run_after=start - timedelta(seconds=3)))
    await storage.claim("dead-worker", start, start + timedelta(milliseconds=1), 1)
    for i in (1, 2):
        await storage.add(new_job({"i": i}, run_after=start - timedelta(seconds=3 - i)))
    late = start + timedelta(seconds=1)
    (expired,) = await storage.expired_leases(late)
    outcome = decide_recovery(expired, late)
    assert await storage.finish(crashed, "dead-worker", 1, outcome, late)
    (next_job,) = await storage.claim("w2", late, late + timedelta(seconds=30), 1)
    assert next_job.id == crashed


async def test_a_job_whose_input_cannot_be_read_fails_alone(
    storages: Storages, storage: QueueStorage
) -> None:
    overwrite = storages.backend.overwrite_input
    if overwrite is None:
        pytest.skip("this backend keeps jobs as Python objects: nothing to read back")
    unreadable = '{"n": ' + "7" * 5000 + "}"  # more digits than Python reads by default
    start = now()
    poison = await storage.add(new_job({"i": "poison"}, run_after=start - timedelta(seconds=2)))
    others = [await storage.add(new_job({"i": i})) for i in range(2)]
    await overwrite(storages.location, storage, poison, unreadable)
    shown = await storage.get(poison)
    assert shown is not None and shown.input is None and shown.status is JobStatus.PENDING
    assert shown.unreadable is not None and "stored input cannot be read" in shown.unreadable
    assert [job.id for job in await storage.peek(JobStatus.PENDING, 10)] == [poison, *others]
    events: asyncio.Queue[JobEvent] = asyncio.Queue()
    unsubscribe = await storage.subscribe(events.put_nowait)
    claimed = await storage.claim("w1", now(), now() + timedelta(seconds=30), 10)
    assert [job.id for job in claimed] == others
    failed = await storage.get(poison)
    assert failed is not None and failed.status is JobStatus.FAILED
    assert failed.error_code == "StoredValueError"
    assert failed.error is not None and failed.error.startswith("stored input cannot be read")
    event = await asyncio.wait_for(events.get(), 10)
    while event.name != "job_error":
        event = await asyncio.wait_for(events.get(), 10)
    assert (event.job_id, event.error_code) == (poison, "StoredValueError")
    await unsubscribe()
    # A running job whose row goes bad is still recovered when its worker dies.
    await overwrite(storages.location, storage, others[0], unreadable)
    late = now() + timedelta(minutes=5)
    expired = [job for job in await storage.expired_leases(late) if job.id == others[0]]
    assert len(expired) == 1 and expired[0].unreadable is not None
    outcome = decide_recovery(expired[0], late)
    assert await storage.finish(others[0], "w1", 1, outcome, late)
    recovered = await storage.get(others[0])
    assert recovered is not None and recovered.status is JobStatus.PENDING


async def test_what_is_just_within_the_limits_is_stored_and_read_back_exactly(
    storages: Storages,
) -> None:
    """A value at each limit of pyjobqueue.limits fits every backend and its indexes."""
    from pyjobqueue import JobQueueClient, limits

    name = "𝄞" * (limits.MAX_NAME_LENGTH - len(storages.queue_name("")))
    storage = await storages.queue(name)
    assert len(storage.queue_name) == limits.MAX_NAME_LENGTH
    deep: Any = {"leaf": "ü"}
    for _ in range(limits.MAX_JSON_DEPTH - 2):  # inside the input object: 100 levels
        deep = [deep]
    value = {"deep": deep, "big": -int("9" * limits.MAX_INTEGER_DIGITS), "text": "a\x00b"}
    client: JobQueueClient[Any, Any] = JobQueueClient(storage=storage)
    handle = await client.submit(
        value,
        max_retries=limits.MAX_RETRIES,
        job_run_id="𝄞" * limits.MAX_NAME_LENGTH,
        run_after=limits.EARLIEST_DATE,
        deadline_at=limits.LATEST_DATE - timedelta(microseconds=1),
    )
    job = await storage.get(handle.id)
    assert job is not None and job.unreadable is None
    assert job.input == value
    assert job.max_retries == limits.MAX_RETRIES
    assert job.run_after == limits.EARLIEST_DATE
    assert job.deadline_at == limits.LATEST_DATE - timedelta(microseconds=1)
    assert [found.id for found in await storage.get_by_run_id("𝄞" * 255)] == [handle.id]
    (claimed,) = await storage.claim("w", now(), now() + timedelta(seconds=30), 1)
    assert claimed.id == handle.id and claimed.input == value
