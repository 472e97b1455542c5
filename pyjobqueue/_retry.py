"""Riding out a storage that fails for a while: which failures end the work, and backoff.

The backend decides what is transient (`QueueStorage.is_transient`: a busy file, a
dropped connection, a database restarting); a `StorageError` it does not call transient
is permanent (a read-only or corrupt file, a dropped table, a login refused) and ends
the work of a worker, a server or `wait_for` with that one error. Anything else (a bug,
an unknown failure) is retried, as a transient failure is, but logged with its traceback.
"""

from __future__ import annotations

from typing import Protocol

from .errors import StorageError, StoredValueError


class TransientAware(Protocol):
    """What tells a storage's transient failures apart (every `QueueStorage`)."""

    def is_transient(self, error: BaseException) -> bool:
        """Whether `error` may go away by itself."""


def is_permanent(storage: TransientAware, error: BaseException) -> bool:
    """A failure of the storage itself that no retry can fix.

    A value of one job that cannot be read back (`StoredValueError`) is that job's
    problem, not the storage's: it fails the job, never the worker.
    """
    if not isinstance(error, StorageError) or isinstance(error, StoredValueError):
        return False
    return not storage.is_transient(error)


def one_line(error: BaseException) -> str:
    """The error as one line: its message, or its class name when it has none."""
    text = " ".join(str(error).split())
    return text or type(error).__name__


class Backoff:
    """Delays that double from `first` up to `maximum`, back to `first` after a success."""

    def __init__(self, first: float, maximum: float) -> None:
        self.first = first
        self.maximum = max(first, maximum)
        self.failures = 0
        self._delay = first

    def next_delay(self) -> float:
        """Count one more failure; how long to wait before the next try."""
        self.failures += 1
        delay = self._delay
        self._delay = min(self._delay * 2, self.maximum)
        return delay

    def succeeded(self) -> int:
        """Count a success; how many failures came before it (0: none)."""
        failures, self.failures, self._delay = self.failures, 0, self.first
        return failures
