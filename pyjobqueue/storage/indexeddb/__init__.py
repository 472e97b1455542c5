"""IndexedDB storage: jobs and rate-limit records in the browser, shared by every tab.

Runs under Pyodide only. Modules: `codec` (records and times), `connection` (opening
the database), `migrations` (object stores and indexes), `feed` (BroadcastChannel),
`queue` (the queue storage) and `rate` (the rate limiter storage).
"""

from .queue import IndexedDbQueueStorage
from .rate import IndexedDbRateLimiterStorage

__all__ = ["IndexedDbQueueStorage", "IndexedDbRateLimiterStorage"]
