"""Which servers are alive (the heartbeats servers record in the storage), on every storage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pyjobqueue import Job, JobContext, JobQueueClient, JobQueueServer
from pyjobqueue.presence import FORGET_AFTER, ServerInfo
from pyjobqueue.storage import QueueStorage

from .conftest import Storages

T0 = datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)


def info(server_id: str, seen: datetime, **fields: Any) -> ServerInfo:
    values: dict[str, Any] = {
        "host": "worker-host-1",
        "pid": 4242,
        "kinds": ("resize", "send_email"),
        "worker_count": 4,
        "started_at": T0,
        "last_seen": seen,
        "expires_at": seen + timedelta(seconds=30),
    }
    values.update(fields)
    return ServerInfo(server_id=server_id, **values)


async def test_a_heartbeat_is_kept_replaced_expired_and_removed(storages: Storages) -> None:
    storage = await storages.queue()
    other_queue = await storages.queue("other")
    first = info("server-a", T0 + timedelta(seconds=1))
    await storage.record_server(first)
    assert await storage.servers(T0 + timedelta(seconds=2)) == [first]
    assert await other_queue.servers(T0) == []
    later = info("server-a", T0 + timedelta(seconds=20), worker_count=8, paused=True)
    await storage.record_server(later)  # replaces the first
    second = info("server-b", T0 + timedelta(seconds=21), pid=None, host="browser", kinds=())
    await storage.record_server(second)
    assert await storage.servers(T0 + timedelta(seconds=22)) == [later, second]
    if storages.backend.shares_location:
        again = await storages.queue()
        assert await again.servers(T0 + timedelta(seconds=22)) == [later, second]
    # Expired: not listed, though still kept for a while.
    assert await storage.servers(T0 + timedelta(seconds=50)) == [second]
    await storage.remove_server("server-b")
    assert await storage.servers(T0 + timedelta(seconds=22)) == [later]
    # A heartbeat far later forgets the long-expired ones.
    far = T0 + FORGET_AFTER + timedelta(minutes=5)
    third = info("server-c", far)
    await storage.record_server(third)
    # (Listed "at" an earlier time, to see what is kept: server-a is no more.)
    assert await storage.servers(T0 + timedelta(seconds=22)) == [third]


class Quiet(Job[dict[str, Any], str]):
    kind = "quiet"

    async def execute(self, input: dict[str, Any], context: JobContext) -> str:
        return "ok"


async def test_a_running_server_is_listed_until_it_stops(storage: QueueStorage) -> None:
    server: JobQueueServer[Any, Any] = JobQueueServer(Quiet, storage=storage, worker_count=3)
    client: JobQueueClient[Any, Any] = JobQueueClient(storage=storage)
    assert await client.servers() == []
    await server.start()
    try:
        (listed,) = await client.servers()
        assert listed.server_id == server.server_id
        assert listed.kinds == ("quiet",) and listed.worker_count == 3
        assert listed.host and listed.expires_at > listed.last_seen >= listed.started_at
    finally:
        await server.stop()
    assert await client.servers() == []
