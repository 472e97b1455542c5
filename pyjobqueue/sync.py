"""SyncClient: submit and follow jobs from code that is not async (WSGI apps, scripts).

It runs one private event loop in a background thread for its whole life, with one
storage (one connection pool) on it, and every method hands its work to that loop and
waits for the answer, so any number of threads can share one SyncClient. CPython only:
under Pyodide there is no second thread to run the loop in (use `JobQueueClient`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar

from ._platform import IN_PYODIDE
from .client import JobQueueClient
from .job import Job, JobStatus
from .storage.base import QueueStorage
from .storage.url import open_storage

if IN_PYODIDE:
    raise ImportError(
        "pyjobqueue.sync needs threads, which Pyodide does not have: use JobQueueClient with await"
    )

T = TypeVar("T")
StorageFactory = Callable[[], QueueStorage]


class SyncClient:
    """A blocking `JobQueueClient` for a storage URL, or for a callable that returns a
    storage (not yet set up) such as `lambda: PostgresQueueStorage(dsn, "emails")`.

    `submit` returns the job's id; `wait_for` blocks until the job finishes (or
    `timeout` seconds pass: `TimeoutError`). Close it (or use `with`) to stop its loop
    and release its connections.
    """

    def __init__(
        self,
        storage: str | StorageFactory,
        queue_name: str | None = None,
        *,
        poll_interval_ms: float = 100,
    ) -> None:
        if isinstance(storage, str):
            if queue_name is None:
                raise TypeError("SyncClient(url, queue_name) needs the queue name with a URL")
            url, name = storage, queue_name

            def factory() -> QueueStorage:
                return open_storage(url, name)

        elif callable(storage):
            factory = storage
        else:
            raise TypeError(
                f"storage must be a URL or a callable that returns a storage, got {storage!r}"
            )
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="pyjobqueue SyncClient", daemon=True
        )
        self._thread.start()
        self._closed = False
        self._lock = threading.Lock()
        try:
            self.client: JobQueueClient[Any, Any] = self._run(
                self._open(factory, queue_name, poll_interval_ms)
            )
        except BaseException:
            self._stop_loop()
            raise
        self.queue_name = self.client.queue_name

    async def _open(
        self, factory: StorageFactory, queue_name: str | None, poll_interval_ms: float
    ) -> JobQueueClient[Any, Any]:
        storage = factory()
        if not isinstance(storage, QueueStorage):
            raise TypeError(f"the storage factory returned {storage!r}, not a QueueStorage")
        await storage.setup_database()
        try:
            client: JobQueueClient[Any, Any] = JobQueueClient(
                storage=storage, queue_name=queue_name, poll_interval_ms=poll_interval_ms
            )
            await client.connect()  # wait_for hears of completions at once
        except BaseException:
            await storage.close()
            raise
        return client

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the private loop; its result (or its exception) here."""
        if self._closed:
            coroutine.close()
            raise RuntimeError("this SyncClient is closed")
        if threading.current_thread() is self._thread:
            coroutine.close()
            raise RuntimeError("a SyncClient cannot be called from its own loop's thread")
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            raise asyncio.CancelledError() from None

    # -- the client's operations --------------------------------------------------------

    def submit(self, input: Any, **options: Any) -> int:
        """Store a new job (`JobQueueClient.submit`'s options); its id (with a unique key
        that an unfinished job holds, that job's id)."""
        return self._run(self.client.submit(input, **options)).id

    def submit_batch(self, inputs: Sequence[Any], **options: Any) -> list[int]:
        """Store several jobs in one transaction; their ids."""
        return [handle.id for handle in self._run(self.client.submit_batch(inputs, **options))]

    def get_job(self, job_id: int) -> Job[Any, Any] | None:
        """The job, or None."""
        return self._run(self.client.get_job(job_id))

    def wait_for(self, job_id: int, timeout: float | None = None) -> Any:
        """Block until the job finishes: its output, or its error raised (see
        `JobQueueClient.wait_for`); `TimeoutError` after `timeout` seconds."""
        return self._run(self.client.wait_for(job_id, timeout=timeout))

    def abort(self, job_id: int) -> None:
        """Abort the job (see `JobQueueClient.abort`)."""
        self._run(self.client.abort(job_id))

    def size(self, status: JobStatus | None = JobStatus.PENDING, **options: Any) -> int:
        """How many jobs have `status` (see `JobQueueClient.size`)."""
        return self._run(self.client.size(status, **options))

    def peek(self, status: JobStatus = JobStatus.PENDING, num: int = 100) -> list[Job[Any, Any]]:
        """Up to `num` jobs with `status`, next to run first."""
        return self._run(self.client.peek(status, num))

    def pause(self) -> bool:
        """Pause the queue (see `JobQueueClient.pause`); whether it changed anything."""
        return self._run(self.client.pause())

    def resume(self) -> bool:
        """Resume the queue; whether it changed anything."""
        return self._run(self.client.resume())

    # -- life ---------------------------------------------------------------------------

    def close(self) -> None:
        """Disconnect, close the storage and stop the loop (safe to call twice)."""
        with self._lock:
            if self._closed:
                return
            try:
                self._run(self._close())
            finally:
                self._closed = True
                self._stop_loop()

    async def _close(self) -> None:
        await self.client.disconnect()
        await self.client.storage.close()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SyncClient({self.client.storage!r}, queue={self.queue_name!r})"
