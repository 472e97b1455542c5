"""The limits of what a job may carry: the same on every backend, checked before storing.

Each limit is one that every backend, its indexes and the decoder that reads values
back can hold, so whatever `submit` accepts is stored and read back alike everywhere.
A value past a limit is refused with a `ValueError` (a value of the wrong type with a
`TypeError`) that names the value and the limit, before anything is stored. Outputs
and progress details are checked the same way when an attempt ends or reports.
"""

from __future__ import annotations

from datetime import UTC, datetime

# JSON values (inputs, outputs, progress details).
MAX_JSON_DEPTH = 100  # nested arrays and objects; deeper values strain every decoder
# Digits of an integer: Python reads no longer ones back by default (int_max_str_digits).
MAX_INTEGER_DIGITS = 4300
INTEGER_BOUND = 10**MAX_INTEGER_DIGITS

# Names and ids: what every backend's index keys can hold (PostgreSQL's btree rows end
# at about 2,700 bytes; 255 characters are at most 1,020 bytes of UTF-8).
MAX_NAME_LENGTH = 255

# max_retries: any backend's integer columns and IndexedDB's numbers hold it exactly.
MAX_RETRIES = 2**31 - 1

# Priorities: a 32-bit signed integer on every backend (SPEC 8.2).
MIN_PRIORITY = -(2**31)
MAX_PRIORITY = 2**31 - 1

# A stored traceback keeps its last this many characters (where the error was raised).
MAX_TRACEBACK_LENGTH = 32_000
# Jobs one job may depend on (SPEC 8.7): a fan-in of this many is one statement's worth.
MAX_DEPENDENCIES = 10_000

# Dates: from the Unix epoch (SQLite stores microseconds since it) to before the year
# 10000 (IndexedDB keys are four-digit years).
EARLIEST_DATE = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_DATE = datetime(9999, 1, 1, tzinfo=UTC)


def check_text(name: str, value: str, *, max_length: int | None = None) -> str:
    """A str that every backend stores as it is: no lone surrogates, no NUL, not too long."""
    if max_length is not None and len(value) > max_length:
        raise ValueError(
            f"{name} is {len(value)} characters long; the limit is {max_length} characters"
        )
    if "\x00" in value:
        raise ValueError(f"{name} contains a NUL character, which storages cannot keep")
    check_encodable(name, value)
    return value


def check_encodable(name: str, value: str) -> None:
    """Refuse a str with a lone surrogate (no storage can encode it as UTF-8)."""
    if value.isascii():  # the common case, without encoding anything
        return
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError(
            f"{name} contains a lone surrogate ({value[error.start]!r} at index "
            f"{error.start}), which is not text any storage can keep"
        ) from None


def check_name(name: str, value: object) -> str:
    """A non-empty str usable as a queue name or a job run id on every backend."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}")
    if not value:
        raise ValueError(f"{name} must not be empty")
    return check_text(name, value, max_length=MAX_NAME_LENGTH)


def check_aware(name: str, value: object) -> datetime:
    """A timezone-aware datetime, or a TypeError / ValueError saying what it must be."""
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(
            f"{name} {value.isoformat()} must be timezone-aware (for example datetime.now(UTC))"
        )
    return value


def check_date(name: str, value: datetime) -> datetime:
    """A timezone-aware datetime within the dates every backend stores."""
    if not EARLIEST_DATE <= value < LATEST_DATE:
        raise ValueError(
            f"{name} {value.isoformat()} is out of range: dates run from "
            f"{EARLIEST_DATE.date()} to before {LATEST_DATE.date()}"
        )
    return value


def check_integer(name: str, value: int) -> None:
    """An int whose decimal form can be read back (at most MAX_INTEGER_DIGITS digits)."""
    # Compare with a bound instead of converting: str() of a huge int is itself refused.
    if not -INTEGER_BOUND < value < INTEGER_BOUND:
        raise ValueError(
            f"{name} is an integer of more than {MAX_INTEGER_DIGITS} digits, "
            "which storages cannot read back"
        )


def check_priority(value: object) -> int:
    """A job priority: an int (not a bool) from MIN_PRIORITY to MAX_PRIORITY."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"priority must be an int, got {type(value).__name__}")
    if not MIN_PRIORITY <= value <= MAX_PRIORITY:
        raise ValueError(f"priority must be from {MIN_PRIORITY} to {MAX_PRIORITY}, got {value!r}")
    return value


def storable_text(value: str, max_length: int) -> str:
    """`value` made storable on every backend: NULs and lone surrogates replaced, and
    only its last `max_length` characters kept when it is longer."""
    if len(value) > max_length:
        value = "...\n" + value[-(max_length - 4) :]
    value = value.replace("\x00", "\ufffd")
    if not value.isascii():
        value = value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value
