"""Leader election between tabs with the Web Locks API (`navigator.locks`).

`navigator.locks.request(name, callback)` grants the lock to one holder in the origin
at a time and keeps it until the promise that the callback returned settles. The
callback here returns a JavaScript promise that `release()` resolves (a Python
coroutine is not a promise to every runtime: Node.js would release at once); when the
tab closes or crashes, the browser drops the lock and grants it to the next tab.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from ._ffi import JsObject, create_proxy, js_global, json_to_js, proxied


class WebLocksLeaderLock:
    """A `LeaderLock` (see `pyjobqueue.leader`) held through the Web Locks API."""

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError("WebLocksLeaderLock name must be a non-empty str")
        if name.startswith("-"):
            raise ValueError("Web Locks names starting with '-' are reserved")
        self.name = name
        self._release: JsObject | None = None  # resolves the promise that holds the lock
        self._settled: asyncio.Task[None] | None = None

    def _lock_manager(self) -> JsObject:
        locks = getattr(js_global().navigator, "locks", None)
        if locks is None:
            raise RuntimeError("the Web Locks API (navigator.locks) is not available here")
        return locks

    async def acquire(self) -> None:
        """Wait until this tab holds the lock (cancelling the wait withdraws the request)."""
        if self._release is not None:
            raise RuntimeError(f"the lock {self.name!r} is already held or requested")
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        held, release = _promise_and_resolve()

        def on_granted(lock: Any) -> JsObject:
            if not granted.done():
                granted.set_result(None)
            return held  # the lock stays ours until `release` resolves it

        callback = create_proxy(on_granted)
        controller = js_global().AbortController.new()
        options = json_to_js({})
        options.signal = controller.signal
        try:
            promise = self._lock_manager().request(self.name, options, callback)
        except BaseException:
            callback.destroy()
            raise
        self._release = release
        self._settled = asyncio.ensure_future(_settle(promise, callback))
        try:
            await granted
        except BaseException:
            controller.abort()  # not granted yet: withdraw the request
            await self.release()  # granted meanwhile: give it back at once
            raise

    async def release(self) -> None:
        """Give the lock up and wait until the browser has freed it (no error when not held)."""
        release, settled = self._release, self._settled
        self._release = self._settled = None
        if release is not None:
            release()
        if settled is not None:
            await asyncio.shield(settled)


def _promise_and_resolve() -> tuple[JsObject, JsObject]:
    """A pending JavaScript promise and the function that resolves it."""
    promise_class = js_global().Promise
    if hasattr(promise_class, "withResolvers"):
        both = promise_class.withResolvers()
        return both.promise, both.resolve
    functions: list[JsObject] = []
    # The executor runs inside `new Promise(...)`, so its proxy can go right after.
    with proxied(lambda resolve, reject: functions.append(resolve)) as executor:
        promise = promise_class.new(executor)
    return promise, functions[0]


async def _settle(promise: JsObject, callback: JsObject) -> None:
    """Wait for a lock request to end (released or withdrawn), then free its callback."""
    try:
        # A withdrawn request rejects with AbortError; awaiting it keeps it from
        # surfacing as an unhandled rejection.
        with contextlib.suppress(Exception):
            await promise
    finally:
        asyncio.get_running_loop().call_soon(callback.destroy)
