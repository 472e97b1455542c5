"""Schedules (SPEC 8.6), the pure part: cron expressions, timezones and DST, every=,
and the one rule that decides which tick a server enqueues."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pyjobqueue import Schedule
from pyjobqueue.schedules import Cron, ScheduleState, Step, decide_step

T = datetime(2026, 12, 1, 10, 7, 30, tzinfo=UTC)  # a Tuesday


def ticks(schedule: Schedule, after: datetime, count: int) -> list[datetime]:
    found = []
    for _ in range(count):
        tick = schedule.next_tick(after)
        assert tick is not None
        found.append(tick)
        after = tick
    return found


def test_cron_fields_numbers_names_ranges_lists_and_steps() -> None:
    cron = Cron.parse("*/15 9-17/4 1,15 JAN-mar,dec mon-FRI")
    assert cron.minutes == {0, 15, 30, 45}
    assert cron.hours == {9, 13, 17}
    assert cron.days == {1, 15}
    assert cron.months == {1, 2, 3, 12}
    assert cron.weekdays == {1, 2, 3, 4, 5}
    assert Cron.parse("0 0 * * 7").weekdays == {0} == Cron.parse("0 0 * * 0").weekdays
    assert Cron.parse("0 0 * * 5-7").weekdays == {5, 6, 0}
    assert Cron.parse("5/20 * * * *").minutes == {5, 25, 45}


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("* * * *", "five fields"),
        ("60 * * * *", "minute '60' is out of range"),
        ("* 24 * * *", "hour '24' is out of range"),
        ("* * 0 * *", "day of month '0' is out of range"),
        ("* * * 13 *", "month '13' is out of range"),
        ("* * * * 8", "day of week '8' is out of range"),
        ("*/0 * * * *", "bad step"),
        ("5-1 * * * *", "runs backwards"),
        ("* * * FOO *", "'FOO' is not a valid month"),
        ("1,,2 * * * *", "empty minute"),
        ("0 0 30 2 *", "never fires"),
    ],
)
def test_a_bad_cron_expression_is_refused_naming_what_is_wrong(
    expression: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Schedule("bad", cron=expression)


def test_schedule_options_are_checked() -> None:
    with pytest.raises(ValueError, match="exactly one of cron= and every="):
        Schedule("both", cron="* * * * *", every=timedelta(minutes=1))
    with pytest.raises(ValueError, match="exactly one of cron= and every="):
        Schedule("neither")
    with pytest.raises(ValueError, match="unknown timezone 'Mars/Olympus'"):
        Schedule("tz", cron="* * * * *", timezone="Mars/Olympus")
    with pytest.raises(ValueError, match="at least 1 second"):
        Schedule("fast", every=timedelta(milliseconds=10))
    with pytest.raises(ValueError, match="must not be empty"):
        Schedule("", every=timedelta(minutes=1))
    with pytest.raises(TypeError, match="priority must be an int"):
        Schedule("p", every=timedelta(minutes=1), priority="high")  # type: ignore[arg-type]


def test_every_is_aligned_to_the_epoch() -> None:
    five = Schedule("five", every=timedelta(minutes=5))
    assert ticks(five, T, 3) == [
        datetime(2026, 12, 1, 10, 10, tzinfo=UTC),
        datetime(2026, 12, 1, 10, 15, tzinfo=UTC),
        datetime(2026, 12, 1, 10, 20, tzinfo=UTC),
    ]
    assert five.last_tick(T) == datetime(2026, 12, 1, 10, 5, tzinfo=UTC)
    assert five.next_tick(datetime(2026, 12, 1, 10, 10, tzinfo=UTC)) == datetime(
        2026, 12, 1, 10, 15, tzinfo=UTC
    )


def test_posix_day_rule_either_day_field_matches_when_both_are_restricted() -> None:
    friday_or_13th = Schedule("f13", cron="0 9 13 * FRI")
    days = [tick.date().isoformat() for tick in ticks(friday_or_13th, T, 4)]
    assert days == ["2026-12-04", "2026-12-11", "2026-12-13", "2026-12-18"]
    only_weekdays = Schedule("wd", cron="0 9 * * 1-5")
    assert [t.weekday() for t in ticks(only_weekdays, T, 5)] == [2, 3, 4, 0, 1]


def test_a_local_cron_runs_at_local_time_across_daylight_saving_changes() -> None:
    paris = Schedule("paris", cron="0 8 * * *", timezone="Europe/Paris")
    winter = paris.next_tick(datetime(2026, 1, 10, tzinfo=UTC))
    summer = paris.next_tick(datetime(2026, 7, 10, tzinfo=UTC))
    assert winter == datetime(2026, 1, 10, 7, tzinfo=UTC)
    assert summer == datetime(2026, 7, 10, 6, tzinfo=UTC)


def test_a_skipped_local_time_runs_once_at_the_next_valid_instant() -> None:
    # New York, 2026-03-08: 02:00 EST jumps to 03:00 EDT (07:00 UTC).
    nightly = Schedule("nightly", cron="30 2 * * *", timezone="America/New_York")
    assert ticks(nightly, datetime(2026, 3, 7, 12, tzinfo=UTC), 2) == [
        datetime(2026, 3, 8, 7, 0, tzinfo=UTC),  # 03:00 EDT, the gap's end
        datetime(2026, 3, 9, 6, 30, tzinfo=UTC),  # 02:30 EDT
    ]
    quarterly = Schedule("q", cron="*/15 2 * * *", timezone="America/New_York")
    during = ticks(quarterly, datetime(2026, 3, 8, 6, 0, tzinfo=UTC), 2)
    assert during == [  # the four skipped times run once, then the next day
        datetime(2026, 3, 8, 7, 0, tzinfo=UTC),
        datetime(2026, 3, 9, 6, 0, tzinfo=UTC),
    ]


def test_a_repeated_local_time_runs_once() -> None:
    # New York, 2026-11-01: 01:00-02:00 happens twice (EDT, then EST).
    early = Schedule("early", cron="30 1 * * *", timezone="America/New_York")
    assert ticks(early, datetime(2026, 10, 31, 12, tzinfo=UTC), 2) == [
        datetime(2026, 11, 1, 5, 30, tzinfo=UTC),  # 01:30 EDT, the first time
        datetime(2026, 11, 2, 6, 30, tzinfo=UTC),  # 01:30 EST the next day
    ]
    every_quarter = Schedule("q", cron="*/30 * * * *", timezone="America/New_York")
    hour = ticks(every_quarter, datetime(2026, 11, 1, 4, 50, tzinfo=UTC), 4)
    assert hour == [
        datetime(2026, 11, 1, 5, 0, tzinfo=UTC),  # 01:00 EDT
        datetime(2026, 11, 1, 5, 30, tzinfo=UTC),  # 01:30 EDT
        datetime(2026, 11, 1, 7, 0, tzinfo=UTC),  # 02:00 EST: the repeat is skipped
        datetime(2026, 11, 1, 7, 30, tzinfo=UTC),
    ]
    assert every_quarter.last_tick(datetime(2026, 11, 1, 6, 45, tzinfo=UTC)) == datetime(
        2026, 11, 1, 5, 30, tzinfo=UTC
    )


def test_the_last_tick_is_the_latest_at_or_before() -> None:
    hourly = Schedule("h", cron="0 * * * *")
    assert hourly.last_tick(T) == datetime(2026, 12, 1, 10, tzinfo=UTC)
    assert hourly.last_tick(datetime(2026, 12, 1, 10, tzinfo=UTC)) == datetime(
        2026, 12, 1, 10, tzinfo=UTC
    )


def test_a_tick_is_enqueued_once_from_the_stored_next_tick_on() -> None:
    spec = Schedule("s", every=timedelta(minutes=1)).spec
    at = datetime(2026, 12, 1, 10, 7, tzinfo=UTC)
    state = ScheduleState("s", None, at, spec)
    assert decide_step(None, spec, at) is Step.START  # first seen: no past tick
    assert decide_step(state, spec, at - timedelta(minutes=1)) is Step.NOTHING
    assert decide_step(state, spec, at) is Step.ENQUEUE
    assert decide_step(state, spec, at + timedelta(hours=5)) is Step.ENQUEUE  # only the latest
    assert decide_step(state, spec, None) is Step.NOTHING
    other = Schedule("s", every=timedelta(minutes=2)).spec
    assert decide_step(state, other, at) is Step.START  # a changed schedule starts afresh
