"""Client / server / worker behaviour (SPEC sections 3-6), on every storage backend."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pyjobqueue import (
    AbortSignalJobError,
    ConcurrencyLimiter,
    JobDisabledError,
    JobError,
    JobNotFoundError,
    JobQueueClient,
    JobQueueServer,
    JobStatus,
    PermanentJobError,
    RateLimiter,
)
from pyjobqueue.leader import LocalLeaderLock
from pyjobqueue.storage import QueueStorage, RateLimiterStorage

from .conftest import Storages, eventually
from .jobs import ScriptedJob, new_probe

FAST: dict[str, Any] = {"poll_interval_ms": 20, "cleanup_interval_ms": 50}


def utc(**delta: float) -> datetime:
    return datetime.now(UTC) + timedelta(**delta)


class Queue:
    """A storage with a server and an attached client, all stopped at the end."""

    def __init__(self, storage: QueueStorage, **server_options: Any) -> None:
        self.storage = storage
        self.server: JobQueueServer[dict[str, Any], Any] = JobQueueServer(
            ScriptedJob, storage=storage, **{**FAST, **server_options}
        )
        self.client: JobQueueClient[dict[str, Any], Any] = JobQueueClient(
            storage=storage, poll_interval_ms=20
        )
        self.client.attach(self.server)
        self.events: list[tuple[Any, ...]] = []
        for name in (
            "job_start",
            "job_complete",
            "job_error",
            "job_retry",
            "job_aborting",
            "job_disabled",
        ):
            self.client.on(name, lambda *args, name=name: self.events.append((name, *args)))

    def names(self, job_id: int) -> list[str]:
        return [event[0] for event in self.events if event[2] == job_id]


@pytest.fixture
async def make_queue(storages: Storages) -> AsyncIterator[Any]:
    made: list[Queue] = []

    async def make(suffix: str = "q", start: bool = True, **options: Any) -> Queue:
        queue = Queue(await storages.queue(suffix), **options)
        made.append(queue)
        if start:
            await queue.server.start()
        return queue

    yield make
    for queue in made:
        await queue.server.stop()
        await queue.client.disconnect()


async def test_submit_and_wait_for_output(make_queue: Any) -> None:
    queue = await make_queue()
    probe = new_probe()
    handle = await queue.client.submit({"probe": probe.key, "value": "héllo"})
    assert await handle.wait_for() == {"echo": "héllo", "attempt": 1}
    job = await queue.client.get_job(handle.id)
    assert job is not None and job.status is JobStatus.COMPLETED
    assert job.run_attempts == 1 and job.progress == 100 and job.completed_at is not None
    assert queue.names(handle.id) == ["job_start", "job_complete"]


async def test_progress_reaches_handle_and_client_listeners(make_queue: Any) -> None:
    queue = await make_queue()
    probe = new_probe()
    seen: list[tuple[float, str, Any]] = []
    events: list[tuple[Any, ...]] = []
    queue.client.on("job_progress", lambda *args: events.append(args))
    handle = await queue.client.submit(
        {"probe": probe.key, "mode": "progress", "steps": [-5, 25, 50, 150]}
    )
    handle.on_progress(lambda *args: seen.append(args))
    assert await handle.wait_for() == "done"
    assert seen == [
        (0, "at -5", {"step": -5}),
        (25, "at 25", {"step": 25}),
        (50, "at 50", {"step": 50}),
        (100, "at 150", {"step": 150}),
    ]
    assert [args[2] for args in events] == [0, 25, 50, 100]
    assert all(args[:2] == (queue.storage.queue_name, handle.id) for args in events)


async def test_queues_are_isolated(make_queue: Any) -> None:
    first, second = await make_queue("first"), await make_queue("second")
    probe = new_probe()
    a = await first.client.submit({"probe": probe.key, "value": 1})
    b = await second.client.submit({"probe": probe.key, "value": 2})
    assert (await a.wait_for())["echo"] == 1
    assert (await b.wait_for())["echo"] == 2
    assert first.server.get_stats().completed_jobs == 1
    assert second.server.get_stats().completed_jobs == 1
    assert await first.client.size(JobStatus.COMPLETED) == 1


async def test_retryable_error_retries_then_succeeds(make_queue: Any) -> None:
    queue = await make_queue()
    probe = new_probe()
    handle = await queue.client.submit(
        {"probe": probe.key, "mode": "retry_until", "succeed_on": 3}, max_retries=5
    )
    assert await handle.wait_for() == {"attempt": 3}
    assert [attempt for _, attempt in probe.runs] == [1, 2, 3]
    assert queue.names(handle.id).count("job_retry") == 2
    assert queue.server.get_stats().retried_jobs == 2


async def test_max_retries_n_means_n_plus_one_runs(make_queue: Any) -> None:
    queue = await make_queue()
    probe = new_probe()
    handle = await queue.client.submit(
        {"probe": probe.key, "mode": "retry_until", "succeed_on": 99}, max_retries=2
    )
    with pytest.raises(PermanentJobError, match="Max retries reached"):
        await handle.wait_for()
    assert len(probe.runs) == 3
    job = await queue.client.get_job(handle.id)
    assert job is not None and job.status is JobStatus.FAILED
    assert (job.error, job.error_code) == ("Max retries reached", "PermanentJobError")
    assert queue.names(handle.id).count("job_error") == 1


async def test_retry_date_is_honoured(make_queue: Any) -> None:
    queue = await make_queue()
    probe = new_probe()
    at = utc(seconds=0.6)
    handle = await queue.client.submit(
        {"probe": probe.key, "mode": "retry_at", "at": at.isoformat()}
    )
    assert await handle.wait_for() == {"attempt": 2}
    retries = [event for event in queue.events if event[0] == "job_retry"]
    assert abs((retries[0][3] - at).total_seconds()) < 0.001
    assert probe.started_at[1] >= at


async def test_permanent_and_unexpected_errors_fail_at_once(make_queue: Any) -> None:
    queue = await make_queue()
    probe = new_probe()
    permanent = await queue.client.submit({"probe": probe.key, "mode": "permanent"})
    crash = await queue.client.submit({"probe": probe.key, "mode": "crash"})
    with pytest.raises(PermanentJobError, match="this cannot work"):
        await permanent.wait_for()
    with pytest.raises(JobError, match="bad value inside the job") as raised:
        await crash.wait_for()
    assert type(raised.value) is JobError
    job = await queue.client.get_job(crash.id)
    assert job is not None and job.error_code == "ValueError" and job.run_attempts == 1
    assert len(probe.runs) == 2
    assert queue.server.get_stats().failed_jobs == 2


async def test_output_that_is_not_json_fails_the_job(make_queue: Any) -> None:
    queue = await make_queue()
    handle = await queue.client.submit({"probe": new_probe().key, "mode": "bad_output"})
    with pytest.raises(JobError, match=r"output\['when'\]"):
        await handle.wait_for()


@pytest.mark.parametrize(
    ("kind", "reason"),
    [("deep", "nested more than"), ("surrogate", "lone surrogate"), ("huge", "digits")],
)
async def test_an_output_no_storage_can_keep_fails_at_once_with_the_reason(
    make_queue: Any, kind: str, reason: str
) -> None:
    queue = await make_queue()
    probe = new_probe()
    handle = await queue.client.submit(
        {"probe": probe.key, "mode": "output_past_limits", "kind": kind}
    )
    with pytest.raises(JobError, match=reason):
        await handle.wait_for()
    assert len(probe.runs) == 1  # not retried until "Max retries reached"
    job = await queue.client.get_job(handle.id)
    assert job is not None and job.status is JobStatus.FAILED and job.error_code == "ValueError"


async def test_abort_pending_job_fails_it_at_once(make_queue: Any) -> None:
    queue = await make_queue(start=False)
    handle = await queue.client.submit({"probe": new_probe().key})
    await handle.abort()
    job = await queue.client.get_job(handle.id)
    assert job is not None and job.status is JobStatus.FAILED
    assert job.error_code == "AbortSignalJobError"
    with pytest.raises(AbortSignalJobError):
        await handle.wait_for()
    assert queue.names(handle.id) == ["job_error"]
    await queue.server.start()
    await handle.abort()  # finished: nothing changes
    assert queue.names(handle.id) == ["job_error"]


async def test_abort_running_job_fires_signal_and_fails_once(make_queue: Any) -> None:
    queue = await make_queue()
    probe = new_probe()
    handle = await queue.client.submit({"probe": probe.key, "mode": "wait_abort"})
    assert await asyncio.wait_for(probe.started.get(), 10) == handle.id
    await handle.abort()
    with pytest.raises(AbortSignalJobError):
        await handle.wait_for()
    assert probe.signals_seen == ["Job aborted"]
    job = await queue.client.get_job(handle.id)
    assert job is not None and job.status is JobStatus.FAILED
    assert job.error_code == "AbortSignalJobError"
    names = queue.names(handle.id)
    assert names.count("job_aborting") == 1 and names.count("job_error") == 1
    stats = queue.server.get_stats()
    assert (stats.aborted_jobs, stats.failed_jobs) == (1, 0)
    await handle.abort()
    assert queue.names(handle.id) == names


async def test_abort_job_run_touches_only_that_run(make_queue: Any) -> None:
    queue = await make_queue(start=False)
    probe = new_probe()
    run = await queue.client.submit_batch(
        [{"probe": probe.key, "value": i} for i in range(3)], job_run_id="run-a"
    )
    other = await queue.client.submit({"probe": probe.key}, job_run_id="run-b")
    await queue.client.abort_job_run("run-a")
    jobs = await queue.client.get_jobs_by_run_id("run-a")
    assert [job.id for job in jobs] == [handle.id for handle in run]
    assert all(job.status is JobStatus.FAILED for job in jobs)
    await queue.server.start()
    assert (await queue.client.wait_for(other.id))["echo"] is None
    assert [job_id for job_id, _ in probe.runs] == [other.id]


async def test_disable_keeps_a_job_from_running(make_queue: Any) -> None:
    queue = await make_queue(start=False)
    probe = new_probe()
    handle = await queue.client.submit({"probe": probe.key})
    assert await queue.client.disable(handle.id)
    assert not await queue.client.disable(handle.id)
    with pytest.raises(JobDisabledError):
        await handle.wait_for()
    assert queue.names(handle.id) == ["job_disabled"]
    after = await queue.client.submit({"probe": probe.key})
    await queue.server.start()
    await after.wait_for()
    assert [job_id for job_id, _ in probe.runs] == [after.id]
    assert (await queue.client.get_job(handle.id)).status is JobStatus.DISABLED
    with pytest.raises(JobNotFoundError):
        await queue.client.disable(10**9)


async def test_retry_runs_a_failed_job_again(make_queue: Any) -> None:
    queue = await make_queue()
    probe = new_probe()
    handle = await queue.client.submit({"probe": probe.key, "mode": "fail_first"})
    with pytest.raises(JobError, match="first run fails"):
        await handle.wait_for()
    assert await queue.client.retry(handle.id)
    assert await handle.wait_for() == {"runs": 2}
    assert not await queue.client.retry(handle.id)
    with pytest.raises(JobNotFoundError):
        await queue.client.retry(10**9)


async def test_run_after_delays_the_job(make_queue: Any) -> None:
    queue = await make_queue()
    probe = new_probe()
    at = utc(seconds=0.5)
    later = await queue.client.submit({"probe": probe.key, "value": "later"}, run_after=at)
    now = await queue.client.submit({"probe": probe.key, "value": "now"})
    await now.wait_for()
    await later.wait_for()
    assert [job_id for job_id, _ in probe.runs] == [now.id, later.id]
    assert probe.started_at[1] >= at


async def test_deadline_passed_at_claim_fails_without_running(make_queue: Any) -> None:
    queue = await make_queue(start=False)
    probe = new_probe()
    handle = await queue.client.submit({"probe": probe.key}, deadline_at=utc(seconds=-1))
    await queue.server.start()
    with pytest.raises(PermanentJobError, match="Deadline exceeded"):
        await handle.wait_for()
    assert probe.runs == []


async def test_deadline_aborts_a_running_job(make_queue: Any) -> None:
    queue = await make_queue()
    probe = new_probe()
    # Far enough ahead that the job is surely claimed before it (else it fails at claim).
    handle = await queue.client.submit(
        {"probe": probe.key, "mode": "wait_abort"}, deadline_at=utc(seconds=2)
    )
    with pytest.raises(PermanentJobError, match="Deadline exceeded"):
        await handle.wait_for()
    assert probe.signals_seen == ["Deadline exceeded"]
    assert queue.server.get_stats().failed_jobs == 1


async def test_expired_lease_is_recovered_by_a_server(make_queue: Any) -> None:
    queue = await make_queue(start=False, lease_ms=200)
    probe = new_probe()
    handle = await queue.client.submit({"probe": probe.key, "value": 7})
    # A worker that claims the job and dies: it never renews its lease.
    claimed = await queue.storage.claim("dead-worker", utc(), utc(seconds=0.1), 1)
    assert [job.id for job in claimed] == [handle.id]
    await queue.server.start()
    assert await handle.wait_for() == {"echo": 7, "attempt": 2}
    assert queue.names(handle.id)[0] == "job_retry"
    assert queue.server.get_stats().retried_jobs == 1


async def test_expired_lease_without_attempts_left_fails(make_queue: Any) -> None:
    queue = await make_queue(start=False, lease_ms=200)
    handle = await queue.client.submit({"probe": new_probe().key}, max_retries=0)
    await queue.storage.claim("dead-worker", utc(), utc(seconds=0.1), 1)
    await queue.server.start()
    with pytest.raises(PermanentJobError, match="Max retries reached"):
        await handle.wait_for()


async def test_live_lease_is_renewed_and_never_taken(make_queue: Any) -> None:
    queue = await make_queue(lease_ms=600, worker_count=2)
    probe = new_probe()
    handle = await queue.client.submit({"probe": probe.key, "mode": "wait_gate"})
    await asyncio.wait_for(probe.started.get(), 10)
    # Several lease periods pass while the job runs; nobody may take it over.
    for _ in range(4):
        before: datetime | None = (await queue.client.get_job(handle.id)).lease_expires_at
        await eventually(functools.partial(_lease_moved, queue, handle.id, before))
    probe.gate.set()
    assert await handle.wait_for() == {"released": True}
    assert len(probe.runs) == 1
    assert queue.server.get_stats().retried_jobs == 0


async def _lease_moved(queue: Queue, job_id: int, before: datetime | None) -> bool:
    job = await queue.client.get_job(job_id)
    return job is not None and job.lease_expires_at is not None and job.lease_expires_at != before


async def test_graceful_stop_lets_running_jobs_finish(make_queue: Any) -> None:
    queue = await make_queue()
    probe = new_probe()
    handle = await queue.client.submit({"probe": probe.key, "mode": "wait_gate"})
    await asyncio.wait_for(probe.started.get(), 10)
    stopping = asyncio.create_task(queue.server.stop())
    await asyncio.sleep(0)
    assert not stopping.done()
    probe.gate.set()
    await stopping
    job = await queue.client.get_job(handle.id)
    assert job is not None and job.status is JobStatus.COMPLETED


async def test_stop_timeout_requeues_without_charging_an_attempt(make_queue: Any) -> None:
    queue = await make_queue(stop_timeout_ms=100)
    probe = new_probe()
    handle = await queue.client.submit({"probe": probe.key, "mode": "wait_abort"}, max_retries=0)
    await asyncio.wait_for(probe.started.get(), 10)
    await queue.server.stop()
    job = await queue.client.get_job(handle.id)
    assert job is not None
    assert (job.status, job.run_attempts, job.error) == (JobStatus.PENDING, 0, None)
    assert "job_error" not in queue.names(handle.id)
    assert probe.signals_seen == ["Server stopping"]
    probe.signals_seen.clear()
    # The next server runs it, as a first attempt.
    second = await make_queue(start=True)
    second_probe_job = await second.client.get_job(handle.id)
    assert second_probe_job is not None
    await asyncio.wait_for(probe.started.get(), 10)
    await second.client.abort(handle.id)
    with pytest.raises(AbortSignalJobError):
        await second.client.wait_for(handle.id)
    assert [attempt for _, attempt in probe.runs] == [1, 1]


async def test_stop_timeout_zero_requeues_at_once(make_queue: Any) -> None:
    queue = await make_queue(stop_timeout_ms=0)
    probe = new_probe()
    handle = await queue.client.submit({"probe": probe.key, "mode": "wait_abort"})
    await asyncio.wait_for(probe.started.get(), 10)
    await asyncio.wait_for(queue.server.stop(), 10)
    job = await queue.client.get_job(handle.id)
    assert job is not None and (job.status, job.run_attempts) == (JobStatus.PENDING, 0)


async def test_a_stop_can_be_cut_short(make_queue: Any) -> None:
    queue = await make_queue(stop_timeout_ms=3_600_000, abort_grace_ms=3_600_000)
    probe = new_probe()
    handle = await queue.client.submit({"probe": probe.key, "mode": "ignore_abort"})
    await asyncio.wait_for(probe.started.get(), 10)
    graceful = asyncio.create_task(queue.server.stop())
    await eventually(lambda: _holds(not queue.server.is_running()))
    assert not graceful.done()
    await asyncio.wait_for(queue.server.stop(timeout_ms=0), 10)
    await asyncio.wait_for(graceful, 10)
    assert probe.signals_seen == ["Server stopping", "cancelled"]
    job = await queue.client.get_job(handle.id)
    assert job is not None and (job.status, job.run_attempts) == (JobStatus.PENDING, 0)


async def test_wait_for_unknown_job(make_queue: Any) -> None:
    queue = await make_queue()
    assert await queue.client.get_job(10**9) is None
    with pytest.raises(JobNotFoundError):
        await queue.client.wait_for(10**9)
    with pytest.raises(JobNotFoundError):
        await queue.client.abort(10**9)


async def test_wait_for_never_misses_a_completion(make_queue: Any) -> None:
    queue = await make_queue(worker_count=2)
    probe = new_probe()
    handles = await queue.client.submit_batch([{"probe": probe.key, "value": i} for i in range(40)])
    # Waiters register while jobs are completing all around them.
    outputs = await asyncio.gather(*(handle.wait_for() for handle in handles))
    assert [output["echo"] for output in outputs] == list(range(40))
    # And after the fact.
    assert (await handles[0].wait_for())["echo"] == 0


async def test_output_for_input_finds_completed_jobs(make_queue: Any) -> None:
    queue = await make_queue()
    probe = new_probe()
    value = {"probe": probe.key, "value": [1, {"b": 2, "a": 1}]}
    assert await queue.client.output_for_input(value) is None
    await (await queue.client.submit(value)).wait_for()
    reordered = {"value": [1, {"a": 1, "b": 2}], "probe": probe.key}
    assert await queue.client.output_for_input(reordered) == {"echo": value["value"], "attempt": 1}


async def test_batch_and_queries(make_queue: Any) -> None:
    queue = await make_queue(start=False)
    probe = new_probe()
    handles = await queue.client.submit_batch(
        [{"probe": probe.key, "value": i} for i in range(5)], job_run_id="b1"
    )
    assert len({handle.id for handle in handles}) == 5
    assert await queue.client.size() == 5
    assert await queue.client.size(None) == 5
    assert [job.input["value"] for job in await queue.client.peek(num=3)] == [0, 1, 2]
    assert [job.id for job in await queue.client.get_jobs_by_run_id("b1")] == [
        handle.id for handle in handles
    ]
    await queue.server.start()
    await asyncio.gather(*(handle.wait_for() for handle in handles))
    assert await queue.client.size(JobStatus.COMPLETED) == 5
    assert await queue.client.size(JobStatus.PENDING) == 0


@pytest.mark.parametrize(
    ("bad", "error", "where"),
    [
        ({"when": datetime(2020, 1, 1)}, TypeError, r"input\['when'\]"),
        ({"items": [1, {2, 3}]}, TypeError, r"input\['items'\]\[1\]"),
        ({1: "int key"}, TypeError, "key 1"),
        ({"x": float("nan")}, ValueError, r"input\['x'\]"),
        ({"x": float("inf")}, ValueError, r"input\['x'\]"),
        (b"bytes", TypeError, "bytes"),
    ],
)
async def test_bad_input_is_refused_and_nothing_stored(
    make_queue: Any, bad: Any, error: type[Exception], where: str
) -> None:
    queue = await make_queue(start=False)
    with pytest.raises(error, match=where):
        await queue.client.submit(bad)
    with pytest.raises(error, match=where.replace("input", r"inputs\[1\]", 1)):
        await queue.client.submit_batch([{"ok": 1}, bad])
    assert await queue.client.size(None) == 0


async def test_bad_submit_options(make_queue: Any) -> None:
    queue = await make_queue(start=False)
    with pytest.raises(ValueError, match="max_retries"):
        await queue.client.submit({}, max_retries=-1)
    with pytest.raises(ValueError, match="timezone-aware"):
        await queue.client.submit({}, run_after=datetime(2030, 1, 1))
    with pytest.raises(TypeError, match="deadline_at"):
        await queue.client.submit({}, deadline_at="tomorrow")
    with pytest.raises(TypeError, match="inputs"):
        await queue.client.submit_batch("not a list")
    assert await queue.client.size(None) == 0


async def test_connected_client_gets_events_through_storage(storages: Storages) -> None:
    storage = await storages.queue()
    server = JobQueueServer(ScriptedJob, storage=storage, **FAST)
    other_storage = await storages.queue() if storages.backend.shares_location else storage
    client: JobQueueClient[dict[str, Any], Any] = JobQueueClient(
        storage=other_storage, poll_interval_ms=20
    )
    await client.connect()
    names: list[str] = []
    for name in ("job_start", "job_progress", "job_complete", "job_error", "job_retry"):
        client.on(name, lambda *args, name=name: names.append(name))
    progress: list[float] = []
    await server.start()
    try:
        probe = new_probe()
        handle = await client.submit({"probe": probe.key, "mode": "progress", "steps": [10, 90]})
        handle.on_progress(lambda value, *rest: progress.append(value))
        assert await handle.wait_for() == "done"
        await eventually(lambda: _holds("job_complete" in names))
        assert names[:4] == ["job_start", "job_progress", "job_progress", "job_complete"]
        assert progress == [10, 90]
        failing = await client.submit({"probe": probe.key, "mode": "permanent"})
        with pytest.raises(PermanentJobError):
            await failing.wait_for()
    finally:
        await client.disconnect()
        await server.stop()


async def _holds(value: bool) -> bool:
    return value


async def test_cleanup_deletes_finished_jobs(make_queue: Any) -> None:
    queue = await make_queue(
        start=False, delete_after_completion_ms=0, delete_after_failure_ms=60_000
    )
    probe = new_probe()
    done = await queue.client.submit({"probe": probe.key})
    failed = await queue.client.submit({"probe": probe.key, "mode": "permanent"})
    # The waits are registered before the server starts: a job deleted at once when it
    # completes would be gone for a wait_for that only began afterwards.
    waits = asyncio.gather(done.wait_for(), failed.wait_for(), return_exceptions=True)
    await queue.server.start()
    output, error = await waits
    assert output == {"echo": None, "attempt": 1}
    assert isinstance(error, PermanentJobError)
    await eventually(lambda: _is_gone(queue, done.id))
    assert await queue.client.get_job(failed.id) is not None
    # Stopped, so that only this explicit cleanup can delete (no periodic sweep races it).
    await queue.server.stop()
    queue.server.retention[JobStatus.FAILED] = 0
    assert await queue.server.cleanup() == 1
    assert await queue.client.get_job(failed.id) is None


async def _is_gone(queue: Queue, job_id: int) -> bool:
    return await queue.client.get_job(job_id) is None


async def test_workers_run_in_parallel_and_scale(make_queue: Any) -> None:
    queue = await make_queue(worker_count=3)
    probe = new_probe()
    handles = await queue.client.submit_batch(
        [{"probe": probe.key, "mode": "wait_gate"} for _ in range(6)]
    )
    for _ in range(3):
        await asyncio.wait_for(probe.started.get(), 10)
    assert queue.server.get_worker_count() == 3
    await queue.server.scale_workers(5)
    for _ in range(2):
        await asyncio.wait_for(probe.started.get(), 10)
    assert probe.most_running == 5
    probe.gate.set()
    await asyncio.gather(*(handle.wait_for() for handle in handles))
    await queue.server.scale_workers(1)
    assert queue.server.get_worker_count() == 1
    assert probe.most_running == 5


async def test_concurrency_limiter_caps_running_jobs(make_queue: Any) -> None:
    queue = await make_queue(worker_count=4, limiter=ConcurrencyLimiter(2))
    probe = new_probe()
    handles = await queue.client.submit_batch(
        [{"probe": probe.key, "mode": "wait_gate"} for _ in range(4)]
    )
    for _ in range(2):
        await asyncio.wait_for(probe.started.get(), 10)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(probe.started.get(), 0.3)
    probe.gate.set()
    await asyncio.gather(*(handle.wait_for() for handle in handles))
    assert probe.most_running == 2


class RecordedStarts:
    """A RateLimiterStorage that remembers the start times it accepted.

    The limiter's guarantee is about the starts it records; a job begins executing
    some time after that (a storage round trip or two, more on a busy machine), so
    the times a job observes are not the times the window applies to.
    """

    def __init__(self, storage: RateLimiterStorage) -> None:
        self.storage = storage
        self.starts: list[datetime] = []
        # Each method is spelled out: on Python 3.12+ (Pyodide runs 3.14) isinstance()
        # against a Protocol looks attributes up statically and never sees __getattr__.
        self.setup_database = storage.setup_database
        self.close = storage.close
        self.execution_count = storage.execution_count
        self.oldest_execution_time = storage.oldest_execution_time
        self.get_next_available_time = storage.get_next_available_time
        self.set_next_available_time = storage.set_next_available_time
        self.prune = storage.prune
        self.clear = storage.clear

    async def try_record_execution(
        self, queue_name: str, max_executions: int, window_start: datetime, now: datetime
    ) -> bool:
        recorded = await self.storage.try_record_execution(
            queue_name, max_executions, window_start, now
        )
        if recorded:
            self.starts.append(now)
        return recorded


async def test_shared_rate_limiter_limits_two_servers(storages: Storages) -> None:
    limits = RecordedStarts(await storages.rate_limiter())
    window = 0.5
    probe = new_probe()
    servers = []
    storage = await storages.queue()
    for _ in range(2):
        limiter = RateLimiter(
            limits,
            storage.queue_name,
            max_executions=3,
            window_size_in_seconds=window,
            initial_backoff_delay=20,
        )
        servers.append(
            JobQueueServer(ScriptedJob, storage=storage, limiter=limiter, worker_count=3, **FAST)
        )
    client: JobQueueClient[dict[str, Any], Any] = JobQueueClient(
        storage=storage, poll_interval_ms=20
    )
    handles = await client.submit_batch([{"probe": probe.key} for _ in range(8)])
    for server in servers:
        await server.start()
    try:
        await asyncio.gather(*(handle.wait_for() for handle in handles))
    finally:
        for server in servers:
            await server.stop()
    assert len(limits.starts) == len(probe.started_at) == 8
    starts = sorted(limits.starts)
    for index, start in enumerate(starts):
        in_window = [other for other in starts[index:] if (other - start).total_seconds() < window]
        assert len(in_window) <= 3


async def test_leader_lock_lets_one_server_process(make_queue: Any) -> None:
    name = "leader-" + new_probe().key
    first = await make_queue(leader_lock=LocalLeaderLock(name), lease_ms=60_000, stop_timeout_ms=0)
    second = await make_queue(leader_lock=LocalLeaderLock(name), lease_ms=60_000)
    await eventually(lambda: _holds(first.server.is_leader()))
    assert not second.server.is_leader()
    probe = new_probe()
    handle = await first.client.submit({"probe": probe.key, "mode": "ignore_abort"})
    await asyncio.wait_for(probe.started.get(), 10)
    # The leader dies mid-job (its job is cut off, its lease would still last a minute).
    assert first.server._worker is not None
    for run in list(first.server._worker._running.values()):
        assert run.task is not None
        run.task.cancel()
    await first.server.stop()
    await eventually(lambda: _holds(second.server.is_leader()))
    probe.gate.set()
    output = await second.client.wait_for(handle.id)
    assert output == "finished anyway"
    assert [attempt for _, attempt in probe.runs] == [1, 2]


async def test_events_once_off_and_wait_on(make_queue: Any) -> None:
    queue = await make_queue()
    probe = new_probe()
    once: list[int] = []
    always: list[int] = []
    removed: list[int] = []
    queue.client.once("job_complete", lambda q, job_id, output: once.append(job_id))
    queue.client.on("job_complete", lambda q, job_id, output: always.append(job_id))
    listener = lambda q, job_id, output: removed.append(job_id)  # noqa: E731
    queue.client.on("job_complete", listener)
    queue.client.off("job_complete", listener)
    async_seen: list[int] = []

    async def async_listener(q: str, job_id: int, output: Any) -> None:
        async_seen.append(job_id)

    queue.client.on("job_complete", async_listener)
    waiting = asyncio.create_task(queue.client.wait_on("job_complete"))
    first = await queue.client.submit({"probe": probe.key, "value": 1})
    assert await waiting == (queue.storage.queue_name, first.id, {"echo": 1, "attempt": 1})
    second = await queue.client.submit({"probe": probe.key, "value": 2})
    await second.wait_for()
    await eventually(lambda: _holds(len(async_seen) == 2))
    assert once == [first.id] and always == [first.id, second.id] and removed == []
    with pytest.raises(ValueError, match="unknown event"):
        queue.client.on("job_finished", print)


async def test_server_start_and_stop_events(make_queue: Any) -> None:
    queue = await make_queue(start=False)
    seen: list[tuple[str, str]] = []
    queue.server.on("server_start", lambda name: seen.append(("start", name)))
    queue.server.on("server_stop", lambda name: seen.append(("stop", name)))
    async with queue.server:
        assert queue.server.is_running()
    assert not queue.server.is_running()
    name = queue.storage.queue_name
    assert seen == [("start", name), ("stop", name)]
