"""Group commit of outcomes: those that arrive while one is being written share the next."""

from __future__ import annotations

import asyncio
from typing import Any

from . import queries as sql
from .codec import FinishRow
from .connection import Database
from .queries import HINT_TAG

_Waiting = tuple[FinishRow, "asyncio.Future[bool]"]


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class Finisher:
    """Writes outcomes; those that arrive while a write is on its way share the next one.

    Group commit: a lone outcome costs one statement as before, and workers that finish
    together (a server with many workers, short jobs) pay one round trip between them.
    A batch never holds one job twice, so each outcome is applied or refused on its own.
    """

    def __init__(self, database: Database, queue_name: str, channel: str) -> None:
        self._database = database
        self._queue_name = queue_name
        self._channel = channel
        self._waiting: list[_Waiting] = []
        self._writer: asyncio.Task[None] | None = None

    async def finish(self, row: FinishRow) -> bool:
        """Apply one attempt's outcome (see `queries.FINISH_ATTEMPTS`); whether it did."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieve)  # its caller may be gone (cancelled)
        self._waiting.append((row, future))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write(), name="pyjobqueue finish")
        # Shielded: a cancelled caller's outcome is still written, whole or not at all.
        return await asyncio.shield(future)

    async def _write(self) -> None:
        try:
            while self._waiting:
                batch: list[_Waiting] = []
                later: list[_Waiting] = []
                seen: set[int] = set()
                for entry in self._waiting:
                    job_id = entry[0][0]
                    (later if job_id in seen else batch).append(entry)
                    seen.add(job_id)
                self._waiting = later
                await self._write_batch(batch)
        finally:
            self._writer = None

    async def _write_batch(self, batch: list[_Waiting]) -> None:
        # In id order: rows (and the dependants their triggers lock) are locked in the
        # order inserts of dependants lock them, so the two never deadlock.
        batch = sorted(batch, key=lambda entry: entry[0][0])
        columns = list(zip(*(row for row, _future in batch), strict=True))
        try:
            rows = await self._database.fetch(
                sql.FINISH_ATTEMPTS, self._queue_name, *map(list, columns), self._channel, HINT_TAG
            )
        except Exception as error:
            for _row, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        applied = {row["id"] for row in rows}
        for row, future in batch:
            if not future.done():
                future.set_result(row[0] in applied)
