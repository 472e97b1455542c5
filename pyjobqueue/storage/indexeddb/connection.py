"""The IndexedDB connection of a storage: opened lazily, one transaction per operation."""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from typing import Any, TypeVar

from ..._platform import IN_PYODIDE, pyodide_required
from ...browser import _idb
from ...browser._ffi import JsObject
from ...errors import StorageClosedError, StorageOperationError
from .. import migrations as schema
from .migrations import MIGRATIONS

T = TypeVar("T")

DEFAULT_DATABASE = "pyjobqueue"

# A transaction body: issues requests, yields those whose result it needs, returns.
Body = Generator[JsObject, Any, T]


def is_transient(error: BaseException) -> bool:
    """Whether a failure of the IndexedDB storage may go away by itself.

    A request or transaction the browser refused (aborted by another tab's upgrade, a
    connection being closed, an unknown error) may succeed next time; a full quota, a
    closed storage or a newer schema will not.
    """
    if not isinstance(error, StorageOperationError):
        return False
    text = str(error)
    return "QuotaExceeded" not in text and any(name in text for name in _TRANSIENT_ERRORS)


# DOMException names of refusals that may not happen again: another tab's upgrade or a
# closing connection aborted the transaction, or the browser could not say why.
_TRANSIENT_ERRORS = (
    "AbortError",
    "InvalidStateError",
    "TransactionInactiveError",
    "UnknownError",
    "TimeoutError",
)


class Database:
    """A lazily opened connection to one pyjobqueue IndexedDB database."""

    def __init__(self, database_name: str, what: str) -> None:
        if not IN_PYODIDE:
            raise pyodide_required(what)
        if not isinstance(database_name, str) or not database_name:
            raise ValueError("database_name must be a non-empty str")
        self.database_name = database_name
        self._what = what
        self._connection: _idb.Connection | None = None
        self._closed = False

    async def open(self) -> _idb.Connection:
        """The connection, opening (creating or upgrading) the database the first time."""
        if self._closed:
            raise StorageClosedError(f"{self._what} is closed")
        if self._connection is None:
            schema.check_numbering(MIGRATIONS)
            steps = [migration.steps for migration in MIGRATIONS]
            connection = await _idb.open_database(self.database_name, steps)
            if self._connection is None and not self._closed:
                self._connection = connection
            else:  # opened twice concurrently, or closed meanwhile: keep one
                connection.close()
        if self._connection is None:
            raise StorageClosedError(f"{self._what} is closed")
        return self._connection

    async def run(self, stores: Sequence[str], mode: str, body: Callable[[JsObject], Body[T]]) -> T:
        """Run one transaction over `stores` ("readonly" or "readwrite")."""
        connection = await self.open()
        return await connection.transaction(stores, mode, body)

    def close(self) -> None:
        """Close the connection; unusable afterwards."""
        self._closed = True
        if self._connection is not None:
            self._connection.close()
            self._connection = None
