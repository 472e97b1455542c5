"""Browser pieces that run under Pyodide: cross-tab events and leader election.

`WebLocksLeaderLock` lets one tab at a time run a queue's server
(`JobQueueServer(..., leader_lock=WebLocksLeaderLock("my-queue"))`). Importing this
package works everywhere; using it needs Pyodide in a browser (or Node.js 22+).
"""

from __future__ import annotations

from .locks import WebLocksLeaderLock

__all__ = ["WebLocksLeaderLock"]
