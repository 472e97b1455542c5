"""PostgreSQL storage on asyncpg: one queue shared by every process and machine on a database.

Modules: `codec` (values in and out of SQL), `connection` (the pool, migrations and
clear connection errors), `migrations` (the schema), `queries` (every statement, by
name), `feed` (LISTEN/NOTIFY), `finisher` (group commit of outcomes), `queue` (the
queue storage) and `rate` (the rate limiter storage). See docs/postgres.md.
"""

from .feed import channel_for
from .queue import PostgresQueueStorage
from .rate import PostgresRateLimiterStorage

__all__ = ["PostgresQueueStorage", "PostgresRateLimiterStorage", "channel_for"]
