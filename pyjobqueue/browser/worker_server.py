"""WorkerServer: a page's JobQueueServer in a module Web Worker with a Pyodide of its own.

The page keeps its thread for the user: the jobs (the user's module, given as source
text or a URL) run in the worker, on the same IndexedDB queue as the page's client,
and every job event reaches the page through the storage's feed (BroadcastChannel),
as between tabs. On a cross-origin isolated page the worker also gets Pyodide's
interrupt buffer, and `abort()` stops a running job even if it never looks at its
signal (`_interrupts.py`); elsewhere abort is cooperative, as in any server.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import importlib.resources
import json
import logging
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self

from .._options import optional_ms, require_count, require_ms
from ..client import JobQueueClient
from ..events import FINISHING_EVENTS, EventName, JobEvent
from ..storage.base import Unsubscribe
from ..storage.indexeddb import IndexedDbQueueStorage
from ._ffi import JsObject, create_proxy, js_global, json_to_js
from ._interrupts import BUFFER_LENGTH, REARM_SECONDS, SharedTargets

logger = logging.getLogger("pyjobqueue.browser")

# How much longer than the server's own stop the page waits before it terminates the worker.
STOP_SLACK_SECONDS = 5.0
BOOTSTRAP = "server_worker.mjs"  # shipped in this package, next to this module
BOOT = "boot.mjs"  # the same: how the worker starts Pyodide, from a snapshot if it can
# What WorkerServer passes on to the worker's JobQueueServer, and how each is checked.
COUNT_OPTIONS = ("worker_count",)
MS_OPTIONS = ("poll_interval_ms", "lease_ms", "cleanup_interval_ms")
MS_OR_ZERO_OPTIONS = ("stop_timeout_ms", "abort_grace_ms")
OPTIONAL_MS_OPTIONS = (
    "delete_after_completion_ms",
    "delete_after_failure_ms",
    "delete_after_disabled_ms",
)
NOT_ISOLATED = (
    "the page is not cross-origin isolated (serve it with the headers "
    "Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy: "
    "require-corp): abort() cannot stop a job of the worker that does not check its signal"
)


def server_options(options: dict[str, Any]) -> dict[str, Any]:
    """The JobQueueServer options, checked as the server checks them; TypeError/ValueError."""
    known = {*COUNT_OPTIONS, *MS_OPTIONS, *MS_OR_ZERO_OPTIONS, *OPTIONAL_MS_OPTIONS}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"WorkerServer got unknown server options: {', '.join(unknown)}")
    for name, value in options.items():
        if name in COUNT_OPTIONS:
            require_count(name, value, 1)
        elif name in OPTIONAL_MS_OPTIONS:
            optional_ms(name, value)
        else:
            require_ms(name, value, positive=name in MS_OPTIONS)
    return dict(options)


def installed_from() -> list[str]:
    """How this page got pyjobqueue, for the worker to install it the same way: the
    name in Pyodide's lock file, or the wheel's URL (micropip)."""
    try:
        source = importlib.metadata.distribution("pyjobqueue").read_text("PYODIDE_SOURCE")
    except importlib.metadata.PackageNotFoundError:
        source = None
    if source is None or not source.strip():
        raise RuntimeError(
            "cannot tell how this page installed pyjobqueue: pass packages=[...] "
            "(names in Pyodide's lock file, or wheel URLs)"
        )
    source = source.strip()
    return ["pyjobqueue"] if source == "pyodide" else [source]


class WorkerServer:
    """A JobQueueServer of the page's jobs in a module Web Worker, and a client for the page.

    Give the job module as `source` (Python text) or `url`; the server runs the job
    classes named in `jobs`, or every one the module defines (Job subclasses and @job
    functions). `client` is a connected `JobQueueClient` of the same queue.
    """

    def __init__(
        self,
        source: str | None = None,
        *,
        url: str | None = None,
        queue_name: str,
        database_name: str = "pyjobqueue",
        jobs: Sequence[str] | None = None,
        module_name: str | None = None,
        leader_lock: str | None = None,
        packages: Sequence[str] | None = None,
        index_url: str | None = None,
        **options: Any,
    ) -> None:
        if (source is None) == (url is None):
            raise TypeError("WorkerServer needs the job module: source=... or url=..., not both")
        if source is not None and not isinstance(source, str):
            raise TypeError(f"source must be Python source text, got {source!r}")
        if url is not None and (not isinstance(url, str) or not url):
            raise TypeError(f"url must be the job module's URL, got {url!r}")
        if jobs is not None and (
            isinstance(jobs, str) or not all(isinstance(name, str) and name for name in jobs)
        ):
            raise TypeError(f"jobs must be a list of names in the job module, got {jobs!r}")
        if module_name is None:
            module_name = "jobs" if url is None else url.rsplit("/", 1)[-1].split("?")[0]
            module_name = module_name.removesuffix(".py") or "jobs"
        if not module_name.isidentifier():
            raise ValueError(f"module_name must be a Python identifier, got {module_name!r}")
        if leader_lock is not None and (not isinstance(leader_lock, str) or not leader_lock):
            raise TypeError(f"leader_lock must be a Web Locks name, got {leader_lock!r}")
        if packages is not None and (
            isinstance(packages, str) or not all(isinstance(name, str) for name in packages)
        ):
            raise TypeError(f"packages must be a list of names or wheel URLs, got {packages!r}")
        self._request: dict[str, Any] = {
            "source": source,
            "url": url,
            "module_name": module_name,
            "jobs": None if jobs is None else list(jobs),
            "queue_name": queue_name,
            "database_name": database_name,
            "leader_lock": leader_lock,
            "options": server_options(options),
        }
        self.queue_name = queue_name
        self.hard_cancel = False  # set by start(): True on a cross-origin isolated page
        # Set by start(): True when the worker's Python was restored from the runtime's
        # memory snapshot (a runtime our build assembled has one) instead of started.
        self.started_from_snapshot = False
        # Last: on CPython this raises ImportError (IndexedDB is a browser API).
        self.storage = IndexedDbQueueStorage(queue_name, database_name)
        self.client: JobQueueClient[Any, Any] = JobQueueClient(storage=self.storage)
        self._packages = None if packages is None else list(packages)
        self._index_url = index_url
        self._worker: JsObject | None = None
        self._scripts: list[str] = []  # blob: URLs of the worker's modules, while it loads
        self._on_message: JsObject | None = None
        self._replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._targets: SharedTargets | None = None
        self._listed: set[int] = set()  # the jobs this page listed there, to unlist
        self._unsubscribe: Unsubscribe | None = None
        self._rearm: asyncio.Task[None] | None = None

    # -- starting and stopping -------------------------------------------------------

    async def start(self) -> Self:
        """Start the worker and wait until its server runs; RuntimeError if it cannot."""
        if self._worker is not None:
            return self
        js = js_global()
        boot = self._boot_message()  # before the worker: it may refuse (no packages)
        await self.storage.setup_database()
        shared = None
        if getattr(js, "crossOriginIsolated", False):
            buffer = js.SharedArrayBuffer.new(4 * BUFFER_LENGTH)
            shared = js.Int32Array.new(buffer)
            self._targets = SharedTargets(shared)
        else:
            logger.warning("WorkerServer of queue %r: %s", self.queue_name, NOT_ISOLATED)
        self.hard_cancel = shared is not None
        self._worker = self._new_worker()
        boot["bootModule"] = self._module_url(BOOT)
        message = json_to_js(boot)
        message.shared = shared
        self._worker.postMessage(message)
        reply = await self._replies.get()
        for script in self._scripts:  # the worker has loaded them
            js.URL.revokeObjectURL(script)
        self._scripts = []
        if reply["type"] != "started":
            await self._terminate()
            error = RuntimeError(f"the job worker could not start: {reply.get('message')}")
            if reply.get("detail"):
                error.add_note(f"in the worker: {reply['detail']}")
            raise error
        self.started_from_snapshot = bool(reply.get("snapshot"))
        await self.client.connect()
        if self._targets is not None:
            self._unsubscribe = await self.storage.subscribe(self._on_event)
        return self

    def _boot_message(self) -> dict[str, Any]:
        page = str(js_global().location.href)

        def absolute(url: str) -> str:  # the worker's own address is a blob: URL
            return str(js_global().URL.new(url, page).href)

        packages = self._packages if self._packages is not None else installed_from()
        packages = [absolute(name) if "/" in name else name for name in packages]
        index_url = self._index_url
        if index_url is None:
            import pyodide_js

            index_url = str(pyodide_js._api.config.indexURL)
        index_url = absolute(index_url)
        request = dict(self._request)
        if request["url"] is not None:
            request["url"] = absolute(request["url"])
        return {
            "indexURL": index_url,
            "pyodideModule": index_url.rstrip("/") + "/pyodide.mjs",
            "packages": packages,
            "request": json.dumps(request),
        }

    def _module_url(self, name: str) -> str:
        """A blob: URL of one of this package's JavaScript modules (revoked once the
        worker has started)."""
        js = js_global()
        code = importlib.resources.files(__package__).joinpath(name).read_text()
        blob = js.Blob.new(json_to_js([code]), json_to_js({"type": "text/javascript"}))
        url = str(js.URL.createObjectURL(blob))
        self._scripts.append(url)
        return url

    def _new_worker(self) -> JsObject:
        js = js_global()
        worker = js.Worker.new(self._module_url(BOOTSTRAP), json_to_js({"type": "module"}))
        self._on_message = create_proxy(self._message)
        worker.onmessage = self._on_message
        worker.onerror = self._on_message
        return worker

    def _message(self, event: Any) -> None:
        data = getattr(event, "data", None)
        if not isinstance(data, str):  # an error event: the script could not run
            text = getattr(event, "message", None) or "the worker script failed to load"
            self._replies.put_nowait({"type": "error", "message": str(text)})
            return
        self._replies.put_nowait(json.loads(data))

    async def stop(self, *, timeout_ms: float | None = None) -> None:
        """Stop the worker's server (as `JobQueueServer.stop`), then the worker itself.

        A job that never awaits cannot be stopped that way: past the stop's timeout and
        grace period (and STOP_SLACK_SECONDS), the worker is terminated, and its running
        jobs run again elsewhere once their leases expire.
        """
        if self._worker is None:
            return
        if timeout_ms is not None:
            require_ms("timeout_ms", timeout_ms)
        if self._unsubscribe is not None:
            await self._unsubscribe()
            self._unsubscribe = None
        if self._rearm is not None:
            self._rearm.cancel()
            self._rearm = None
        self._worker.postMessage(json.dumps({"type": "stop", "timeout_ms": timeout_ms}))
        options = self._request["options"]
        stop_ms = options.get("stop_timeout_ms", 10_000) if timeout_ms is None else timeout_ms
        wait = (stop_ms + options.get("abort_grace_ms", 1_000)) / 1000 + STOP_SLACK_SECONDS
        try:
            async with asyncio.timeout(wait):
                while (await self._replies.get())["type"] != "stopped":
                    pass
        except TimeoutError:
            logger.warning(
                "the job worker of queue %r did not stop within %.1f s: terminated",
                self.queue_name,
                wait,
            )
        await self.client.disconnect()
        await self._terminate()
        await self.storage.close()

    async def _terminate(self) -> None:
        if self._worker is not None:
            self._worker.terminate()
            self._worker = None
        if self._on_message is not None:
            self._on_message.destroy()
            self._on_message = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- hard cancel -------------------------------------------------------------------

    def _on_event(self, event: JobEvent) -> None:
        """List an aborted job for the worker's interrupt; unlist a finished one."""
        targets = self._targets
        if targets is None or event.queue_name != self.queue_name:
            return
        if event.name == EventName.JOB_ABORTING:
            if targets.add(event.job_id):
                self._listed.add(event.job_id)
                targets.interrupt()
                if self._rearm is None or self._rearm.done():
                    self._rearm = asyncio.ensure_future(self._keep_interrupting(targets))
        elif event.job_id in self._listed and (
            event.name in FINISHING_EVENTS or event.name == EventName.JOB_RETRY
        ):
            # (every other job's end costs no call into the shared memory)
            self._listed.discard(event.job_id)
            targets.remove(event.job_id)

    @staticmethod
    async def _keep_interrupting(targets: SharedTargets) -> None:
        """Interrupt the worker again while a listed job still runs (see _interrupts)."""
        while True:
            await asyncio.sleep(REARM_SECONDS)
            if not targets.ids():
                return
            targets.interrupt()
