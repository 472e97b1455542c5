"""Event names and payloads: one table builds and reads every job event (SPEC section 5)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from pyjobqueue.events import (
    JOB_AVAILABLE,
    JOB_EVENTS,
    PAYLOAD_FIELDS,
    QUEUE_EVENTS,
    SERVER_EVENTS,
    EventEmitter,
    EventName,
    JobEvent,
    event_payload,
)
from pyjobqueue.storage.feed import Listeners

WHEN = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_event_names_are_the_strings_users_pass() -> None:
    user_string: str = "job_complete"
    assert user_string == EventName.JOB_COMPLETE
    assert f"{EventName.JOB_START}" == "job_start"
    assert json.dumps(EventName.SERVER_STOP) == '"server_stop"'
    assert [str(name) for name in JOB_EVENTS] == [
        "job_start",
        "job_progress",
        "job_complete",
        "job_error",
        "job_retry",
        "job_disabled",
        "job_aborting",
    ]
    assert [str(name) for name in SERVER_EVENTS] == ["server_start", "server_stop"]
    assert JOB_AVAILABLE == "job_available"


def test_the_table_has_every_job_event_with_the_spec_arguments() -> None:
    assert set(PAYLOAD_FIELDS) == {*JOB_EVENTS, JOB_AVAILABLE, *QUEUE_EVENTS}
    assert PAYLOAD_FIELDS["job_progress"] == ("progress", "message", "details")
    assert PAYLOAD_FIELDS["job_complete"] == ("output",)
    assert PAYLOAD_FIELDS["job_error"] == ("error",)
    assert PAYLOAD_FIELDS["job_retry"] == ("run_after",)
    for name in ("job_start", "job_disabled", "job_aborting"):
        assert PAYLOAD_FIELDS[name] == ()


async def test_listeners_subscribe_by_string_or_by_constant() -> None:
    emitter = EventEmitter(JOB_EVENTS)
    received: list[tuple[object, ...]] = []
    emitter.on("job_complete", lambda *args: received.append(("str", *args)))
    emitter.on(EventName.JOB_COMPLETE, lambda *args: received.append(("enum", *args)))
    emitter.emit("job_complete", "q", 1, {"r": 1})
    emitter.emit(EventName.JOB_COMPLETE, "q", 2, None)
    assert received == [
        ("str", "q", 1, {"r": 1}),
        ("enum", "q", 1, {"r": 1}),
        ("str", "q", 2, None),
        ("enum", "q", 2, None),
    ]
    with pytest.raises(ValueError, match="unknown event 'job_available'"):
        emitter.on(JOB_AVAILABLE, print)


@pytest.mark.parametrize(
    ("built", "positional"),
    [
        (JobEvent.job_start("q", 1, "me"), JobEvent("job_start", "q", 1, (), "me")),
        (
            JobEvent.job_progress("q", 1, 50.0, "half", {"k": 1}, "me"),
            JobEvent("job_progress", "q", 1, (50.0, "half", {"k": 1}), "me"),
        ),
        (JobEvent.job_complete("q", 1, [1], "me"), JobEvent("job_complete", "q", 1, ([1],), "me")),
        (
            JobEvent.job_error("q", 1, "bad", "PermanentJobError", "me"),
            JobEvent("job_error", "q", 1, ("bad",), "me", "PermanentJobError"),
        ),
        (JobEvent.job_retry("q", 1, WHEN, "me"), JobEvent("job_retry", "q", 1, (WHEN,), "me")),
        (JobEvent.job_disabled("q", 1, "me"), JobEvent("job_disabled", "q", 1, (), "me")),
        (JobEvent.job_aborting("q", 1, "me"), JobEvent("job_aborting", "q", 1, (), "me")),
        (JobEvent.job_available("q"), JobEvent("job_available", "q", 0)),
    ],
)
def test_constructors_build_the_same_events_and_json(built: JobEvent, positional: JobEvent) -> None:
    assert built == positional
    assert built.listener_args() == positional.listener_args()
    assert json.dumps(built.to_json()) == json.dumps(positional.to_json())
    assert JobEvent.from_json(json.loads(json.dumps(built.to_json()))) == positional


def test_payload_fields_are_read_by_name() -> None:
    progress = JobEvent.job_progress("q", 3, 25.0, "a quarter", None)
    assert (progress.progress, progress.message, progress.details) == (25.0, "a quarter", None)
    assert progress.payload() == {"progress": 25.0, "message": "a quarter", "details": None}
    assert JobEvent.job_complete("q", 3, {"r": 2}).output == {"r": 2}
    assert JobEvent.job_error("q", 3, "boom", "ValueError").error == "boom"
    retry = JobEvent.from_json(JobEvent.job_retry("q", 3, WHEN).to_json())
    assert retry.run_after == WHEN
    assert event_payload("job_retry", (WHEN,)) == {"run_after": WHEN}
    assert event_payload("job_start", ()) == {}
    # Written by another process (or by SQL) without its argument: no crash.
    assert JobEvent("job_error", "q", 3).error == ""


def test_a_field_the_event_does_not_carry_is_an_error() -> None:
    with pytest.raises(AttributeError, match="a job_start event carries no output"):
        _ = JobEvent.job_start("q", 1).output
    with pytest.raises(AttributeError, match="carries no error"):
        _ = JobEvent.job_complete("q", 1, None).error
    with pytest.raises(TypeError, match="job_complete event carries"):
        JobEvent.build("job_complete", "q", 1, error="x")
    with pytest.raises(ValueError, match="'server_start' is not a job event"):
        JobEvent.build("server_start", "q", 1)


def test_listeners_take_only_their_names_and_say_what_text_they_may_take() -> None:
    listeners = Listeners("q")
    every: list[JobEvent] = []
    named: list[JobEvent] = []
    assert not listeners.wants_text('{"name":"job_start"}')  # nobody listens
    token = listeners.add(named.append, names={"job_aborting", "queue_paused"})
    aborting = JobEvent("job_aborting", "q", 1)
    start = JobEvent("job_start", "q", 1)
    assert listeners.wants_text(json.dumps([start.to_json(), aborting.to_json()]))
    assert not listeners.wants_text(json.dumps([start.to_json(), start.to_json()]))
    # a name inside a string value is escaped: never taken for an event's name
    assert not listeners.wants_text(
        json.dumps(JobEvent("job_error", "q", 1, ('"job_aborting"',)).to_json())
    )
    assert listeners.wants_names(["job_start", "queue_paused"])
    assert not listeners.wants_names(["job_start", "job_complete"])
    listeners.deliver(start)
    listeners.deliver(aborting)
    assert named == [aborting]
    listeners.add(every.append)
    assert listeners.wants_text('{"name":"job_start"}')
    assert listeners.wants_names(["job_start"])
    listeners.deliver(start)
    assert (named, every) == ([aborting], [start])
    listeners.remove(token)
    listeners.clear()
    assert not listeners.wants_names(["job_aborting"])
