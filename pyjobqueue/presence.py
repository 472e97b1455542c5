"""Which servers are alive: each running server records a heartbeat in the storage.

A server writes its `ServerInfo` when it starts and again every heartbeat interval,
each time saying until when it counts as alive (`expires_at`: three intervals ahead,
so one late or lost heartbeat does not make it look dead); it removes it when it stops.
`client.servers()` lists those whose heartbeat has not expired, from any process,
machine or tab, and `pyjobqueue status` prints them.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import socket
from datetime import datetime, timedelta
from typing import Any

from ._platform import IN_PYODIDE

# A heartbeat row that expired this long ago is deleted by the next server's heartbeat.
FORGET_AFTER = timedelta(days=1)


@dataclasses.dataclass(frozen=True)
class ServerInfo:
    """One server of a queue, as its last heartbeat told."""

    server_id: str
    host: str
    pid: int | None
    kinds: tuple[str, ...]
    worker_count: int
    started_at: datetime
    last_seen: datetime
    expires_at: datetime
    paused: bool = False  # whether the queue was paused when it last looked

    def alive(self, now: datetime) -> bool:
        """Whether its heartbeat still counts at `now`."""
        return self.expires_at > now

    def as_dict(self) -> dict[str, Any]:
        """What `pyjobqueue status --json` and the console show of it (times as ISO)."""
        return {
            "server_id": self.server_id,
            "host": self.host,
            "pid": self.pid,
            "kinds": list(self.kinds),
            "worker_count": self.worker_count,
            "started_at": self.started_at.isoformat(),
            "last_seen": self.last_seen.isoformat(),
        }


def this_host() -> tuple[str, int | None]:
    """The host name and process id a server reports (a browser tab has no pid)."""
    if IN_PYODIDE:
        return "browser", None
    return socket.gethostname() or platform.node() or "unknown", os.getpid()
