"""The storage contract of SPEC section 8.1-8.5 (kinds, priorities, unique keys, pause,
tracebacks, metadata): every QueueStorage backend passes these."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pyjobqueue import JobStatus
from pyjobqueue.events import EventName, JobEvent
from pyjobqueue.outcome import Outcome, OutcomeKind
from pyjobqueue.storage import QueueStorage

from .conftest import Storages, eventually, next_event
from .jobs import new_job

LEASE = timedelta(seconds=30)


def now() -> datetime:
    return datetime.now(UTC)


async def claim(
    storage: QueueStorage, limit: int = 10, kinds: Any = None, at: datetime | None = None
) -> list[int]:
    when = at or now()
    jobs = await storage.claim("w", when, when + LEASE, limit, kinds=kinds)
    return [job.id or 0 for job in jobs]


async def finish(storage: QueueStorage, job_id: int, outcome: Outcome) -> None:
    job = await storage.get(job_id)
    assert job is not None and job.worker_id is not None
    assert await storage.finish(job_id, job.worker_id, job.run_attempts, outcome)


async def test_kind_priority_unique_key_metadata_and_timeout_are_kept(
    storage: QueueStorage,
) -> None:
    metadata = {"tenant": "a", "trace": {"id": "0af7651916cd43dd8448eb211c80319c"}, "n": [1]}
    job_id = await storage.add(
        new_job(
            kind="resize",
            priority=-(2**31),
            unique_key="sync-user-42 ünï",
            metadata=metadata,
            timeout_ms=1500.5,
        )
    )
    job = await storage.get(job_id)
    assert job is not None
    assert (job.kind, job.priority, job.unique_key) == ("resize", -(2**31), "sync-user-42 ünï")
    assert job.metadata == metadata
    assert job.timeout_ms == 1500.5
    assert job.error_traceback is None
    plain = await storage.get(await storage.add(new_job(priority=2**31 - 1)))
    assert plain is not None
    assert (plain.kind, plain.unique_key, plain.metadata, plain.timeout_ms) == (
        None,
        None,
        {},
        None,
    )
    assert plain.priority == 2**31 - 1


async def test_claims_take_the_highest_priority_then_the_earliest_then_the_lowest_id(
    storage: QueueStorage,
) -> None:
    base = now()
    specs = [  # (priority, seconds before now)
        (0, 30),
        (5, 1),
        (-3, 60),
        (5, 20),
        (0, 30),
        (10, -3600),  # highest, but not due
        (1, 5),
    ]
    ids = await storage.add_batch(
        [
            new_job({"i": i}, priority=priority, run_after=base - timedelta(seconds=ago))
            for i, (priority, ago) in enumerate(specs)
        ]
    )
    order = [ids[3], ids[1], ids[6], ids[0], ids[4], ids[2]]
    peeked = await storage.peek(JobStatus.PENDING, 10)
    assert [job.id for job in peeked] == [ids[5], *order]  # peek shows what is not due too
    assert await claim(storage, 2, at=base) == order[:2]
    assert await claim(storage, 10, at=base) == order[2:]
    assert await claim(storage, 10, at=base) == []


async def test_a_retried_or_recovered_job_keeps_its_priority(storage: QueueStorage) -> None:
    base = now()
    urgent = await storage.add(new_job({"urgent": 1}, priority=7, run_after=base))
    (claimed,) = await claim(storage, 1, at=base)
    assert claimed == urgent
    later = await storage.add_batch([new_job({"i": i}, run_after=base) for i in range(3)])
    retry = Outcome(OutcomeKind.RETRY, base, error="again", error_code="E", run_after=base)
    await finish(storage, urgent, retry)
    assert await claim(storage, 2, at=base + timedelta(seconds=1)) == [urgent, later[0]]


async def test_claims_take_only_the_kinds_asked_for_and_jobs_of_no_kind(
    storage: QueueStorage,
) -> None:
    resize, email, anything, other = await storage.add_batch(
        [new_job(kind="resize"), new_job(kind="send_email"), new_job(), new_job(kind="other")]
    )
    assert await claim(storage, kinds={"send_email", "nothing-of-it"}) == [email, anything]
    assert await claim(storage, kinds=frozenset({"send_email"})) == []
    assert await claim(storage, kinds=["resize"]) == [resize]
    assert await claim(storage, kinds=set()) == []
    assert await claim(storage) == [other]  # no kinds given: any kind


async def test_peek_size_and_counts_by_kind(storage: QueueStorage) -> None:
    ids = await storage.add_batch(
        [new_job(kind="a"), new_job(kind="b", priority=1), new_job(kind="a"), new_job()]
    )
    await claim(storage, 1, kinds={"b"})
    assert [job.id for job in await storage.peek(JobStatus.PENDING, 10, kind="a")] == [
        ids[0],
        ids[2],
    ]
    assert await storage.peek(JobStatus.PENDING, 10, kind="b") == []
    assert [job.id for job in await storage.peek(JobStatus.PROCESSING, 10, kind="b")] == [ids[1]]
    assert await storage.size(JobStatus.PENDING, kind="a") == 2
    assert await storage.size(kind="b") == 1
    assert await storage.size(JobStatus.PENDING) == 3
    assert await storage.size(kind="missing") == 0
    assert await storage.counts() == {
        ("a", JobStatus.PENDING): 2,
        ("b", JobStatus.PROCESSING): 1,
        (None, JobStatus.PENDING): 1,
    }


async def test_a_unique_key_is_held_until_its_job_finishes(storage: QueueStorage) -> None:
    ((first, created),) = await storage.add_jobs([new_job({"v": 1}, unique_key="k")])
    assert created
    assert await storage.add_jobs([new_job({"v": 2}, unique_key="k")]) == [(first, False)]
    assert await storage.add(new_job({"v": 3}, unique_key="k")) == first
    assert await storage.size() == 1
    assert await claim(storage) == [first]  # PROCESSING still holds it
    assert await storage.add_jobs([new_job(unique_key="k")]) == [(first, False)]
    assert await storage.abort(first, now()) is JobStatus.ABORTING  # and ABORTING
    assert await storage.add_jobs([new_job(unique_key="k")]) == [(first, False)]
    await finish(storage, first, Outcome(OutcomeKind.COMPLETE, now(), output=1))
    ((second, created),) = await storage.add_jobs([new_job({"v": 4}, unique_key="k")])
    assert created and second != first
    stored = await storage.get(second)
    assert stored is not None and stored.unique_key == "k" and stored.input == {"v": 4}
    assert await storage.abort(second, now()) is JobStatus.FAILED  # a FAILED job frees it
    ((third, created),) = await storage.add_jobs([new_job(unique_key="k")])
    assert created
    assert await storage.disable(third, now())  # and a DISABLED one
    ((_fourth, created),) = await storage.add_jobs([new_job(unique_key="k")])
    assert created
    other_key = await storage.add_jobs([new_job(unique_key="other")])
    assert other_key[0].created


async def test_a_finished_job_is_not_retried_while_another_holds_its_key(
    storage: QueueStorage,
) -> None:
    old = await storage.add(new_job(unique_key="k"))
    assert await storage.disable(old, now())
    holder = await storage.add(new_job(unique_key="k"))
    assert holder != old
    assert not await storage.retry(old, now())
    job = await storage.get(old)
    assert job is not None and job.status is JobStatus.DISABLED
    assert await storage.disable(holder, now())
    assert await storage.retry(old, now())  # the key is free again: it takes it back
    assert await storage.add_jobs([new_job(unique_key="k")]) == [(old, False)]


async def test_unique_keys_within_one_batch_store_one_job_each(storage: QueueStorage) -> None:
    held = await storage.add(new_job({"held": True}, unique_key="held"))
    added = await storage.add_jobs(
        [
            new_job({"i": 0}, unique_key="a"),
            new_job({"i": 1}, unique_key="a"),
            new_job({"i": 2}),
            new_job({"i": 3}, unique_key="held"),
            new_job({"i": 4}, unique_key="b"),
            new_job({"i": 5}, unique_key="a"),
            new_job({"i": 6}),
        ]
    )
    assert [created for _id, created in added] == [True, False, True, False, True, False, True]
    ids = [job_id for job_id, _created in added]
    assert ids[1] == ids[0] == ids[5]
    assert ids[3] == held
    assert len(set(ids)) == 5
    assert ids[0] < ids[2] < ids[4] < ids[6]  # the new ones in input order
    jobs = {job.id: job for job in await storage.peek(JobStatus.PENDING, 10)}
    assert len(jobs) == 5
    assert jobs[ids[0]].input == {"i": 0} and jobs[ids[4]].input == {"i": 4}


async def test_concurrent_adds_with_one_key_store_exactly_one_job(storages: Storages) -> None:
    storage = await storages.queue()
    adders = [storage]
    if storages.backend.shares_location:
        adders += [await storages.queue() for _ in range(3)]  # separate connections
    rounds = await asyncio.gather(
        *(
            adders[i % len(adders)].add_jobs(
                [new_job({"i": i}, unique_key="once"), new_job({"i": i}, unique_key=f"own {i}")]
            )
            for i in range(16)
        )
    )
    holders = {added[0].id for added in rounds}
    assert len(holders) == 1
    assert sum(added[0].created for added in rounds) == 1
    assert all(added[1].created for added in rounds)
    assert await storage.size() == 17


async def test_pause_stops_claims_everywhere_until_resumed(storages: Storages) -> None:
    storage = await storages.queue()
    other_queue = await storages.queue("other")
    seen: list[JobEvent] = []
    unsubscribe = await storage.subscribe(seen.append)
    job_id = await storage.add(new_job())
    await other_queue.add(new_job())
    assert not await storage.is_paused()
    assert await storage.set_paused(True)
    assert not await storage.set_paused(True)  # already paused: nothing changes
    assert await storage.is_paused()
    assert await claim(storage) == []
    assert len(await claim(other_queue)) == 1  # another queue is not paused
    assert not await other_queue.is_paused()
    if storages.backend.shares_location:
        again = await storages.queue()  # another connection, as another process has
        assert await again.is_paused()
        assert await claim(again) == []
    await storage.add(new_job())  # submitting goes on
    assert await storage.size(JobStatus.PENDING) == 2
    assert await storage.set_paused(False)
    assert not await storage.is_paused()
    assert job_id in await claim(storage)

    def names() -> list[str]:
        return [str(event.name) for event in seen if event.name != EventName.JOB_AVAILABLE]

    async def both_seen() -> bool:
        return names() == [EventName.QUEUE_PAUSED, EventName.QUEUE_RESUMED]

    await eventually(both_seen)
    await unsubscribe()


async def test_a_resume_is_logged_before_the_starts_it_lets_happen(
    storage: QueueStorage, monkeypatch: Any
) -> None:
    """A worker may claim the moment the resume is stored, before `set_paused` returns:
    its job_start still comes after queue_resumed for every listener."""
    seen: asyncio.Queue[JobEvent] = asyncio.Queue()
    unsubscribe = await storage.subscribe(seen.put_nowait)
    await storage.add(new_job())
    assert await storage.set_paused(True)
    engine = storage._engine  # type: ignore[attr-defined]
    if not engine.events_with_writes:
        pytest.skip("in memory nothing can run between storing the flag and its event")
    store_flag = engine.set_paused
    started = []

    async def store_then_claim(paused: bool, event: JobEvent | None) -> bool:
        changed = await store_flag(paused, event)
        when = now()
        started.extend(await storage.claim("w", when, when + LEASE, 1, start_origin="w"))
        return bool(changed)

    monkeypatch.setattr(engine, "set_paused", store_then_claim)
    assert await storage.set_paused(False)
    assert len(started) == 1
    expected = [EventName.QUEUE_PAUSED, EventName.QUEUE_RESUMED, EventName.JOB_START]
    hints = frozenset({EventName.JOB_AVAILABLE})
    assert [(await next_event(seen, skip=hints)).name for _ in expected] == expected
    await unsubscribe()


async def test_tracebacks_are_kept_with_failures_and_retries(storage: QueueStorage) -> None:
    trace = "Traceback (most recent call last):\n  File \"app.py\", line 3\nKeyError: 'zz'\n"
    failed, retried, completed = await storage.add_batch([new_job({"i": i}) for i in range(3)])
    await claim(storage)
    fail = Outcome(OutcomeKind.FAIL, now(), error="'zz'", error_code="KeyError", traceback=trace)
    await finish(storage, failed, fail)
    retry = Outcome(
        OutcomeKind.RETRY, now(), error="again", error_code="E", run_after=now(), traceback=trace
    )
    await finish(storage, retried, retry)
    await finish(storage, completed, Outcome(OutcomeKind.COMPLETE, now(), output=None))
    tracebacks = {
        job_id: (job.error_traceback if (job := await storage.get(job_id)) else "gone")
        for job_id in (failed, retried, completed)
    }
    assert tracebacks == {failed: trace, retried: trace, completed: None}
    assert await claim(storage) == [retried]
    await finish(storage, retried, Outcome(OutcomeKind.COMPLETE, now(), output=2))
    done = await storage.get(retried)
    assert done is not None and done.error_traceback is None and done.error is None
    assert await storage.retry(failed, now())
    again = await storage.get(failed)
    assert again is not None and again.error_traceback is None
