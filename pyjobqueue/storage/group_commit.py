"""Group commit: writes that arrive while one is on its way share the next one."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any, Generic, TypeVar

T = TypeVar("T")

# Writes a batch of items (no two with the same key); whether each applied, in order.
WriteBatch = Callable[[list[T]], Awaitable[Sequence[bool]]]


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class GroupCommit(Generic[T]):
    """Writes items one batch at a time; those that arrive while a batch is being
    written go together in the next.

    A lone item costs one write as before, and callers that write together (a worker's
    slots finishing short jobs) pay one round trip, one transaction, between them. A
    batch never holds two items of one key (one job), so each is applied or refused
    on its own, in the order they came.
    """

    def __init__(self, write: WriteBatch[T], key: Callable[[T], Hashable], name: str) -> None:
        self._write = write
        self._key = key
        self._name = name
        self._waiting: list[tuple[T, asyncio.Future[bool]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> bool:
        """Write `item` with the next batch; whether it applied (the batch's error if
        the write failed)."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieve)  # its caller may be gone (cancelled)
        self._waiting.append((item, future))
        if self._writer is None:
            self._writer = asyncio.create_task(self._drain(), name=self._name)
        # A cancelled caller cancels only its future: the item, in the batch already,
        # is still written, whole or not at all (the writer skips a done future).
        return await future

    async def _drain(self) -> None:
        try:
            while self._waiting:
                batch: list[tuple[T, asyncio.Future[bool]]] = []
                later: list[tuple[T, asyncio.Future[bool]]] = []
                keys: set[Hashable] = set()
                for entry in self._waiting:
                    key = self._key(entry[0])
                    (later if key in keys else batch).append(entry)
                    keys.add(key)
                self._waiting = later
                await self._write_batch(batch)
        finally:
            self._writer = None

    async def _write_batch(self, batch: list[tuple[T, asyncio.Future[bool]]]) -> None:
        try:
            applied = await self._write([item for item, _future in batch])
        except Exception as error:
            for _item, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        for (_item, future), done in zip(batch, applied, strict=True):
            if not future.done():
                future.set_result(done)
