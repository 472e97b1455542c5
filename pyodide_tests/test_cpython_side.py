"""On CPython the browser modules import cleanly, stay inert, and refuse to be used."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pyjobqueue.browser import WebLocksLeaderLock
from pyjobqueue.storage import (
    IndexedDbQueueStorage,
    IndexedDbRateLimiterStorage,
    default_storage,
    open_storage,
)


def test_importing_everything_loads_no_javascript_bridge() -> None:
    code = (
        "import sys, pyjobqueue, pyjobqueue.browser, pyjobqueue.storage.indexeddb\n"
        "loaded = [name for name in ('js', 'pyodide', 'pyodide_js') if name in sys.modules]\n"
        "assert loaded == [], loaded\n"
        "from pyjobqueue._platform import IN_PYODIDE\n"
        "import pyodide.ffi  # the type stand-ins must not switch the runtime\n"
        "assert not IN_PYODIDE\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_indexeddb_storages_need_pyodide() -> None:
    with pytest.raises(ImportError, match="IndexedDbQueueStorage needs Pyodide"):
        IndexedDbQueueStorage("q")
    with pytest.raises(ImportError, match="IndexedDbRateLimiterStorage needs Pyodide"):
        IndexedDbRateLimiterStorage()
    with pytest.raises(ImportError, match="needs Pyodide"):
        open_storage("indexeddb://jobs", "q")
    assert type(default_storage("q")).__name__ == "SqliteQueueStorage"


async def test_web_locks_need_a_javascript_runtime() -> None:
    lock = WebLocksLeaderLock("queue")
    with pytest.raises(ImportError, match="needs Pyodide"):
        await lock.acquire()
    await lock.release()  # nothing held: no error
