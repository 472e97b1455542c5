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
    _validate(value, path, 0, path)


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


def dumps(value: JsonValue) -> str:
    """Encode a validated JSON value compactly."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


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
    canonical = json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
