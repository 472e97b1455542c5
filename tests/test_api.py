"""The public surface: exported names, constructor validation, URLs, the @job decorator."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import Any

import pytest

import pyjobqueue
import pyjobqueue.storage
from pyjobqueue import (
    ConcurrencyLimiter,
    Job,
    JobContext,
    JobQueueClient,
    JobQueueServer,
    JobQueueWorker,
    JobStatus,
    job,
)
from pyjobqueue.storage import InMemoryQueueStorage, open_storage

SPEC_NAMES = [
    "Job",
    "job",
    "JobContext",
    "JobStatus",
    "JobHandle",
    "JobQueueStats",
    "JobQueueClient",
    "JobQueueServer",
    "JobQueueWorker",
    "JobError",
    "JobNotFoundError",
    "RetryableJobError",
    "PermanentJobError",
    "AbortSignalJobError",
    "JobDisabledError",
    "Limiter",
    "NullLimiter",
    "ConcurrencyLimiter",
    "DelayLimiter",
    "DependencyFailedError",
    "RateLimiter",
    "CompositeLimiter",
    "EvenlySpacedRateLimiter",
    # SPEC section 8.5
    "JobTimeoutError",
    "JobSnooze",
    # SPEC section 8.6
    "Schedule",
    # SPEC section 9
    "run",
]
SPEC_STORAGE_NAMES = [
    "QueueStorage",
    "RateLimiterStorage",
    "InMemoryQueueStorage",
    "InMemoryRateLimiterStorage",
    "SqliteQueueStorage",
    "SqliteRateLimiterStorage",
    "PostgresQueueStorage",
    "PostgresRateLimiterStorage",
    "IndexedDbQueueStorage",
    "IndexedDbRateLimiterStorage",
    "open_storage",
    "default_storage",
]


def test_exported_names_are_the_curated_surface() -> None:
    assert set(SPEC_NAMES) <= set(pyjobqueue.__all__)
    assert set(pyjobqueue.__all__) - set(SPEC_NAMES) == {"AbortSignal"}
    assert set(pyjobqueue.storage.__all__) == set(SPEC_STORAGE_NAMES)
    for name in pyjobqueue.__all__:
        assert getattr(pyjobqueue, name) is not None
    for name in pyjobqueue.storage.__all__:
        assert getattr(pyjobqueue.storage, name) is not None


def test_import_needs_no_driver_and_no_browser() -> None:
    script = textwrap.dedent(
        """
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {"aiosqlite", "asyncpg", "js", "pyodide"}:
                    raise ImportError(f"blocked {name}")
        sys.meta_path.insert(0, Block())
        import pyjobqueue, pyjobqueue.storage
        from pyjobqueue.storage import InMemoryQueueStorage
        assert not {"aiosqlite", "asyncpg", "js", "pyodide"} & set(sys.modules)
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.stdout.strip() == "ok", result.stderr


def test_job_status_is_a_str_enum() -> None:
    assert JobStatus("PENDING") is JobStatus.PENDING
    assert JobStatus.FAILED == "FAILED"
    assert {status.value for status in JobStatus} == {
        "PENDING",
        "PROCESSING",
        "COMPLETED",
        "FAILED",
        "ABORTING",
        "DISABLED",
        "WAITING",
    }


async def test_job_decorator_makes_a_job_class() -> None:
    @job
    async def double(input: dict[str, int], context: JobContext) -> dict[str, int]:
        """Double a number."""
        await context.update_progress(100)
        return {"n": input["n"] * 2}

    assert issubclass(double, Job)
    assert double.__name__ == "double" and double.__doc__ == "Double a number."
    storage = InMemoryQueueStorage("double")
    async with storage, JobQueueServer(double, storage=storage) as server:
        client: JobQueueClient[dict[str, int], dict[str, int]] = JobQueueClient(storage=storage)
        client.attach(server)
        assert await (await client.submit({"n": 21})).wait_for() == {"n": 42}
    with pytest.raises(TypeError, match="async function"):
        job(lambda input, context: None)  # type: ignore[arg-type, return-value]


class Noop(Job[Any, Any]):
    async def execute(self, input: Any, context: JobContext) -> Any:
        return None


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"worker_count": 0}, ValueError, "worker_count"),
        ({"worker_count": 1.5}, TypeError, "worker_count"),
        ({"poll_interval_ms": -1}, ValueError, "poll_interval_ms"),
        ({"poll_interval_ms": 0}, ValueError, "poll_interval_ms"),
        ({"lease_ms": 0}, ValueError, "lease_ms"),
        ({"stop_timeout_ms": -1}, ValueError, "stop_timeout_ms"),
        ({"cleanup_interval_ms": -10}, ValueError, "cleanup_interval_ms"),
        ({"delete_after_completion_ms": -1}, ValueError, "delete_after_completion_ms"),
        ({"delete_after_failure_ms": "soon"}, TypeError, "delete_after_failure_ms"),
        ({"limiter": "fast"}, TypeError, "limiter"),
        ({"leader_lock": object()}, TypeError, "leader_lock"),
        ({"queue_name": "other"}, ValueError, "queue_name"),
    ],
)
def test_invalid_server_options_raise_at_construction(
    options: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        JobQueueServer(Noop, storage=InMemoryQueueStorage("q"), **options)


def test_invalid_classes_and_storages() -> None:
    storage = InMemoryQueueStorage("q")
    with pytest.raises(TypeError, match="job_class"):
        JobQueueServer(object, storage=storage)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="job_class"):
        JobQueueWorker(Noop(input=None), storage=storage)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="storage"):
        JobQueueClient(storage="memory://")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="concurrency"):
        JobQueueWorker(Noop, storage=storage, limiter=ConcurrencyLimiter(1), concurrency=0)
    with pytest.raises(ValueError, match="queue_name"):
        InMemoryQueueStorage("")
    with pytest.raises(TypeError, match="queue_name"):
        InMemoryQueueStorage(5)  # type: ignore[arg-type]


def test_open_storage_urls() -> None:
    assert isinstance(open_storage("memory://", "q"), InMemoryQueueStorage)
    with pytest.raises(ValueError, match="unknown storage url"):
        open_storage("redis://localhost", "q")
    with pytest.raises(ValueError, match="unknown storage url"):
        open_storage("jobs.db", "q")
    with pytest.raises(ValueError, match="needs a path"):
        open_storage("sqlite://", "q")
    with pytest.raises(ValueError, match="queue_name"):
        open_storage("memory://", "")


def test_sqlite_url_paths() -> None:
    from pyjobqueue.storage.url import sqlite_path

    assert sqlite_path("sqlite:///jobs.db") == "jobs.db"
    assert sqlite_path("sqlite:///data/my%20jobs.db") == "data/my jobs.db"
    assert sqlite_path("sqlite:////var/lib/jobs.db") == "/var/lib/jobs.db"
    assert sqlite_path("sqlite://:memory:") == ":memory:"
