"""Each limiter on its own: validation, decisions, next available time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pyjobqueue import (
    CompositeLimiter,
    ConcurrencyLimiter,
    DelayLimiter,
    EvenlySpacedRateLimiter,
    Limiter,
    NullLimiter,
    RateLimiter,
)
from pyjobqueue.limiters.base import refuses_starts
from pyjobqueue.storage import InMemoryRateLimiterStorage


def now() -> datetime:
    return datetime.now(UTC)


@pytest.mark.parametrize(
    ("make", "parameter"),
    [
        (lambda: ConcurrencyLimiter(0), "max_concurrent_jobs"),
        (lambda: DelayLimiter(0), "delay_ms"),
        (lambda: DelayLimiter(-5), "delay_ms"),
        (
            lambda: EvenlySpacedRateLimiter(max_executions=0, window_size_in_seconds=1),
            "max_executions",
        ),
        (
            lambda: EvenlySpacedRateLimiter(max_executions=1, window_size_in_seconds=0),
            "window_size_in_seconds",
        ),
        (
            lambda: RateLimiter(
                InMemoryRateLimiterStorage(), "q", max_executions=0, window_size_in_seconds=1
            ),
            "max_executions",
        ),
        (
            lambda: RateLimiter(
                InMemoryRateLimiterStorage(), "q", max_executions=1, window_size_in_seconds=-1
            ),
            "window_size_in_seconds",
        ),
        (
            lambda: RateLimiter(
                InMemoryRateLimiterStorage(),
                "q",
                max_executions=1,
                window_size_in_seconds=1,
                backoff_multiplier=1,
            ),
            "backoff_multiplier",
        ),
        (
            lambda: RateLimiter(
                InMemoryRateLimiterStorage(),
                "q",
                max_executions=1,
                window_size_in_seconds=1,
                initial_backoff_delay=0,
            ),
            "initial_backoff_delay",
        ),
        (
            lambda: RateLimiter(
                InMemoryRateLimiterStorage(),
                "q",
                max_executions=1,
                window_size_in_seconds=1,
                initial_backoff_delay=1000,
                max_backoff_delay=500,
            ),
            "max_backoff_delay",
        ),
    ],
)
def test_invalid_limiter_options_name_the_parameter(make: object, parameter: str) -> None:
    with pytest.raises(ValueError, match=f"{parameter} must be greater than"):
        make()  # type: ignore[operator]


def test_limiter_option_types() -> None:
    with pytest.raises(TypeError, match="max_concurrent_jobs"):
        ConcurrencyLimiter("3")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="storage"):
        RateLimiter({}, "q", max_executions=1, window_size_in_seconds=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"limiters\[1\]"):
        CompositeLimiter([NullLimiter(), "nope"])  # type: ignore[list-item]


def test_every_limiter_satisfies_the_protocol() -> None:
    limiters = [
        NullLimiter(),
        ConcurrencyLimiter(1),
        DelayLimiter(10),
        EvenlySpacedRateLimiter(max_executions=2, window_size_in_seconds=1),
        RateLimiter(InMemoryRateLimiterStorage(), "q", max_executions=1, window_size_in_seconds=1),
        CompositeLimiter([]),
    ]
    assert all(isinstance(limiter, Limiter) for limiter in limiters)


async def test_null_limiter_never_limits() -> None:
    limiter = NullLimiter()
    for _ in range(100):
        assert await limiter.try_start()
    assert await limiter.get_next_available_time() <= now()


async def test_concurrency_limiter_counts_running_jobs() -> None:
    limiter = ConcurrencyLimiter(2)
    assert await limiter.try_start() and await limiter.try_start()
    assert not await limiter.can_proceed()
    assert not await limiter.try_start()
    await limiter.record_job_completion()
    assert await limiter.try_start()
    await limiter.clear()
    assert await limiter.can_proceed()


async def test_concurrency_limiter_holds_starts_until_the_next_available_time() -> None:
    limiter = ConcurrencyLimiter(5)
    later = now() + timedelta(hours=1)
    await limiter.set_next_available_time(later)
    assert not await limiter.can_proceed()
    assert not await limiter.try_start()
    assert await limiter.get_next_available_time() == later
    await limiter.set_next_available_time(now() - timedelta(seconds=1))
    assert await limiter.can_proceed()
    await limiter.set_next_available_time(later)
    await limiter.clear()
    assert await limiter.try_start()
    assert await limiter.get_next_available_time() <= now()


async def test_rate_limiter_allows_a_constant_backoff() -> None:
    storage = InMemoryRateLimiterStorage()
    limiter = RateLimiter(
        storage,
        "q",
        max_executions=1,
        window_size_in_seconds=3600,
        initial_backoff_delay=200,
        max_backoff_delay=200,
    )
    assert await limiter.try_start()
    delays = []
    for _ in range(3):
        await storage.set_next_available_time("q", None)
        before = now()
        assert not await limiter.try_start()
        held = await storage.get_next_available_time("q")
        assert held is not None
        delays.append(round((held - before).total_seconds(), 1))
    assert delays == [0.2, 0.2, 0.2]  # every refusal backs off the same


async def test_delay_limiter_spaces_starts() -> None:
    limiter = DelayLimiter(60_000)
    before = now()
    assert await limiter.try_start()
    assert not await limiter.can_proceed()
    next_time = await limiter.get_next_available_time()
    assert timedelta(seconds=59) < next_time - before <= timedelta(seconds=61)
    await limiter.set_next_available_time(now() - timedelta(seconds=1))
    assert await limiter.can_proceed()
    await limiter.record_job_start()
    await limiter.clear()
    assert await limiter.can_proceed()


async def test_evenly_spaced_limiter_spreads_the_window() -> None:
    limiter = EvenlySpacedRateLimiter(max_executions=4, window_size_in_seconds=60)
    before = now()
    assert await limiter.try_start()
    assert not await limiter.try_start()
    gap = await limiter.get_next_available_time() - before
    assert timedelta(seconds=14) < gap <= timedelta(seconds=16)


async def test_rate_limiter_window_and_backoff() -> None:
    storage = InMemoryRateLimiterStorage()
    limiter = RateLimiter(
        storage,
        "q",
        max_executions=2,
        window_size_in_seconds=60,
        initial_backoff_delay=1_000,
        backoff_multiplier=2,
    )
    assert await limiter.try_start() and await limiter.try_start()
    assert not await limiter.can_proceed()
    before = now()
    assert not await limiter.try_start()
    # Refused: held back (in storage, for every process) by the first backoff step.
    held = await storage.get_next_available_time("q")
    assert held is not None and timedelta(0) < held - before <= timedelta(seconds=1.5)
    # The slot frees a window after the first start.
    next_time = await limiter.get_next_available_time()
    assert timedelta(seconds=58) < next_time - before <= timedelta(seconds=61)
    await limiter.clear()
    assert await limiter.can_proceed()


async def test_rate_limiter_backoff_grows_and_is_capped() -> None:
    storage = InMemoryRateLimiterStorage()
    limiter = RateLimiter(
        storage,
        "q",
        max_executions=1,
        window_size_in_seconds=3600,
        initial_backoff_delay=100,
        backoff_multiplier=10,
        max_backoff_delay=5_000,
    )
    assert await limiter.try_start()
    delays = []
    for _ in range(4):
        await storage.set_next_available_time("q", None)
        before = now()
        assert not await limiter.try_start()
        held = await storage.get_next_available_time("q")
        assert held is not None
        delays.append((held - before).total_seconds())
    assert [round(delay, 1) for delay in delays] == [0.1, 1.0, 5.0, 5.0]


async def test_rate_limiter_prunes_old_records() -> None:
    storage = InMemoryRateLimiterStorage()
    limiter = RateLimiter(storage, "q", max_executions=1000, window_size_in_seconds=60)
    old = now() - timedelta(hours=1)
    for _ in range(500):
        await storage.try_record_execution("q", 10_000, old - timedelta(hours=1), old)
    for _ in range(100):
        assert await limiter.try_start()
    # Records older than the window are pruned every 100 starts.
    assert await storage.execution_count("q", old - timedelta(hours=1)) == 100


async def test_composite_limiter_needs_every_limiter() -> None:
    concurrency = ConcurrencyLimiter(1)
    storage = InMemoryRateLimiterStorage()
    rate = RateLimiter(storage, "q", max_executions=1, window_size_in_seconds=60)
    composite = CompositeLimiter([concurrency, rate])
    assert await composite.try_start()
    assert not await composite.can_proceed()
    await composite.record_job_completion()
    assert concurrency.running == 0
    # The rate limiter refuses: the concurrency slot taken for the attempt is given back.
    assert not await composite.try_start()
    assert concurrency.running == 0
    assert await composite.get_next_available_time() > now() + timedelta(seconds=50)
    await composite.clear()
    assert await composite.try_start()


def test_which_limiters_may_refuse_a_start() -> None:
    """Only a worker whose limiter never refuses lets the claim announce job_start."""
    assert not refuses_starts(NullLimiter())
    assert refuses_starts(ConcurrencyLimiter(2))
    assert not refuses_starts(CompositeLimiter([NullLimiter(), NullLimiter()]))
    assert refuses_starts(CompositeLimiter([NullLimiter(), ConcurrencyLimiter(1)]))

    class Unsaid:
        """A Limiter by protocol only: it does not say, so it is taken to refuse."""

        async def can_proceed(self) -> bool:
            return True

    assert refuses_starts(Unsaid())  # type: ignore[arg-type]
