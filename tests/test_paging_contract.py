"""Listing a queue page by page (`list_jobs`, keyset paging newest first), on every storage."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pyjobqueue import Job, JobStatus
from pyjobqueue._listing import PageQuery, read_page
from pyjobqueue.storage import QueueStorage

from .conftest import Storages
from .jobs import new_job


def ids(jobs: Sequence[Job[Any, Any]]) -> list[int | None]:
    return [job.id for job in jobs]


async def test_pages_walk_every_job_newest_first_without_gaps(storage: QueueStorage) -> None:
    stored = await storage.add_batch([new_job({"n": n}) for n in range(7)])
    first = await storage.list_jobs(limit=3)
    assert ids(first) == stored[::-1][:3]
    second = await storage.list_jobs(before_id=first[-1].id, limit=3)
    assert ids(second) == stored[::-1][3:6]
    last = await storage.list_jobs(before_id=second[-1].id, limit=3)
    assert ids(last) == stored[:1]
    assert await storage.list_jobs(before_id=stored[0], limit=3) == []
    # Every field comes back as `get` reads it.
    newest = await storage.get(stored[-1])
    assert newest is not None and first[0].as_dict() == newest.as_dict()


async def test_pages_filter_by_status_and_kind(storage: QueueStorage) -> None:
    now = datetime.now(UTC)
    resize = await storage.add_batch([new_job({"r": n}, kind="resize") for n in range(3)])
    mail = await storage.add_batch([new_job({"m": n}, kind="mail") for n in range(2)])
    plain = await storage.add(new_job({"p": 1}))
    assert await storage.disable(resize[1], now)
    assert ids(await storage.list_jobs(kind="resize", limit=10)) == resize[::-1]
    assert ids(await storage.list_jobs(kind="mail", limit=1)) == [mail[1]]
    assert ids(await storage.list_jobs(JobStatus.DISABLED, limit=10)) == [resize[1]]
    pending = await storage.list_jobs(JobStatus.PENDING, limit=10)
    assert ids(pending) == [plain, *mail[::-1], resize[2], resize[0]]
    pending_resize = await storage.list_jobs(JobStatus.PENDING, "resize", before_id=resize[2])
    assert ids(pending_resize) == [resize[0]]
    assert await storage.list_jobs(JobStatus.COMPLETED, limit=10) == []
    assert await storage.list_jobs(kind="nothing-of-this-kind") == []


async def test_pages_keep_to_their_queue(storages: Storages) -> None:
    storage = await storages.queue()
    other = await storages.queue("other")
    mine = await storage.add(new_job({"mine": 1}))
    theirs = await other.add(new_job({"theirs": 1}))
    assert ids(await storage.list_jobs(limit=10)) == [mine]
    assert ids(await other.list_jobs(limit=10)) == [theirs]
    assert ids(await storage.list_jobs(before_id=max(mine, theirs) + 1)) == [mine]


async def test_a_page_sees_jobs_change_between_reads(storage: QueueStorage) -> None:
    stored = await storage.add_batch([new_job({"n": n}) for n in range(4)])
    first = await storage.list_jobs(JobStatus.PENDING, limit=2)
    assert ids(first) == stored[:1:-1]
    assert await storage.delete(stored[1])
    now = datetime.now(UTC)
    assert await storage.abort(stored[0], now + timedelta(seconds=1)) is JobStatus.FAILED
    assert await storage.list_jobs(JobStatus.PENDING, before_id=first[-1].id) == []
    failed = await storage.list_jobs(JobStatus.FAILED, before_id=first[-1].id)
    assert ids(failed) == [stored[0]]


@pytest.mark.parametrize("limit", [0, -1, True, 2.5])
async def test_a_bad_limit_or_bound_is_refused(storage: QueueStorage, limit: object) -> None:
    with pytest.raises(ValueError, match="limit"):
        await storage.list_jobs(limit=limit)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="before_id"):
        await storage.list_jobs(before_id="12")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="kind"):
        await storage.list_jobs(kind="")


async def test_console_pages_of_a_run_a_job_and_a_filter(storage: QueueStorage) -> None:
    run = await storage.add_batch([new_job({"n": n}, job_run_id="import-7") for n in range(7)])
    other = await storage.add(new_job({"n": 99}, kind="mail"))

    first = await read_page(storage, PageQuery(run_id="import-7", limit=3))
    assert (ids(first.jobs), first.total) == (run[::-1][:3], 7)
    second = await read_page(storage, PageQuery(run_id="import-7", before_id=first.next_before_id))
    assert (ids(second.jobs), second.next_before_id, second.total) == (run[::-1][3:], None, 7)
    one = await read_page(storage, PageQuery(job_id=other))
    assert (ids(one.jobs), one.next_before_id, one.total) == ([other], None, None)
    assert (await read_page(storage, PageQuery(job_id=other + 1))).jobs == []
    mail = await read_page(storage, PageQuery(kind="mail", status=JobStatus.PENDING, limit=1))
    assert (ids(mail.jobs), mail.next_before_id) == ([other], other)  # a full page: maybe more
