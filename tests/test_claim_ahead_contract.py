"""Claiming ahead (worker.CLAIM_AHEAD_WINDOW), on every storage backend.

Once a worker has seen its jobs are short, one claim takes more jobs than it has idle
slots. These tests hold one job at a gate while the worker holds others in hand, and
check that held jobs run once, keep their leases, go back to the queue on stop, and see
an abort that came while they waited.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pyjobqueue import AbortSignalJobError, JobQueueClient, JobQueueServer, JobStatus, worker
from pyjobqueue.storage import QueueStorage

from .conftest import Storages, eventually
from .jobs import Probe, ScriptedJob, new_probe

HELD = 2  # jobs submitted behind the one at the gate (a claim ahead holds them)


@pytest.fixture(autouse=True)
def wide_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """A window wide enough that a loaded machine's short jobs still count as short
    (the worker then holds every job these tests submit behind the gate)."""
    monkeypatch.setattr(worker, "CLAIM_AHEAD_WINDOW", 60.0)


async def started(probe: Probe, job_id: int) -> None:
    """Wait until job `job_id` has started."""
    while await asyncio.wait_for(probe.started.get(), 20) != job_id:
        pass


class Held:
    """A server of one slot that has run short jobs, then holds a gated job and more."""

    def __init__(self, storage: QueueStorage, **options: Any) -> None:
        self.storage = storage
        self.probe = new_probe()
        self.server: JobQueueServer[dict[str, Any], Any] = JobQueueServer(
            ScriptedJob, storage=storage, worker_count=1, poll_interval_ms=20, **options
        )
        self.client: JobQueueClient[dict[str, Any], Any] = JobQueueClient(storage=storage)
        self.client.attach(self.server)
        self.starts: list[int] = []
        self.client.on("job_start", lambda _queue, job_id, *_rest: self.starts.append(job_id))

    async def hold(self, *behind: dict[str, Any]) -> tuple[int, list[int]]:
        """Run short jobs, then submit a gated job and `behind` after it; wait until the
        gated job runs and the others are claimed (PROCESSING in the storage) while only
        the gated one executes. The ids of the gated job and of the others."""
        await self.server.start()
        short = await self.client.submit_batch([{"probe": self.probe.key}] * 10)
        for handle in short:
            await handle.wait_for()
        key = self.probe.key
        gated, *rest = await self.client.submit_batch(
            [{"probe": key, "mode": "wait_gate"}, *({"probe": key, **job} for job in behind)]
        )
        await started(self.probe, gated.id)

        async def all_claimed() -> bool:
            return await self.storage.size(JobStatus.PROCESSING) == 1 + len(rest)

        await eventually(all_claimed)
        assert self.probe.running == 1
        return gated.id, [handle.id for handle in rest]

    async def close(self) -> None:
        self.probe.gate.set()
        await self.server.stop()
        await self.client.disconnect()


async def test_jobs_claimed_ahead_each_run_once(storages: Storages) -> None:
    held = Held(await storages.queue("ahead"))
    try:
        gated, rest = await held.hold(*({"value": n} for n in range(HELD)))
        held.probe.gate.set()
        outputs = [await held.client.wait_for(job_id) for job_id in rest]
        assert [output["echo"] for output in outputs] == list(range(HELD))
        assert await held.client.wait_for(gated) == {"released": True}
        ran = [job_id for job_id, _attempt in held.probe.runs]
        assert sorted(ran) == sorted(set(ran)) and set(rest) <= set(ran)
        assert sorted(held.starts) == sorted(set(held.starts))  # one job_start each
        assert held.probe.most_running == 1
    finally:
        await held.close()


async def test_jobs_in_hand_go_back_to_the_queue_on_stop(storages: Storages) -> None:
    storage = await storages.queue("ahead-stop")
    held = Held(storage, stop_timeout_ms=60_000)
    try:
        gated, rest = await held.hold(*({"value": n} for n in range(HELD)))
        stopping = asyncio.ensure_future(held.server.stop())

        async def given_back() -> bool:
            return await storage.size(JobStatus.PENDING) == HELD

        await eventually(given_back)  # while the gated job still runs
        assert held.probe.running == 1
        held.probe.gate.set()
        await stopping
        for job_id in rest:
            job = await storage.get(job_id)
            assert job is not None and job.status is JobStatus.PENDING
            assert job.run_attempts == 0 and job.worker_id is None
        assert not {job_id for job_id, _attempt in held.probe.runs} & set(rest)
        await held.server.start()
        for job_id in rest:
            await held.client.wait_for(job_id)
        assert [attempt for job_id, attempt in held.probe.runs if job_id in rest] == [1] * HELD
        assert (await held.client.wait_for(gated)) == {"released": True}
    finally:
        await held.close()


async def test_a_job_in_hand_keeps_its_lease(storages: Storages) -> None:
    storage = await storages.queue("ahead-lease")
    held = Held(storage, lease_ms=600)
    try:
        _gated, [waiting] = await held.hold({"value": 1})
        job = await storage.get(waiting)
        assert job is not None and job.lease_expires_at is not None
        first_lease = job.lease_expires_at

        async def renewed() -> bool:
            now = await storage.get(waiting)
            assert now is not None and now.status is JobStatus.PROCESSING
            return now.lease_expires_at is not None and now.lease_expires_at > first_lease

        await eventually(renewed)
        held.probe.gate.set()
        assert await held.client.wait_for(waiting) == {"echo": 1, "attempt": 1}
    finally:
        await held.close()


async def test_a_job_aborted_while_in_hand_starts_aborted(storages: Storages) -> None:
    held = Held(await storages.queue("ahead-abort"))
    try:
        _gated, [waiting, after] = await held.hold({"mode": "wait_abort"}, {"value": 2})
        await held.client.abort(waiting)
        job = await held.storage.get(waiting)
        assert job is not None and job.status is JobStatus.ABORTING
        held.probe.gate.set()
        try:
            await held.client.wait_for(waiting)
        except AbortSignalJobError:
            pass
        else:
            raise AssertionError("the aborted job completed")
        assert held.probe.signals_seen == ["Job aborted"]
        assert await held.client.wait_for(after) == {"echo": 2, "attempt": 1}
        failed = await held.storage.get(waiting)
        assert failed is not None and failed.status is JobStatus.FAILED
    finally:
        await held.close()
