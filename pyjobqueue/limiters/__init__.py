"""Limiters: how many jobs may start, and when."""

from .base import Limiter, LimiterBase, NullLimiter
from .composite import CompositeLimiter
from .concurrency import ConcurrencyLimiter
from .delay import DelayLimiter, EvenlySpacedRateLimiter
from .rate import RateLimiter

__all__ = [
    "CompositeLimiter",
    "ConcurrencyLimiter",
    "DelayLimiter",
    "EvenlySpacedRateLimiter",
    "Limiter",
    "LimiterBase",
    "NullLimiter",
    "RateLimiter",
]
