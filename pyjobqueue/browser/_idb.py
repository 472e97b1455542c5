"""IndexedDB from Python: open a database with versioned upgrades, run one transaction per call.

The trap this module exists for: an IndexedDB transaction commits as soon as control
returns to the event loop with no request pending, and Pyodide resumes a coroutine in
a new macrotask, so a transaction cannot span an `await`. A transaction body is
therefore a generator: it issues requests synchronously and `yield`s a request whose
result it needs; the runner resumes it inside that request's `success` callback, while
the transaction is still active. The caller awaits only the transaction's `complete`.
A schema upgrade step may be such a generator too (a cursor walk that rewrites old
records inside the `versionchange` transaction).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Generator, Sequence
from typing import Any, Generic, TypeVar

from ..errors import SchemaVersionError, StorageClosedError, StorageOperationError
from ._ffi import JsObject, create_proxy, error_text, is_missing, js_array, js_global

T = TypeVar("T")
logger = logging.getLogger(__name__)

# A transaction body: gets the IDBTransaction, yields IDBRequests, returns the result.
TransactionBody = Callable[[JsObject], Generator[JsObject, Any, T]]
# A schema upgrade step: (IDBDatabase, versionchange IDBTransaction) -> None, or a
# generator that yields the requests whose results it needs, like a transaction body.
UpgradeSteps = Generator[JsObject, Any, None]
Upgrade = Callable[[JsObject, JsObject], UpgradeSteps | None]


class IndexedDbError(StorageOperationError):
    """An IndexedDB request or transaction failed (the DOMException's name and message)."""


class _Handler:
    """One JavaScript proxy for every event of a request or transaction, freed when it settles."""

    def __init__(self, dispatch: Callable[[JsObject], None]) -> None:
        self._loop = asyncio.get_running_loop()
        self.proxy = create_proxy(dispatch)
        self._released = False

    def release_soon(self) -> None:
        # Not from inside the call that is running through the proxy: after it returns.
        if not self._released:
            self._released = True
            self._loop.call_soon(self.proxy.destroy)


class _TransactionRun(Generic[T]):
    """Drives a transaction body from the success callbacks of its requests."""

    def __init__(self, transaction: JsObject, body: TransactionBody[T]) -> None:
        self.transaction = transaction
        self.future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self.steps = body(transaction)
        self.result: Any = None
        self.failure: BaseException | None = None
        self.request_error: str | None = None
        self.handler = _Handler(self.on_event)
        transaction.oncomplete = transaction.onerror = transaction.onabort = self.handler.proxy

    def on_event(self, event: JsObject) -> None:
        kind = event.type
        if kind == "success":
            self.step(event.target.result)
        elif kind == "error":
            # A failed request bubbles here before the transaction aborts: keep its reason.
            self.request_error = self.request_error or error_text(event.target.error)
        elif kind == "complete":
            self.settle()
        elif kind == "abort":
            if self.failure is None:
                reason = self.request_error or error_text(self.transaction.error)
                self.failure = IndexedDbError(f"IndexedDB transaction aborted: {reason}")
            self.settle()

    def step(self, value: Any) -> None:
        """Resume the body with a request's result; it yields the next request or returns."""
        try:
            request = self.steps.send(None if is_missing(value) else value)
        except StopIteration as stop:
            self.result = stop.value
            return
        except Exception as exc:
            self.failure = exc
            self.transaction.abort()
            return
        request.onsuccess = self.handler.proxy

    def settle(self) -> None:
        self.handler.release_soon()
        if self.future.done():  # the caller was cancelled; nothing to report
            return
        if self.failure is not None:
            self.future.set_exception(self.failure)
        else:
            self.future.set_result(self.result)


async def run_transaction(
    database: JsObject, stores: Sequence[str], mode: str, body: TransactionBody[T]
) -> T:
    """Run `body` in one transaction over `stores` ("readonly"/"readwrite"); its result."""
    try:
        transaction = database.transaction(js_array(list(stores)), mode)
    except Exception as exc:  # InvalidStateError: the connection closed (a version change)
        raise IndexedDbError(f"cannot start an IndexedDB transaction: {exc}") from exc
    run = _TransactionRun(transaction, body)
    run.step(None)
    return await run.future


class _OpenRun:
    """The events of one `indexedDB.open` request."""

    def __init__(self, name: str, version: int, migrations: Sequence[Upgrade]) -> None:
        self.name = name
        self.migrations = migrations
        self.future: asyncio.Future[JsObject] = asyncio.get_running_loop().create_future()
        self.failure: BaseException | None = None
        # The migrations still to run, the one running as a generator, and the proxy
        # that resumes it from its requests' callbacks.
        self.remaining: list[Upgrade] = []
        self.running: UpgradeSteps | None = None
        self.upgrade_handler: _Handler | None = None
        self.request = js_global().indexedDB.open(name, version)
        self.handler = _Handler(self.on_event)
        for kind in ("upgradeneeded", "success", "error", "blocked"):
            setattr(self.request, f"on{kind}", self.handler.proxy)

    def on_event(self, event: JsObject) -> None:
        kind = event.type
        if kind == "upgradeneeded":
            self.upgrade(int(event.oldVersion), int(event.newVersion))
        elif kind == "blocked":
            logger.warning("IndexedDB %r: upgrade waits for other tabs to close it", self.name)
        elif kind == "success":
            self.release()
            database = self.request.result
            if self.future.done():  # the opener was cancelled: do not leak the connection
                database.close()
            else:
                self.future.set_result(database)
        elif kind == "error":
            self.release()
            if not self.future.done():
                self.future.set_exception(self.failure or self.open_error())

    def release(self) -> None:
        """Free the proxies: the open request has settled, the upgrade is over."""
        self.handler.release_soon()
        if self.upgrade_handler is not None:
            self.upgrade_handler.release_soon()

    def open_error(self) -> Exception:
        """Why the open request failed: a newer schema, or another reason."""
        reason = error_text(self.request.error)
        if getattr(self.request.error, "name", None) == "VersionError":
            return SchemaVersionError(
                f"cannot open IndexedDB {self.name!r}: a newer pyjobqueue has upgraded its "
                f"schema ({reason}): upgrade pyjobqueue"
            )
        return IndexedDbError(f"cannot open IndexedDB {self.name!r}: {reason}")

    def upgrade(self, old_version: int, new_version: int) -> None:
        """Apply migrations old_version+1 .. new_version inside the versionchange transaction."""
        self.remaining = list(self.migrations[old_version:new_version])
        self.resume(None)

    def on_upgrade_event(self, event: JsObject) -> None:
        if event.type == "success":
            self.resume(event.target.result)
        elif self.failure is None:  # the versionchange transaction aborts: say why
            reason = error_text(event.target.error)
            self.failure = IndexedDbError(f"IndexedDB upgrade of {self.name!r} failed: {reason}")

    def resume(self, value: Any) -> None:
        """Run the migrations on, in order: resume the one that waits for a request's
        result (`value`), then start the next, until one waits or none is left."""
        database, transaction = self.request.result, self.request.transaction
        try:
            while True:
                if self.running is None:
                    if not self.remaining:
                        return
                    self.running = self.remaining.pop(0)(database, transaction)
                    value = None
                    if self.running is None:
                        continue
                try:
                    request = self.running.send(None if is_missing(value) else value)
                except StopIteration:
                    self.running = None
                    continue
                if self.upgrade_handler is None:
                    self.upgrade_handler = _Handler(self.on_upgrade_event)
                request.onsuccess = request.onerror = self.upgrade_handler.proxy
                return
        except Exception as exc:
            self.failure = exc
            self.remaining, self.running = [], None
            transaction.abort()


async def open_database(name: str, migrations: Sequence[Upgrade]) -> Connection:
    """Open (creating or upgrading) database `name` at version len(migrations)."""
    version = len(migrations)
    try:
        run = _OpenRun(name, version, migrations)
    except Exception as exc:  # SecurityError (opaque origin), TypeError (bad name)
        raise IndexedDbError(f"cannot open IndexedDB {name!r}: {exc}") from exc
    return Connection(name, await run.future)


class Connection:
    """An open IDBDatabase; closes itself when another tab upgrades the schema."""

    def __init__(self, name: str, database: JsObject) -> None:
        self.name = name
        self.database = database
        self._on_version_change = create_proxy(self._version_change)
        database.onversionchange = self._on_version_change
        self.closed = False
        self.superseded = False

    def _version_change(self, event: JsObject) -> None:
        # A newer pyjobqueue in another tab upgrades the schema: let it, and stop here.
        logger.warning("IndexedDB %r is being upgraded elsewhere; closing it here", self.name)
        self.superseded = True
        self.database.close()

    async def transaction(self, stores: Sequence[str], mode: str, body: TransactionBody[T]) -> T:
        """Run one transaction on this connection."""
        if self.closed:
            raise StorageClosedError(f"IndexedDB {self.name!r} connection is closed")
        if self.superseded:
            raise SchemaVersionError(
                f"IndexedDB {self.name!r} was upgraded by a newer pyjobqueue in another tab; "
                "reload this page"
            )
        return await run_transaction(self.database, stores, mode, body)

    def close(self) -> None:
        """Close the connection and release its proxy."""
        if self.closed:
            return
        self.closed = True
        self.database.onversionchange = None
        self._on_version_change.destroy()
        self.database.close()


async def delete_database(name: str) -> None:
    """Delete a database (every tab must have closed it first)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    request = js_global().indexedDB.deleteDatabase(name)

    def on_event(event: JsObject) -> None:
        if event.type == "blocked":  # waits until the other connections close
            logger.warning("deleting IndexedDB %r waits for other connections to close", name)
            return
        handler.release_soon()
        if done.done():
            return
        if event.type == "success":
            done.set_result(None)
        else:
            done.set_exception(
                IndexedDbError(f"cannot delete IndexedDB {name!r}: {error_text(request.error)}")
            )

    handler = _Handler(on_event)
    request.onsuccess = request.onerror = request.onblocked = handler.proxy
    await done
