"""SQLite storage (CPython, aiosqlite): one file that every process on the machine shares.

The file runs in WAL mode, so readers never block the writer. Modules: `codec` (values
in and out of SQL), `connection` (opening the file, retries, migrations), `migrations`
(the schema), `queries` (every statement, by name), `feed` (the events table),
`queue` (the queue storage) and `rate` (the rate limiter storage).
"""

from .queue import SqliteQueueStorage
from .rate import SqliteRateLimiterStorage

__all__ = ["SqliteQueueStorage", "SqliteRateLimiterStorage"]
