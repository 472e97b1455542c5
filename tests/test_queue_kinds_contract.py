"""Client / server behaviour of SPEC section 8.1-8.5, on every storage backend: kinds,
priorities, unique jobs, pause and resume, timeouts, snoozing, retry policies,
tracebacks and metadata."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from pyjobqueue import (
    JobQueueClient,
    JobQueueServer,
    JobStatus,
    PermanentJobError,
    job,
)
from pyjobqueue.job import Job, JobContext
from pyjobqueue.storage import QueueStorage
from pyjobqueue.worker import FAILED_ATTEMPT_RECORD

from .conftest import Storages, eventually
from .jobs import (
    PatientJob,
    PolicyJob,
    Resize,
    ResizeOutput,
    ScriptedJob,
    SendEmail,
    new_probe,
)

FAST: dict[str, Any] = {"poll_interval_ms": 20, "cleanup_interval_ms": 50}


class Servers:
    """Servers and clients of one test, all stopped at the end."""

    def __init__(self, storages: Storages) -> None:
        self.storages = storages
        self.servers: list[JobQueueServer[Any, Any]] = []
        self.clients: list[JobQueueClient[Any, Any]] = []

    async def storage(self) -> QueueStorage:
        return await self.storages.queue()

    async def server(
        self, job_classes: Any, storage: QueueStorage, start: bool = True, **options: Any
    ) -> JobQueueServer[Any, Any]:
        server: JobQueueServer[Any, Any] = JobQueueServer(
            job_classes, storage=storage, **{**FAST, **options}
        )
        self.servers.append(server)
        if start:
            await server.start()
        return server

    def client(
        self, storage: QueueStorage, server: JobQueueServer[Any, Any] | None = None
    ) -> JobQueueClient[dict[str, Any], Any]:
        client: JobQueueClient[dict[str, Any], Any] = JobQueueClient(
            storage=storage, poll_interval_ms=20
        )
        if server is not None:
            client.attach(server)
        self.clients.append(client)
        return client

    async def close(self) -> None:
        for server in self.servers:
            await server.stop()
        for client in self.clients:
            await client.disconnect()


@pytest.fixture
async def servers(storages: Storages) -> AsyncIterator[Servers]:
    made = Servers(storages)
    yield made
    await made.close()


def events_of(client: JobQueueClient[Any, Any], *names: str) -> list[tuple[Any, ...]]:
    seen: list[tuple[Any, ...]] = []
    for name in names:
        client.on(name, lambda *args, name=name: seen.append((name, *args)))
    return seen


# -- kinds ---------------------------------------------------------------------------------


async def test_one_server_runs_several_kinds_and_jobs_of_no_kind_as_its_first(
    servers: Servers,
) -> None:
    storage = await servers.storage()
    server = await servers.server([Resize, SendEmail], storage)
    client = servers.client(storage, server)
    resized = await client.submit({"width": 640}, kind=Resize)
    output: ResizeOutput = await resized.wait_for()  # typed by the class
    assert output == {"ran": "resize", "width": 640, "kind": "resize"}
    emailed = await client.submit({"to": "ada@example.com"}, kind="SendEmail")
    assert await emailed.wait_for() == "sent to ada@example.com"
    untyped = await client.submit({"width": 1})
    assert await untyped.wait_for() == {"ran": "resize", "width": 1, "kind": None}
    stored = await client.get_job(resized.id)
    assert stored is not None and stored.kind == "resize"
    assert server.job_classes == (Resize, SendEmail)


async def test_servers_of_other_kinds_share_a_queue_and_a_job_of_no_running_kind_waits(
    servers: Servers,
) -> None:
    storage = await servers.storage()
    resizer = await servers.server(Resize, storage)
    mailer = await servers.server([SendEmail], storage)
    client = servers.client(storage)
    await client.connect()
    stranger = await client.submit({"x": 1}, kind="nobody-runs-this")
    handles = [await client.submit({"width": w}, kind=Resize) for w in range(3)]
    mails = [await client.submit({"to": f"{n}@x"}, kind=SendEmail) for n in range(3)]
    assert [(await h.wait_for())["ran"] for h in handles] == ["resize"] * 3
    assert [await h.wait_for() for h in mails] == [f"sent to {n}@x" for n in range(3)]
    assert resizer.get_stats().completed_jobs == 3
    assert mailer.get_stats().completed_jobs == 3
    job = await client.get_job(stranger.id)
    assert job is not None and job.status is JobStatus.PENDING and job.run_attempts == 0
    assert await client.size(JobStatus.PENDING, kind="nobody-runs-this") == 1
    assert await client.size(JobStatus.COMPLETED, kind=Resize) == 3
    assert [j.id for j in await client.peek(JobStatus.COMPLETED, kind=SendEmail)] == [
        m.id for m in mails
    ]
    counts = await client.counts()
    assert counts[("resize", JobStatus.COMPLETED)] == 3
    assert counts[("nobody-runs-this", JobStatus.PENDING)] == 1


async def test_job_class_lists_are_checked_at_construction(storage: QueueStorage) -> None:
    with pytest.raises(ValueError, match="empty"):
        JobQueueServer([], storage=storage)

    class OtherResize(Job[Any, Any]):
        kind = "resize"

    with pytest.raises(ValueError, match="same kind 'resize'"):
        JobQueueServer([Resize, OtherResize], storage=storage)
    with pytest.raises(TypeError, match="subclass of Job"):
        JobQueueServer([Resize, "SendEmail"], storage=storage)  # type: ignore[list-item]
    with pytest.raises(ValueError, match="kind must not be empty"):

        class Nameless(Job[Any, Any]):
            kind = ""

    @job(kind="shrink")
    async def shrink(input: Any, context: JobContext) -> str:
        return "small"

    assert shrink.kind == "shrink" and SendEmail.kind == "SendEmail"

    class Child(Resize):
        pass

    assert Child.kind == "Child"  # a subclass does not inherit its parent's kind


# -- priorities ----------------------------------------------------------------------------


async def test_higher_priorities_run_first(servers: Servers) -> None:
    storage = await servers.storage()
    client = servers.client(storage)
    probe = new_probe()
    priorities = [0, 5, -1, 5, 2, 0, 9]
    handles = [
        await client.submit({"probe": probe.key, "value": p}, priority=p) for p in priorities
    ]
    server = await servers.server(ScriptedJob, storage, worker_count=1)
    client.attach(server)
    for handle in handles:
        await handle.wait_for()
    ran = [job_id for job_id, _attempt in probe.runs]
    by_id = {h.id: p for h, p in zip(handles, priorities, strict=True)}
    assert [by_id[job_id] for job_id in ran] == [9, 5, 5, 2, 0, 0, -1]
    assert ran[1] < ran[2]  # equal priorities: the older first


# -- unique jobs ---------------------------------------------------------------------------


async def test_a_unique_key_gives_one_job_until_it_finishes(servers: Servers) -> None:
    storage = await servers.storage()
    client = servers.client(storage)
    probe = new_probe()
    first = await client.submit({"probe": probe.key, "mode": "wait_gate"}, unique_key="sync-42")
    again = await client.submit({"probe": probe.key, "value": 2}, unique_key="sync-42")
    assert first.created and not again.created and again.id == first.id
    batch = await client.submit_batch(
        [{"probe": probe.key, "value": n} for n in range(3)],
        unique_keys=["sync-42", "other", "other"],
    )
    assert [h.created for h in batch] == [False, True, False]
    assert batch[0].id == first.id and batch[1].id == batch[2].id
    server = await servers.server(ScriptedJob, storage)
    client.attach(server)
    await probe.started.get()
    during = await client.submit({"probe": probe.key}, unique_key="sync-42")
    assert not during.created and during.id == first.id  # PROCESSING holds the key
    probe.gate.set()
    assert await first.wait_for() == {"released": True}
    after = await client.submit({"probe": probe.key, "value": 3}, unique_key="sync-42")
    assert after.created and after.id != first.id
    assert await after.wait_for() == {"echo": 3, "attempt": 1}
    job = await client.get_job(after.id)
    assert job is not None and job.unique_key == "sync-42"


# -- pause and resume ----------------------------------------------------------------------


async def test_pause_stops_every_server_until_resume_and_survives_a_restart(
    servers: Servers,
) -> None:
    storage = await servers.storage()
    probe = new_probe()
    server = await servers.server(ScriptedJob, storage)
    client = servers.client(storage, server)
    running = await client.submit({"probe": probe.key, "mode": "wait_gate"})
    await probe.started.get()
    await client.pause()
    assert await client.is_paused()
    await eventually(lambda: _is(server.is_paused))
    waiting = await client.submit({"probe": probe.key, "value": "later"})  # still stored
    probe.gate.set()
    assert await running.wait_for() == {"released": True}  # running jobs go on
    await server.stop()
    rounds = count_claims(storage, 5)
    restarted = await servers.server(ScriptedJob, storage)
    client.attach(restarted)
    assert restarted.is_paused()
    await asyncio.wait_for(rounds.wait(), 30)  # five claim rounds of it took nothing
    job = await client.get_job(waiting.id)
    assert job is not None and job.status is JobStatus.PENDING
    await client.resume()
    assert not await client.is_paused()
    assert await waiting.wait_for(timeout=30) == {"echo": "later", "attempt": 1}
    await eventually(lambda: _is(lambda: not restarted.is_paused()))


def count_claims(storage: QueueStorage, rounds: int) -> asyncio.Event:
    """An event set once `storage.claim` has answered `rounds` more times."""
    done = asyncio.Event()
    claim = storage.claim
    answered = 0

    async def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal answered
        jobs = await claim(*args, **kwargs)
        answered += 1
        if answered >= rounds:
            done.set()
        return jobs

    setattr(storage, "claim", counted)  # noqa: B010 - a method replaced on the instance
    return done


async def _is(check: Callable[[], bool]) -> bool:
    return check()


# -- timeouts, snoozing, retry policies ------------------------------------------------------


async def test_an_attempt_past_its_timeout_is_retried_then_fails(servers: Servers) -> None:
    storage = await servers.storage()
    server = await servers.server([PatientJob, ScriptedJob], storage, abort_grace_ms=20)
    client = servers.client(storage, server)
    seen = events_of(client, "job_retry", "job_error")
    probe = new_probe()
    # The class timeout (60 ms): the job ignores its signal and is cancelled.
    handle = await client.submit(
        {"probe": probe.key, "mode": "ignore_abort"}, kind=PatientJob, max_retries=1
    )
    with pytest.raises(PermanentJobError, match="Max retries reached"):
        await handle.wait_for(timeout=30)
    assert probe.signals_seen.count("timeout") == 2
    assert [name for name, *_ in seen] == ["job_retry", "job_error"]
    # submit(timeout_ms=) for one job of a class without a timeout: it stops on its signal.
    other = new_probe()
    single = await client.submit(
        {"probe": other.key, "mode": "wait_abort"}, kind=ScriptedJob, timeout_ms=40, max_retries=0
    )
    with pytest.raises(PermanentJobError, match="Max retries reached"):
        await single.wait_for(timeout=30)
    assert other.signals_seen == ["timeout"]
    assert server.get_stats().retried_jobs == 1


async def test_a_timed_out_attempt_records_the_timeout_while_it_waits(servers: Servers) -> None:
    storage = await servers.storage()
    server = await servers.server(ScriptedJob, storage, abort_grace_ms=10)
    client = servers.client(storage, server)
    probe = new_probe()
    retried: asyncio.Future[tuple[Any, ...]] = asyncio.get_running_loop().create_future()

    def on_retry(*args: Any) -> None:
        if not retried.done():
            retried.set_result(args)

    client.on("job_retry", on_retry)
    handle = await client.submit(
        {"probe": probe.key, "mode": "wait_abort"}, timeout_ms=30, max_retries=3
    )
    await retried
    await client.disable(handle.id)  # do not run it again
    job = await client.get_job(handle.id)
    assert job is not None and job.error == "Timed out" and job.error_code == "JobTimeoutError"


async def test_a_snoozed_job_runs_again_later_without_using_an_attempt(servers: Servers) -> None:
    storage = await servers.storage()
    server = await servers.server(ScriptedJob, storage)
    client = servers.client(storage, server)
    seen = events_of(client, "job_retry", "job_complete", "job_error")
    probe = new_probe()
    handle = await client.submit(
        {"probe": probe.key, "mode": "snooze", "times": 2, "seconds": 0.05}, max_retries=0
    )
    assert await handle.wait_for(timeout=30) == {"runs": 3, "attempt": 1}
    assert [attempt for _id, attempt in probe.runs] == [1, 1, 1]
    assert [name for name, *_ in seen] == ["job_retry", "job_retry", "job_complete"]
    gap = (probe.started_at[1] - probe.started_at[0]).total_seconds()
    assert gap >= 0.05
    job = await client.get_job(handle.id)
    assert job is not None and job.run_attempts == 1 and job.status is JobStatus.COMPLETED


async def test_a_retry_policy_waits_longer_each_time_and_retry_on_counts_as_retryable(
    servers: Servers,
) -> None:
    storage = await servers.storage()
    server = await servers.server(PolicyJob, storage)
    client = servers.client(storage, server)
    probe = new_probe()
    handle = await client.submit(
        {"probe": probe.key, "mode": "retry_until", "succeed_on": 3}, max_retries=5
    )
    assert await handle.wait_for(timeout=30) == {"attempt": 3}
    starts = probe.started_at
    assert (starts[1] - starts[0]).total_seconds() >= 0.12
    assert (starts[2] - starts[1]).total_seconds() >= 0.24
    missing = new_probe()
    keyed = await client.submit({"probe": missing.key, "mode": "key_error"}, max_retries=1)
    with pytest.raises(PermanentJobError, match="Max retries reached"):
        await keyed.wait_for(timeout=30)
    assert len(missing.runs) == 2  # KeyError is in retry_on: it was retried once
    job = await client.get_job(keyed.id)
    assert job is not None and "KeyError: 'zz'" in (job.error_traceback or "")


# -- tracebacks and metadata ---------------------------------------------------------------


async def test_a_failed_job_keeps_its_traceback_and_the_worker_logs_it(
    servers: Servers, caplog: pytest.LogCaptureFixture
) -> None:
    storage = await servers.storage()
    server = await servers.server(ScriptedJob, storage)
    client = servers.client(storage, server)
    probe = new_probe()
    with caplog.at_level(logging.WARNING, logger="pyjobqueue.worker"):
        handle = await client.submit({"probe": probe.key, "mode": "key_error"})
        with pytest.raises(Exception, match="'zz'"):
            await handle.wait_for(timeout=30)
    job = await client.get_job(handle.id)
    assert job is not None and job.status is JobStatus.FAILED
    assert (job.error, job.error_code) == ("'zz'", "KeyError")
    trace = job.error_traceback or ""
    assert trace.startswith("Traceback (most recent call last):")
    assert "_key_error" in trace and trace.rstrip().endswith("KeyError: 'zz'")
    records = [r for r in caplog.records if r.name == "pyjobqueue.worker"]
    assert any(r.levelno == logging.WARNING and r.exc_info for r in records)
    assert any(f"job {handle.id} " in r.getMessage() for r in records)
    assert any(getattr(r, FAILED_ATTEMPT_RECORD, None) == handle.id for r in records)


async def test_metadata_is_kept_with_the_job_and_not_part_of_its_fingerprint(
    servers: Servers,
) -> None:
    storage = await servers.storage()
    server = await servers.server(ScriptedJob, storage)
    client = servers.client(storage, server)
    probe = new_probe()
    metadata = {"tenant": "a", "traceparent": "00-0af7651916cd43dd8448eb211c80319c-01"}
    handle = await client.submit({"probe": probe.key, "mode": "metadata"}, metadata=metadata)
    assert await handle.wait_for() == {"metadata": metadata, "kind": None}
    same_input = {"probe": probe.key, "mode": "metadata"}
    assert await client.output_for_input(same_input) == {"metadata": metadata, "kind": None}
    job = await client.get_job(handle.id)
    assert job is not None and job.metadata == metadata
    plain = await client.submit({"probe": probe.key, "value": 1})
    stored = await client.get_job(plain.id)
    assert stored is not None and stored.metadata == {}


# -- bad input -------------------------------------------------------------------------------


BAD_SUBMITS: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"priority": "1"}, TypeError, "priority must be an int"),
    ({"priority": True}, TypeError, "priority must be an int"),
    ({"priority": 1.5}, TypeError, "priority must be an int"),
    ({"priority": 2**31}, ValueError, "priority must be from"),
    ({"priority": -(2**31) - 1}, ValueError, "priority must be from"),
    ({"unique_key": ""}, ValueError, "unique_key must not be empty"),
    ({"unique_key": 42}, TypeError, "unique_key must be a str"),
    ({"unique_key": "x" * 256}, ValueError, "limit is 255"),
    ({"unique_key": "a\udc80"}, ValueError, "lone surrogate"),
    ({"kind": ""}, ValueError, "kind must not be empty"),
    ({"kind": 5}, TypeError, "kind must be a job class or a str"),
    ({"kind": int}, TypeError, "kind must be a job class or a str"),
    ({"metadata": [1]}, TypeError, "metadata must be a JSON object"),
    ({"metadata": "tenant"}, TypeError, "metadata must be a JSON object"),
    ({"metadata": {"a": object()}}, TypeError, "metadata"),
    ({"metadata": {"a": float("nan")}}, ValueError, "metadata"),
    ({"metadata": {1: "a"}}, TypeError, "metadata"),
    ({"timeout_ms": -1}, ValueError, "timeout_ms must be greater than 0"),
    ({"timeout_ms": 0}, ValueError, "timeout_ms must be greater than 0"),
    ({"timeout_ms": "5"}, TypeError, "timeout_ms must be a number"),
    ({"timeout_ms": float("inf")}, ValueError, "timeout_ms must be finite"),
]


@pytest.mark.parametrize(("options", "error", "message"), BAD_SUBMITS, ids=repr)
async def test_bad_options_are_refused_and_nothing_is_stored(
    storage: QueueStorage, options: dict[str, Any], error: type[Exception], message: str
) -> None:
    client: JobQueueClient[Any, Any] = JobQueueClient(storage=storage)
    with pytest.raises(error, match=message):
        await client.submit({"n": 1}, **options)
    batch_options = dict(options)
    if "unique_key" in batch_options:
        batch_options = {"unique_keys": [batch_options.pop("unique_key")]}
    with pytest.raises(error, match=message.replace("unique_key", r"unique_keys\[0\]")):
        await client.submit_batch([{"n": 1}], **batch_options)
    assert await storage.size(None) == 0


async def test_batch_unique_keys_must_match_the_inputs(storage: QueueStorage) -> None:
    client: JobQueueClient[Any, Any] = JobQueueClient(storage=storage)
    with pytest.raises(ValueError, match="2 keys for 3 inputs"):
        await client.submit_batch([1, 2, 3], unique_keys=["a", "b"])
    with pytest.raises(TypeError, match="one key"):
        await client.submit_batch([1], unique_keys="a")
    with pytest.raises(ValueError, match="kind must not be empty"):
        await client.size(kind="")
    assert await storage.size(None) == 0
