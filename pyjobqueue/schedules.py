"""Schedules: jobs enqueued on a cron expression or every interval, once per tick (SPEC 8.6).

A `Schedule` knows its ticks: `next_tick(after)` and `last_tick(at)`, as timezone-aware
UTC datetimes. Cron expressions are the five-field POSIX form, read in the schedule's
IANA timezone (`zoneinfo`): a local time that a daylight-saving change skips runs once,
at the first instant after the gap; one that happens twice runs once, the first time.
`every=` ticks are aligned to the Unix epoch.

Which tick a server enqueues is decided by `decide_step`, from the state the storage
keeps per schedule (`ScheduleState`: its last enqueued tick and its next one); the
storage applies that decision atomically with the job's insert, so any number of
servers enqueue each tick exactly once without a leader.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import zoneinfo
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any

from . import limits
from ._json import fingerprint, validate_json
from .job import Job, is_job_class, kind_of

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The metadata key under which a scheduled job names its schedule.
SCHEDULE_METADATA_KEY = "schedule"
# How far a cron expression is searched for its next or last tick: past any leap day.
SEARCH_YEARS = 9

MONTH_NAMES = {
    name: number
    for number, name in enumerate(
        ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"),
        start=1,
    )
}
DAY_NAMES = {
    name: number for number, name in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"))
}


@dataclasses.dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: dict[str, int]


_FIELDS = (
    _Field("minute", 0, 59, {}),
    _Field("hour", 0, 23, {}),
    _Field("day of month", 1, 31, {}),
    _Field("month", 1, 12, MONTH_NAMES),
    _Field("day of week", 0, 7, DAY_NAMES),  # 0 and 7 are Sunday
)


def _number(text: str, field: _Field, expression: str) -> int:
    value = field.names.get(text.upper())
    if value is None:
        if not text.isdigit():
            raise ValueError(f"cron {expression!r}: {text!r} is not a valid {field.name}")
        value = int(text)
    if not field.low <= value <= field.high:
        raise ValueError(
            f"cron {expression!r}: {field.name} {text!r} is out of range ({field.low}-{field.high})"
        )
    return value


def _parse_field(text: str, field: _Field, expression: str) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ValueError(f"cron {expression!r}: bad step {step_text!r} in {part!r}")
            step = int(step_text)
        if base == "*":
            start, end = field.low, field.high
        elif "-" in base:
            first, _, last = base.partition("-")
            start, end = _number(first, field, expression), _number(last, field, expression)
            if start > end:
                raise ValueError(f"cron {expression!r}: range {base!r} runs backwards")
        elif base:
            start = _number(base, field, expression)
            end = field.high if step_text else start
        else:
            raise ValueError(f"cron {expression!r}: empty {field.name} in {text!r}")
        values.update(range(start, end + 1, step))
    if field.high == 7:  # day of week: 7 is Sunday too
        values = {0 if value == 7 else value for value in values}
    return frozenset(values)


@dataclasses.dataclass(frozen=True)
class Cron:
    """A parsed five-field cron expression."""

    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool  # the day of month is "*" (unrestricted)
    any_weekday: bool

    @classmethod
    def parse(cls, expression: str) -> Cron:
        """Parse `minute hour day-of-month month day-of-week`; ValueError naming the
        part that is wrong."""
        if not isinstance(expression, str):
            raise TypeError(f"cron must be a str, got {type(expression).__name__}")
        parts = expression.split()
        if len(parts) != 5:
            raise ValueError(
                f"cron {expression!r} must have five fields: minute hour day-of-month "
                "month day-of-week"
            )
        minutes, hours, days, months, weekdays = (
            _parse_field(part, field, expression)
            for part, field in zip(parts, _FIELDS, strict=True)
        )
        return cls(
            expression,
            minutes,
            hours,
            days,
            months,
            weekdays,
            any_day=parts[2].startswith("*"),
            any_weekday=parts[4].startswith("*"),
        )

    def matches_day(self, day: date) -> bool:
        """Whether the expression fires on `day` (POSIX: when both the day of month and
        the day of week are restricted, either one matching is enough)."""
        if day.month not in self.months:
            return False
        in_month = day.day in self.days
        in_week = (day.isoweekday() % 7) in self.weekdays
        if self.any_day and self.any_weekday:
            return True
        if self.any_day:
            return in_week
        if self.any_weekday:
            return in_month
        return in_month or in_week

    def local_times(self, start: datetime, forward: bool) -> Iterator[datetime]:
        """The matching naive local times from `start` (a naive local minute) onwards,
        or backwards, for at most SEARCH_YEARS."""
        step = timedelta(days=1 if forward else -1)
        day = start.date()
        hours = sorted(self.hours, reverse=not forward)
        minutes = sorted(self.minutes, reverse=not forward)
        for _ in range(366 * SEARCH_YEARS):
            if self.matches_day(day):
                for hour in hours:
                    for minute in minutes:
                        moment = datetime(day.year, day.month, day.day, hour, minute)
                        if (moment >= start) if forward else (moment <= start):
                            yield moment
            day += step


def _instant(local: datetime, zone: tzinfo) -> datetime:
    """The UTC instant of a naive local time: its first occurrence when the clock repeats
    it, the end of the gap when the clock skips it."""
    aware = local.replace(tzinfo=zone)  # fold=0: the first occurrence
    if aware.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == local:
        return aware.astimezone(UTC)
    # Skipped: the first instant whose local time is at or after it (seconds suffice:
    # offsets change on whole seconds).
    low = int(local.replace(tzinfo=zone, fold=1).timestamp())
    high = int(aware.timestamp())
    low, high = min(low, high), max(low, high)
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, zone).replace(tzinfo=None) >= local:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)


def _zone(name: object) -> tzinfo:
    if not isinstance(name, str) or not name:
        raise ValueError(f"timezone must be an IANA name such as 'Europe/Paris', got {name!r}")
    if name.upper() == "UTC":
        return UTC
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown timezone {name!r} (expected an IANA name such as 'Europe/Paris')"
        ) from None


@dataclasses.dataclass(frozen=True, eq=False)
class Schedule:
    """Enqueue a job of `kind` on a cron expression or every interval (exactly one).

    The job gets `input`, `priority`, `max_retries` and the metadata
    `{"schedule": name, "tick": ISO time}`.
    """

    name: str
    kind: type[Job[Any, Any]] | str | None = None
    cron: str | None = None
    every: timedelta | None = None
    input: Any = None
    timezone: str = "UTC"
    priority: int = 0
    max_retries: int = 10
    _zone: tzinfo = dataclasses.field(init=False, repr=False)
    _cron: Cron | None = dataclasses.field(init=False, repr=False)

    def __post_init__(self) -> None:
        limits.check_name("schedule name", self.name)
        if (self.cron is None) == (self.every is None):
            raise ValueError(f"schedule {self.name!r}: give exactly one of cron= and every=")
        if self.every is not None:
            if not isinstance(self.every, timedelta):
                raise TypeError(f"schedule {self.name!r}: every must be a timedelta")
            if self.every < timedelta(seconds=1):
                raise ValueError(f"schedule {self.name!r}: every must be at least 1 second")
        object.__setattr__(self, "_zone", _zone(self.timezone))
        object.__setattr__(self, "_cron", None if self.cron is None else Cron.parse(self.cron))
        if self.kind is not None and not is_job_class(self.kind):
            limits.check_name("schedule kind", self.kind)
        limits.check_priority(self.priority)
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int):
            raise TypeError(f"schedule {self.name!r}: max_retries must be an int")
        if not 0 <= self.max_retries <= limits.MAX_RETRIES:
            raise ValueError(f"schedule {self.name!r}: max_retries is out of range")
        if self._cron is not None and self.next_tick(EPOCH + timedelta(days=20_000)) is None:
            raise ValueError(f"cron {self.cron!r} never fires")

    @property
    def kind_name(self) -> str | None:
        """The kind of the jobs it enqueues (None: whichever server's first class)."""
        if self.kind is None or isinstance(self.kind, str):
            return self.kind
        return kind_of(self.kind)

    @property
    def spec(self) -> str:
        """What makes the ticks, as stored with the schedule's state (a change of it
        starts the schedule afresh)."""
        if self.every is not None:
            return json.dumps({"every_seconds": self.every.total_seconds()})
        return json.dumps({"cron": self.cron, "timezone": self.timezone})

    def next_tick(self, after: datetime) -> datetime | None:
        """The first tick strictly after `after` (None: a cron that fires no more)."""
        after = limits.check_aware("after", after).astimezone(UTC)
        if self.every is not None:
            periods = (after - EPOCH) // self.every
            return EPOCH + (periods + 1) * self.every
        cron, zone = self._cron, self._zone
        assert cron is not None
        local = after.astimezone(zone).replace(tzinfo=None, second=0, microsecond=0)
        for moment in cron.local_times(local, forward=True):
            instant = _instant(moment, zone)
            if instant > after:
                return instant
        return None

    def last_tick(self, at: datetime) -> datetime | None:
        """The latest tick at or before `at` (None: none in the search window)."""
        at = limits.check_aware("at", at).astimezone(UTC)
        if self.every is not None:
            return EPOCH + ((at - EPOCH) // self.every) * self.every
        cron, zone = self._cron, self._zone
        assert cron is not None
        local = at.astimezone(zone).replace(tzinfo=None, second=0, microsecond=0)
        # A skipped local time maps to an instant after it: look a little further ahead.
        for moment in cron.local_times(local + timedelta(hours=3), forward=False):
            instant = _instant(moment, zone)
            if instant <= at:
                return instant
        return None

    def job(self, tick: datetime, queue_name: str) -> Job[Any, Any]:
        """The job this schedule enqueues for `tick`."""
        validate_json(self.input, f"schedule {self.name!r} input")
        return Job(
            input=self.input,
            queue_name=queue_name,
            kind=self.kind_name,
            priority=self.priority,
            max_retries=self.max_retries,
            created_at=tick,
            run_after=tick,
            fingerprint=fingerprint(self.input),
            metadata={SCHEDULE_METADATA_KEY: self.name, "tick": tick.isoformat()},
        )


@dataclasses.dataclass(frozen=True)
class ScheduleState:
    """What the storage keeps of a schedule: when it last enqueued, when it will next."""

    name: str
    last_tick: datetime | None
    next_tick: datetime
    spec: str = ""


class Step(enum.Enum):
    """What a server's check does to a schedule's state."""

    START = "start"  # first seen (or its spec changed): record its next tick, no job
    ENQUEUE = "enqueue"  # a tick is due: record it, and insert its job, atomically
    NOTHING = "nothing"


def decide_step(state: ScheduleState | None, spec: str, due: datetime | None) -> Step:
    """The one rule of schedules, which every storage applies inside the transaction
    that reads `state`: a schedule seen for the first time (or with another spec) starts
    at its next tick; a tick is enqueued when it is at or past the stored next tick (so
    two servers never both enqueue it, and after downtime only the latest missed tick,
    `due`, runs)."""
    if state is None or state.spec != spec:
        return Step.START
    if due is not None and due >= state.next_tick:
        return Step.ENQUEUE
    return Step.NOTHING
