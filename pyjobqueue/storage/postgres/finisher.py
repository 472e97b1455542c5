"""Outcomes written together: one statement for a batch (see `storage.group_commit`)."""

from __future__ import annotations

from collections.abc import Sequence

from ..core import Finish
from . import queries as sql
from .codec import finish_row
from .connection import Database
from .feed import event_json
from .queries import HINT_TAG


async def finish_all(
    database: Database, queue_name: str, channel: str, finishes: Sequence[Finish]
) -> list[bool]:
    """Apply a batch of outcomes, each logged and notified with its event, in one
    `queries.FINISH_ATTEMPTS`; whether each applied."""
    # In id order: rows (and the dependants their triggers lock) are locked in the
    # order inserts of dependants lock them, so the two never deadlock.
    rows = sorted(
        (
            finish_row(
                finish.job_id,
                finish.worker_id,
                finish.attempt,
                finish.outcome,
                finish.lease_expired_before,
                None if finish.event is None else event_json(finish.event),
            )
            for finish in finishes
        ),
        key=lambda row: int(row[0]),
    )
    columns = list(zip(*rows, strict=True))
    names = ",".join(sorted({finish.event.name for finish in finishes if finish.event is not None}))
    changed = await database.fetch(
        sql.FINISH_ATTEMPTS, queue_name, *map(list, columns), channel, HINT_TAG, names
    )
    applied = {row["id"] for row in changed}
    return [finish.job_id in applied for finish in finishes]
