"""A connected client in its own process that prints every event of a SQLite queue.

usage: sqlite_watch.py DATABASE QUEUE

Prints "ready" once connected, then one JSON line per event: {"name": ..., "args":
[...]} with the listener arguments (datetimes as ISO strings). Exits when stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import datetime
from typing import Any

from pyjobqueue import JobQueueClient
from pyjobqueue.events import JOB_EVENTS
from pyjobqueue.storage import SqliteQueueStorage


def show(name: str, *args: Any) -> None:
    def encode(value: Any) -> Any:
        return value.isoformat() if isinstance(value, datetime) else str(value)

    print(json.dumps({"name": name, "args": list(args)}, default=encode), flush=True)


async def watch(database: str, queue: str) -> None:
    async with SqliteQueueStorage(database, queue, poll_interval_ms=20) as storage:
        client: JobQueueClient[Any, Any] = JobQueueClient(storage=storage)
        for name in JOB_EVENTS:
            client.on(name, lambda *args, name=name: show(name, *args))
        await client.connect()
        print("ready", flush=True)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        await reader.read()
        await client.disconnect()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("database")
    parser.add_argument("queue")
    arguments = parser.parse_args()
    asyncio.run(watch(arguments.database, arguments.queue))


if __name__ == "__main__":
    main()
