"""Middleware around execute (SPEC section 9): order, output, errors, what it sees."""

from __future__ import annotations

from typing import Any

import pytest

from pyjobqueue import Job, JobContext, JobQueueClient, JobQueueServer, JobStatus
from pyjobqueue.middleware import CallNext
from pyjobqueue.storage import InMemoryQueueStorage


class Echo(Job[dict[str, Any], dict[str, Any]]):
    kind = "echo"

    async def execute(self, input: dict[str, Any], context: JobContext) -> dict[str, Any]:
        if input.get("fail"):
            raise ValueError("inner failure")
        return {"echo": input["value"]}


async def test_middleware_wraps_execute_outermost_first() -> None:
    calls: list[str] = []

    def layer(name: str) -> Any:
        async def middleware(job: Job[Any, Any], context: JobContext, call_next: CallNext) -> Any:
            calls.append(f"{name} before {job.kind} attempt {context.job.run_attempts}")
            output = await call_next()
            calls.append(f"{name} after")
            return {**output, name: True}

        return middleware

    async def refuse(job: Job[Any, Any], context: JobContext, call_next: CallNext) -> Any:
        if job.metadata.get("tenant") == "blocked":
            raise PermissionError("tenant blocked")
        return await call_next()

    storage = InMemoryQueueStorage("mw")
    server = JobQueueServer(
        Echo, storage=storage, middleware=[layer("outer"), refuse, layer("inner")]
    )
    async with storage, server:
        client: JobQueueClient[dict[str, Any], dict[str, Any]] = JobQueueClient(storage=storage)
        client.attach(server)
        handle = await client.submit({"value": 1}, kind=Echo)
        assert await handle.wait_for() == {"echo": 1, "inner": True, "outer": True}
        assert calls == [
            "outer before echo attempt 1",
            "inner before echo attempt 1",
            "inner after",
            "outer after",
        ]
        blocked = await client.submit({"value": 2}, metadata={"tenant": "blocked"})
        with pytest.raises(Exception, match="tenant blocked"):
            await blocked.wait_for()
        failing = await client.submit({"value": 3, "fail": True})
        with pytest.raises(Exception, match="inner failure"):
            await failing.wait_for()
        job = await client.get_job(failing.id)
        assert job is not None and job.status is JobStatus.FAILED
        assert job.error_code == "ValueError" and "inner failure" in (job.error_traceback or "")


def test_middleware_must_be_a_list_of_callables() -> None:
    storage = InMemoryQueueStorage("mw")
    with pytest.raises(TypeError, match="list of async callables"):
        JobQueueServer(Echo, storage=storage, middleware=print)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"middleware\[1\] is not callable"):
        JobQueueServer(Echo, storage=storage, middleware=[print, 3])  # type: ignore[list-item]
