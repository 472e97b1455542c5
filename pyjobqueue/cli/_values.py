"""Parsing of command-line values: durations, rates, statuses, JSON inputs, job options
(kind, priority, unique key, metadata, timeout), storage URLs."""

from __future__ import annotations

import argparse
import json
import math
import re
from typing import Any

from .. import limits
from .._json import validate_json
from ..job import FINISHED_STATUSES, JobStatus
from ..storage.url import redact_url as redact_url  # the one redactor, for messages

DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_COMPOUND = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w))+")


class CliError(Exception):
    """Bad input or an unusable storage: printed as one line, exit status `exit_code`."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def parse_duration(text: str) -> float:
    """Seconds in '90', '90s', '500ms', '1.5m', '2h', '1d', '1w' or '1h30m'."""
    cleaned = text.strip().lower()
    if _NUMBER.fullmatch(cleaned):
        return float(cleaned)
    if not _COMPOUND.fullmatch(cleaned):
        raise argparse.ArgumentTypeError(
            f"invalid duration {text!r}: use seconds or a number with a unit, "
            "for example 30, 30s, 500ms, 5m, 1h, 2d, 1h30m"
        )
    return sum(
        float(match.group(1)) * DURATION_UNITS[match.group(2)]
        for match in _DURATION_PART.finditer(cleaned)
    )


def parse_positive_duration(text: str) -> float:
    """A duration greater than 0."""
    seconds = parse_duration(text)
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: must be greater than 0")
    return seconds


def parse_rate(text: str) -> tuple[int, float]:
    """(max executions, window in seconds) from 'N/SECONDS' such as '10/60', '10/1m' or '5/s'."""
    count_text, slash, window_text = text.partition("/")
    if not slash:
        raise argparse.ArgumentTypeError(
            f"invalid rate {text!r}: use N/SECONDS, for example 10/60 (10 jobs a minute) or 5/1s"
        )
    try:
        count = int(count_text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid rate {text!r}: {count_text!r} is not a whole number of jobs"
        ) from None
    window_text = window_text.strip()
    # '5/s' reads as five a second: a unit alone means one of it.
    window = parse_duration(f"1{window_text}" if window_text in DURATION_UNITS else window_text)
    if count < 1 or window <= 0:
        raise argparse.ArgumentTypeError(
            f"invalid rate {text!r}: the count and the window must be greater than 0"
        )
    return count, window


def _parse_int(text: str, minimum: int, bound: str) -> int:
    """An int of at least `minimum`; `bound` says so in the error."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid number {text!r}: expected a whole number"
        ) from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}: must be {bound}")
    return value


def parse_positive_int(text: str) -> int:
    """An int of at least 1."""
    return _parse_int(text, 1, "at least 1")


def _port(text: str, minimum: int) -> int:
    port = _parse_int(text, minimum, f"a port from {minimum} to 65535")
    if port > 65535:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}: must be at most 65535")
    return port


def parse_port(text: str) -> int:
    """A TCP port: 1 to 65535."""
    return _port(text, 1)


def parse_console_port(text: str) -> int:
    """A TCP port to listen on: 0 (any free one) to 65535."""
    return _port(text, 0)


def parse_count(text: str) -> int:
    """An int of at least 0."""
    return _parse_int(text, 0, "0 or more")


def parse_job_id(text: str) -> int:
    """A job id: a positive int."""
    try:
        return parse_positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"invalid job id {text!r}: expected a number") from None


def parse_statuses(text: str) -> list[JobStatus]:
    """One status or several separated by commas, in any case: 'failed', 'PENDING,processing'."""
    statuses: list[JobStatus] = []
    for part in text.split(","):
        name = part.strip().upper()
        try:
            status = JobStatus(name)
        except ValueError:
            choices = ", ".join(status.value.lower() for status in JobStatus)
            raise argparse.ArgumentTypeError(
                f"unknown status {part.strip()!r}: expected one of {choices}"
            ) from None
        if status not in statuses:
            statuses.append(status)
    return statuses


def parse_finished_statuses(text: str) -> list[JobStatus]:
    """Statuses of finished jobs only (what purge may delete)."""
    statuses = parse_statuses(text)
    for status in statuses:
        if status not in FINISHED_STATUSES:
            finished = ", ".join(sorted(status.value.lower() for status in FINISHED_STATUSES))
            raise argparse.ArgumentTypeError(
                f"only finished jobs can be purged ({finished}), not {status.value.lower()}"
            )
    return statuses


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON (inputs must be finite numbers)")


def parse_json_input(text: str, where: str) -> Any:
    """A JSON value; CliError naming `where` when it is not valid JSON."""
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except ValueError as error:
        raise CliError(f"invalid JSON in {where}: {error}") from None


def parse_kind(text: str) -> str:
    """A job kind: a non-empty name (a job class's `kind`, by default its class name)."""
    if not text:
        raise argparse.ArgumentTypeError(
            "invalid kind '': give the kind of a job class (by default its class name)"
        )
    return _checked_name("kind", text)


def parse_unique_key(text: str) -> str:
    """A unique key: a non-empty str."""
    if not text:
        raise argparse.ArgumentTypeError("invalid unique key '': it must not be empty")
    return _checked_name("unique key", text)


def _checked_name(what: str, text: str) -> str:
    try:
        return limits.check_text(what, text, max_length=limits.MAX_NAME_LENGTH)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"invalid {what}: {error}") from None


def parse_priority(text: str) -> int:
    """A priority: a whole number from -2**31 to 2**31 - 1 (higher runs first)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid priority {text!r}: expected a whole number (higher runs first)"
        ) from None
    if not limits.MIN_PRIORITY <= value <= limits.MAX_PRIORITY:
        raise argparse.ArgumentTypeError(
            f"invalid priority {text!r}: must be from {limits.MIN_PRIORITY} "
            f"to {limits.MAX_PRIORITY}"
        )
    return value


def parse_metadata(text: str) -> dict[str, Any]:
    """Metadata: a JSON object such as '{"tenant": "a"}', valid as a job input is."""
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"invalid metadata: not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(
            f'invalid metadata: expected a JSON object such as \'{{"tenant": "a"}}\', '
            f"got a JSON {_json_type(value)}"
        )
    try:
        validate_json(value, "metadata")
    except (TypeError, ValueError) as error:
        raise argparse.ArgumentTypeError(f"invalid metadata: {error}") from None
    return value


def _json_type(value: object) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return "number"


def parse_timeout_ms(text: str) -> float:
    """A timeout of one attempt in milliseconds: a number greater than 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid timeout {text!r}: expected a number of milliseconds"
        ) from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(
            f"invalid timeout {text!r}: must be a number of milliseconds greater than 0"
        )
    return value


def parse_job_ids(text: str) -> list[int]:
    """Job ids separated by commas ("12,13,20"): each a whole number of 1 or more."""
    ids = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdecimal() or int(part) < 1:
            raise argparse.ArgumentTypeError(
                f"invalid job ids {text!r}: expected ids separated by commas, like 12,13"
            )
        ids.append(int(part))
    return ids
