"""The pages of a queue's job list, as both consoles read them (the browser console's
Python and `pyjobqueue console`'s API): one job by id, the jobs of one run, or a page of
a status and kind, newest first, by keyset on the job id."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from .job import Job, JobStatus

if TYPE_CHECKING:
    from .storage.base import QueueStorage

PAGE_SIZE = 50  # the rows of a page
MAX_PAGE = 500  # the most jobs one read returns


@dataclasses.dataclass(frozen=True)
class PageQuery:
    """What to list: `job_id`, else a page of the jobs of `run_id`, else a page of
    `status` and `kind` (None: any); a page holds ids below `before_id` (None: the
    newest)."""

    job_id: int | None = None
    run_id: str | None = None
    status: JobStatus | None = None
    kind: str | None = None
    before_id: int | None = None
    limit: int = PAGE_SIZE


@dataclasses.dataclass(frozen=True)
class Page:
    """The jobs listed, newest first, the `before_id` of the next older page (None when
    this is the last one), and how many jobs a run has (None for other queries: the
    counts say how many a status and kind have)."""

    jobs: list[Job[Any, Any]]
    next_before_id: int | None
    total: int | None = None


async def read_page(storage: QueueStorage, query: PageQuery) -> Page:
    """The jobs `query` asks for."""
    if query.job_id is not None:
        job = await storage.get(query.job_id)
        return Page([] if job is None else [job], None)
    limit = max(1, min(query.limit, MAX_PAGE))
    if query.run_id is not None:
        run = sorted(await storage.get_by_run_id(query.run_id), key=_id, reverse=True)
        before = [job for job in run if query.before_id is None or _id(job) < query.before_id]
        jobs = before[:limit]
        return Page(jobs, _id(jobs[-1]) if len(before) > limit else None, len(run))
    jobs = await storage.list_jobs(query.status, query.kind, query.before_id, limit)
    return Page(jobs, jobs[-1].id if len(jobs) == limit else None)


def _id(job: Job[Any, Any]) -> int:
    return job.id or 0
