"""Inside the job worker of a `WorkerServer`: the user's job module and its server.

`server_worker.mjs` boots Pyodide and pyjobqueue in a module Web Worker, then calls
`start` with the page's request (JSON text) and, on a cross-origin isolated page, the
shared `Int32Array` of the hard cancel. The worker talks to its page with
`postMessage` (JSON text): `started`, `error` (it could not start) and `stopped`.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import sys
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

from ..job import Job, is_job_class, kind_of
from ..server import JobQueueServer
from ..storage.indexeddb import IndexedDbQueueStorage
from ._ffi import create_proxy, is_missing, js_global
from ._interrupts import JobInterrupter, SharedTargets
from .locks import WebLocksLeaderLock

logger = logging.getLogger("pyjobqueue.browser")

# The job module is written here, on the worker's own file system, and imported from
# it: tracebacks then show its lines.
MODULE_DIR = Path("/tmp/pyjobqueue-worker")


def post(message: dict[str, Any]) -> None:
    """Send a message to the page."""
    js_global().postMessage(json.dumps(message, default=str))


async def fetch_source(url: str) -> str:
    """The text at `url` (the job module); a clear error for a failed request."""
    response = await js_global().fetch(url)
    if not response.ok:
        raise RuntimeError(f"cannot load the job module {url}: HTTP {response.status}")
    return str(await response.text())


def import_source(name: str, source: str) -> ModuleType:
    """Import `source` as the module `name`."""
    MODULE_DIR.mkdir(parents=True, exist_ok=True)
    (MODULE_DIR / f"{name}.py").write_text(source)
    if str(MODULE_DIR) not in sys.path:
        sys.path.insert(0, str(MODULE_DIR))
    importlib.invalidate_caches()
    return importlib.import_module(name)


def job_classes(module: ModuleType, names: list[str] | None) -> list[type[Job[Any, Any]]]:
    """The job classes named `names` in `module`, or every one it defines, in order."""
    if names is None:
        found = [
            value
            for value in vars(module).values()
            if is_job_class(value) and value is not Job and value.__module__ == module.__name__
        ]
        if not found:
            raise ValueError(
                f"the job module {module.__name__!r} defines no job "
                "(a Job subclass or an @job function)"
            )
        return found
    classes = []
    for name in names:
        value = getattr(module, name, None)
        if not is_job_class(value):
            raise ValueError(f"{name!r} of the job module {module.__name__!r} is not a job")
        classes.append(value)
    return classes


class WorkerMain:
    """The server of this worker, and its answers to the page."""

    def __init__(self, server: JobQueueServer[Any, Any], storage: IndexedDbQueueStorage) -> None:
        self.server = server
        self.storage = storage
        self._on_message = create_proxy(self._message)
        self._stopping: asyncio.Future[None] | None = None

    def listen(self) -> None:
        """Take the page's requests from now on (the bootstrap's one-shot handler is gone)."""
        js_global().onmessage = self._on_message

    def _message(self, event: Any) -> None:
        request = json.loads(str(event.data))
        if request.get("type") == "stop" and self._stopping is None:
            self._stopping = asyncio.ensure_future(self.stop(request.get("timeout_ms")))

    async def stop(self, timeout_ms: float | None) -> None:
        """Stop the server (running jobs go back to the queue after `timeout_ms`)."""
        try:
            await self.server.stop(timeout_ms=timeout_ms)
            await self.storage.close()
        finally:
            post({"type": "stopped"})


async def start(request_text: str, shared: Any) -> WorkerMain | None:
    """Start the server the page asked for; tell the page `started` or `error`."""
    try:
        main = await _start(json.loads(request_text), None if is_missing(shared) else shared)
    except Exception as error:
        detail = "".join(traceback.format_exception(error))
        post({"type": "error", "message": f"{type(error).__name__}: {error}", "detail": detail})
        return None
    return main


async def _start(request: dict[str, Any], shared: Any) -> WorkerMain:
    module_name = request["module_name"]
    source = request.get("source")
    if source is None:
        source = await fetch_source(request["url"])
    classes = job_classes(import_source(module_name, source), request.get("jobs"))
    storage = IndexedDbQueueStorage(request["queue_name"], request["database_name"])
    await storage.setup_database()
    middleware = []
    if shared is not None:
        targets = SharedTargets(shared)
        interrupter = JobInterrupter(targets.ids, targets.remove)
        interrupter.install()
        middleware.append(interrupter.track)
    lock_name = request.get("leader_lock")
    server: JobQueueServer[Any, Any] = JobQueueServer(
        classes,
        storage=storage,
        leader_lock=None if lock_name is None else WebLocksLeaderLock(lock_name),
        middleware=middleware,
        **request["options"],
    )
    await server.start()
    main = WorkerMain(server, storage)
    main.listen()
    post(
        {
            "type": "started",
            "kinds": [kind_of(cls) for cls in classes],
            "hard_cancel": shared is not None,
            "snapshot": bool(request.get("snapshot")),
        }
    )
    return main
