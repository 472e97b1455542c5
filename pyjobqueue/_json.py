"""JSON values: validation with the offending path, canonical encoding, fingerprints."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

from . import limits

JsonValue = Any  # a JSON-shaped value; typed precisely by the caller's TypedDicts


def validate_json(value: object, path: str = "input") -> None:
    """Raise TypeError (bad type) or ValueError (NaN/infinity, past a limit of
    `pyjobqueue.limits`) naming where in `value`."""
    if not _plainly_valid(value, 0):
        _validate(value, path, 0, path)


# Every submit validates its input, so the common case is checked first without building
# the path of each item for a message that is never shown: plain dicts, lists, str, int,
# float, bool and None within the limits. Anything else (a Mapping, a subclass, a value
# past a limit) goes to `_validate`, which decides and names the offending place.
def _plainly_valid(value: object, depth: int) -> bool:
    if type(value) is str:
        return value.isascii() or _encodable(value)
    if type(value) is int:
        return bool(-limits.INTEGER_BOUND < value < limits.INTEGER_BOUND)
    if type(value) is float:
        return math.isfinite(value)
    if value is None or type(value) is bool:
        return True
    if depth >= limits.MAX_JSON_DEPTH:
        return False
    if type(value) is dict:
        return all(
            type(key) is str
            and (key.isascii() or _encodable(key))
            and _plainly_valid(item, depth + 1)
            for key, item in value.items()
        )
    if type(value) is list or type(value) is tuple:
        return all(_plainly_valid(item, depth + 1) for item in value)
    return False


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _validate(value: object, path: str, depth: int, root: str) -> None:
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, str):
        limits.check_encodable(path, value)
        return
    if isinstance(value, int):
        limits.check_integer(path, value)
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{path} is {value!r}, which JSON cannot represent")
        return
    if isinstance(value, Mapping | list | tuple) and depth >= limits.MAX_JSON_DEPTH:
        raise ValueError(
            f"{root} is nested more than {limits.MAX_JSON_DEPTH} levels deep, "
            "the limit for JSON values"
        )
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(
                    f"{path} has a key {key!r} of type {type(key).__name__}; "
                    "JSON object keys must be str"
                )
            limits.check_encodable(f"a key of {path}", key)
            _validate(item, f"{path}[{key!r}]", depth + 1, root)
        return
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _validate(item, f"{path}[{index}]", depth + 1, root)
        return
    raise TypeError(f"{path} is of type {type(value).__name__}, which is not a JSON value")


# One encoder each, made once: json.dumps with options builds a new one per call.
_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
).encode


def dumps(value: JsonValue) -> str:
    """Encode a validated JSON value compactly."""
    return _COMPACT(value)


def loads(text: str | None) -> JsonValue:
    """Decode what `dumps` wrote; None stays None."""
    return None if text is None else json.loads(text)


def read_stored(texts: Mapping[str, str | None]) -> tuple[dict[str, JsonValue], str | None]:
    """Decode stored JSON texts by column name.

    A text that cannot be read back (nested too deep, an integer too long, not JSON)
    becomes None, and the second value says which and why ("stored input cannot be
    read: ..."); the others are decoded as usual.
    """
    values: dict[str, JsonValue] = {}
    problems = []
    for column, text in texts.items():
        try:
            values[column] = loads(text)
        except (ValueError, TypeError, RecursionError) as error:
            values[column] = None
            problems.append(f"stored {column} cannot be read: {type(error).__name__}: {error}")
    return values, "; ".join(problems) or None


def fingerprint(value: JsonValue) -> str:
    """sha256 of the canonical JSON of `value` (sorted keys, no whitespace)."""
    return hashlib.sha256(_CANONICAL(value).encode("utf-8")).hexdigest()
