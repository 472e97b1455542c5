"""The one platform seam: are we running under Pyodide (CPython compiled to WebAssembly)?

Only the browser modules (`pyjobqueue.browser`, `pyjobqueue.storage.indexeddb`) act on
this; everything else is plain asyncio and runs on both. The one runtime fix the
package needs under Pyodide is applied here, on import.
"""

from __future__ import annotations

import sys
from typing import Any

# Not `"pyodide" in sys.modules`: on CPython the `pyodide-py` package (type stand-ins
# for mypy) can be imported too, and that must not switch the runtime to the browser.
IN_PYODIDE = sys.platform == "emscripten"


def pyodide_required(feature: str) -> ImportError:
    """The error a browser-only feature raises when it is used outside Pyodide."""
    return ImportError(
        f"{feature} needs Pyodide (a browser tab, a Web Worker or Node.js running Pyodide); "
        "on CPython use SqliteQueueStorage or PostgresQueueStorage"
    )


def allow_past_deadlines_in_webloop() -> bool:
    """Make Pyodide's event loop run a callback scheduled in the past at once, as CPython's do.

    asyncio's `timeout()` (so `wait_for`) checks that its deadline is still ahead and
    then calls `loop.call_at(deadline)`; the browser clock can pass the deadline in
    between, and Pyodide's WebLoop then raises ValueError("Can't schedule in the past")
    out of `wait_for`, which would kill a worker's claim loop. Returns whether it patched.
    """
    from pyodide import webloop

    loop_class: Any = webloop.WebLoop
    original = loop_class.call_later
    if getattr(original, "__pyjobqueue_clamped__", False):
        return False

    def call_later(self: Any, delay: float, callback: Any, *args: Any, **kwargs: Any) -> Any:
        return original(self, max(0.0, delay), callback, *args, **kwargs)

    call_later.__pyjobqueue_clamped__ = True  # type: ignore[attr-defined]
    call_later.__doc__ = original.__doc__
    loop_class.call_later = call_later
    return True


if IN_PYODIDE:
    allow_past_deadlines_in_webloop()
