"""The error hierarchy: what a job raises to steer its outcome, and what callers catch."""

from __future__ import annotations

from datetime import datetime, timedelta


class JobError(Exception):
    """Base class of every error the job queue raises or stores for a job."""

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message


class JobNotFoundError(JobError):
    """No job with the given id exists in the queue."""


class RetryableJobError(JobError):
    """A failure worth another attempt, optionally not before `retry_date`."""

    def __init__(self, message: str = "", retry_date: datetime | None = None) -> None:
        super().__init__(message)
        self.retry_date = retry_date


class JobTimeoutError(RetryableJobError):
    """An attempt ran past its timeout (`Job.timeout_ms` or `submit(timeout_ms=)`)."""


class PermanentJobError(JobError):
    """A failure that no retry can fix: the job fails at once."""


class AbortSignalJobError(PermanentJobError):
    """The job was aborted (by a user, a deadline or a lost lease)."""


class JobDisabledError(JobError):
    """The job was disabled before it ran."""


class DependencyFailedError(PermanentJobError):
    """A job this one depends on (`submit(depends_on=...)`) failed or was disabled, so
    this one never ran (SPEC 8.7)."""


class JobSnooze(Exception):
    """Raised inside `execute`: run the job again after `delay`, without using an attempt.

    `delay` is a `timedelta` or a number of seconds (0 or more).
    """

    def __init__(self, delay: timedelta | float) -> None:
        if isinstance(delay, timedelta):
            seconds = delay.total_seconds()
        elif isinstance(delay, int | float) and not isinstance(delay, bool):
            seconds = float(delay)
        else:
            raise TypeError(f"JobSnooze needs a timedelta or seconds, got {delay!r}")
        if not seconds >= 0:
            raise ValueError(f"JobSnooze delay must be 0 or more seconds, got {delay!r}")
        super().__init__(f"snoozed for {seconds:g} s")
        self.delay = timedelta(seconds=seconds)


# error_code (as stored) -> the class `wait_for` raises for it.
ERRORS_BY_CODE: dict[str, type[JobError]] = {
    cls.__name__: cls
    for cls in (
        PermanentJobError,
        RetryableJobError,
        AbortSignalJobError,
        JobDisabledError,
        JobTimeoutError,
        DependencyFailedError,
    )
}


def error_from_code(code: str | None, message: str) -> JobError:
    """Rebuild the error a finished job stored, as the library class named by its code."""
    return ERRORS_BY_CODE.get(code or "", JobError)(message)


# -- storage errors: what a backend raises when it cannot do its work ------------------


class StorageError(Exception):
    """Base class of every error a storage raises about itself (not about a job)."""


class StorageConnectionError(StorageError, ConnectionError):
    """The storage cannot be reached or opened: a server that refuses or does not answer,
    a login refused, a database that does not exist, a file location that cannot be used."""


class StorageCorruptError(StorageError):
    """The database is corrupt, or not a pyjobqueue database at all."""


class StoredValueError(StorageCorruptError):
    """A value stored for a job cannot be read back (the job fails with this error code)."""


class SchemaVersionError(StorageError):
    """The database was set up by a newer pyjobqueue than this one: upgrade pyjobqueue."""


class StorageClosedError(StorageError, RuntimeError):
    """The storage is used before `setup_database()` or after `close()`."""


class StorageOperationError(StorageError):
    """The backend refused one operation (an IndexedDB request or transaction failed)."""
