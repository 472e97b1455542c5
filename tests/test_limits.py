"""The limits of what a job may carry: refused by submit, with the limit named, storing nothing."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pyjobqueue import JobQueueClient, _json, limits
from pyjobqueue._json import validate_json
from pyjobqueue.storage import InMemoryQueueStorage


def nested(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


def test_json_values_within_the_limits_pass() -> None:
    validate_json(nested(limits.MAX_JSON_DEPTH))
    validate_json({"n": int("9" * limits.MAX_INTEGER_DIGITS), "m": -int("9" * 4300)})
    validate_json({"text": "ü𝄞 \x00 fine", "𝄞": [None, True, 1.5]})


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (nested(limits.MAX_JSON_DEPTH + 1), "nested more than 100 levels"),
        ({"a": {"b": nested(99)}}, r"^input is nested more than 100"),
        (10**limits.MAX_INTEGER_DIGITS, "more than 4300 digits"),
        (-(10**limits.MAX_INTEGER_DIGITS), "more than 4300 digits"),
        ({"a": "x\udc80"}, r"input\['a'\] contains a lone surrogate"),
        ({"\ud800": 1}, "a key of input contains a lone surrogate"),
    ],
    ids=["deep", "deep-inside", "huge", "huge-negative", "surrogate", "surrogate-key"],
)
def test_json_values_past_a_limit_are_refused_naming_it(value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_json(value)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("q" * (limits.MAX_NAME_LENGTH + 1), "256 characters long; the limit is 255"),
        ("a\x00b", "NUL character"),
        ("a\udc80", "lone surrogate"),
        ("", "must not be empty"),
    ],
)
def test_queue_names_past_a_limit_are_refused(name: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        InMemoryQueueStorage(name)


def test_the_longest_queue_name_is_fine() -> None:
    assert InMemoryQueueStorage("𝄞" * limits.MAX_NAME_LENGTH).queue_name.startswith("𝄞")


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"max_retries": limits.MAX_RETRIES + 1}, ValueError, "max_retries must be at most"),
        ({"max_retries": -1}, ValueError, "max_retries must be at least 0"),
        ({"job_run_id": "r" * 256}, ValueError, "job_run_id is 256 characters long"),
        ({"job_run_id": "a\x00"}, ValueError, "job_run_id contains a NUL"),
        ({"job_run_id": 5}, TypeError, "job_run_id must be a str"),
        (
            {"run_after": datetime(1969, 12, 31, tzinfo=UTC)},
            ValueError,
            "run_after 1969-12-31T00:00:00\\+00:00 is out of range",
        ),
        ({"deadline_at": datetime(9999, 6, 1, tzinfo=UTC)}, ValueError, "deadline_at .* out of"),
        ({"deadline_at": datetime(1, 1, 1, tzinfo=UTC)}, ValueError, "deadline_at .* out of"),
    ],
)
async def test_submit_refuses_options_past_a_limit_and_stores_nothing(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    storage = InMemoryQueueStorage("q")
    client: JobQueueClient[Any, Any] = JobQueueClient(storage=storage)
    with pytest.raises(error, match=message):
        await client.submit({"n": 1}, **options)
    with pytest.raises(error, match=message):
        await client.submit_batch([{"n": 1}, {"n": 2}], **options)
    assert await storage.size(None) == 0


async def test_submit_refuses_an_input_past_a_limit_and_stores_nothing() -> None:
    storage = InMemoryQueueStorage("q")
    client: JobQueueClient[Any, Any] = JobQueueClient(storage=storage)
    with pytest.raises(ValueError, match=r"inputs\[1\] is nested more than 100"):
        await client.submit_batch([{"n": 1}, nested(200)])
    assert await storage.size(None) == 0


async def test_the_date_limits_are_inclusive_below_and_exclusive_above() -> None:
    storage = InMemoryQueueStorage("q")
    client: JobQueueClient[Any, Any] = JobQueueClient(storage=storage)
    last = limits.LATEST_DATE - timedelta(microseconds=1)
    await client.submit({"n": 1}, run_after=limits.EARLIEST_DATE, deadline_at=last)
    with pytest.raises(ValueError, match="out of range"):
        await client.submit({"n": 2}, deadline_at=limits.LATEST_DATE)
    with pytest.raises(ValueError, match="out of range"):
        await client.submit({"n": 3}, run_after=limits.EARLIEST_DATE - timedelta(microseconds=1))
    assert await storage.size(None) == 1


class Text(str):
    """A str subclass: valid JSON, but not the plain type the quick check accepts."""


LEAVES: list[Any] = [
    None, True, 0, -7, 1.5, "", "plain", "ü𝄞", Text("sub"),  # valid
    float("nan"), float("inf"), "x\udc80", 10**limits.MAX_INTEGER_DIGITS, b"bytes", {1, 2},
]  # fmt: skip
BAD_KEYS: list[Any] = [1, None, "\ud800", ("a",)]


def random_value(rng: random.Random, depth: int) -> Any:
    """A random JSON-like value, now and then with a bad leaf, key or depth."""
    choice = rng.random()
    if depth > 3 or choice < 0.4:
        return rng.choice(LEAVES[:9] * 4 + LEAVES[9:])  # mostly valid leaves
    if choice < 0.7:
        keys = [rng.choice(["a", "b", "ü"]) + str(n) for n in range(rng.randrange(4))]
        if rng.random() < 0.1:
            keys.append(rng.choice(BAD_KEYS))
        return {key: random_value(rng, depth + 1) for key in keys}
    if choice < 0.8:
        return nested(limits.MAX_JSON_DEPTH + rng.choice([-1, 0, 1]) - depth)
    items = [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return tuple(items) if rng.random() < 0.3 else items


def test_the_quick_check_accepts_only_what_the_full_check_accepts() -> None:
    # validate_json tries a quick check first and falls back to the full one, which
    # names the offending place: the quick one must never pass a value the full refuses.
    rng = random.Random(20261201)
    outcomes = set()
    for _ in range(5_000):
        value = random_value(rng, 0)
        try:
            _json._validate(value, "input", 0, "input")
            valid = True
        except (TypeError, ValueError):
            valid = False
        quick = _json._plainly_valid(value, 0)
        assert valid or not quick, value
        outcomes.add((quick, valid))
        if valid:
            validate_json(value)
        else:
            with pytest.raises((TypeError, ValueError)):
                validate_json(value)
    # Every case came up: plain and valid, valid only by the full check, and refused.
    assert outcomes == {(True, True), (False, True), (False, False)}
