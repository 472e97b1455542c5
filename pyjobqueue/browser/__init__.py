"""Browser pieces that run under Pyodide: cross-tab events, leader election, job workers.

`WebLocksLeaderLock` lets one tab at a time run a queue's server
(`JobQueueServer(..., leader_lock=WebLocksLeaderLock("my-queue"))`). `WorkerServer`
runs a page's jobs in a module Web Worker with a Pyodide of its own, and gives the page
a client of the same queue (`await WorkerServer(source, queue_name="q").start()`).
Importing this package works everywhere; using it needs Pyodide in a browser (or
Node.js 22+ for the lock).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .locks import WebLocksLeaderLock

if TYPE_CHECKING:
    from .worker_server import WorkerServer

__all__ = ["WebLocksLeaderLock", "WorkerServer"]


def __getattr__(name: str) -> Any:
    # Lazy: worker_server imports the IndexedDB storage, which imports this package.
    if name == "WorkerServer":
        return importlib.import_module(f"{__name__}.worker_server").WorkerServer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
