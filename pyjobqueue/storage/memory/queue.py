"""The in-memory queue: job records in a dict, changed by `pyjobqueue.transitions`."""

from __future__ import annotations

import copy
import heapq
import itertools
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from ... import transitions
from ...events import JobEvent
from ...job import ACTIVE_STATUSES, FINISHED_STATUSES, Job, JobStatus, utcnow
from ...presence import ServerInfo
from ...schedules import ScheduleState, Step, decide_step
from ..base import Added, check_queue_name
from ..core import (
    NO_CALLER_TRANSACTIONS,
    BaseQueueStorage,
    Finish,
    dependency_failed_events,
    dependency_ids,
    with_dependencies,
)
from .feed import EventFeed

T = TypeVar("T")


def _copy(job: Job[Any, Any]) -> Job[Any, Any]:
    """A shallow copy of a record, as `dataclasses.replace` makes, without its field
    checks (every read and claim copies a record)."""
    clone: Job[Any, Any] = object.__new__(type(job))
    clone.__dict__.update(job.__dict__)
    return clone


class MemoryQueueEngine:
    """The jobs of one queue in a dict of this process."""

    events_with_writes = False
    groups_finishes = False  # a write is a few dict operations
    hints_with_writes = False
    supports_push = True
    shared_across_processes = False

    def __init__(self, queue_name: str) -> None:
        self.queue_name = queue_name
        self.feed = EventFeed(queue_name)
        self._jobs: dict[int, Job[Any, Any]] = {}
        self._ids = itertools.count(1)
        # PENDING jobs by run_after, and those due by claim order; entries go stale when
        # a job changes and are skipped when popped (checked against the job).
        self._waiting: list[tuple[datetime, int]] = []
        self._claimable: list[tuple[int, datetime, int]] = []
        # unique key -> the id of the job that took it last (it holds the key while
        # `transitions.holds_unique_key` says so).
        self._unique: dict[str, int] = {}
        self._paused = False
        self._schedules: dict[str, ScheduleState] = {}
        self._servers: dict[str, ServerInfo] = {}
        # job id -> the ids of the jobs that depend on it (SPEC 8.7)
        self._dependants: dict[int, list[int]] = {}
        # Ids of the jobs claimed since they last were looked at by expired_leases,
        # which reads only these (not every job) and forgets those no longer running.
        self._leased: dict[int, None] = {}

    async def open(self) -> None:
        """Nothing to open."""

    async def close(self) -> None:
        """Nothing to release."""

    def is_transient(self, error: BaseException) -> bool:
        """Nothing here fails by itself; a lost connection or a timeout would pass."""
        return isinstance(error, ConnectionError | TimeoutError)

    def _mark_claimable(self, job: Job[Any, Any]) -> None:
        assert job.id is not None
        if job.run_after <= utcnow():  # due: straight into claim order (claims check again)
            heapq.heappush(self._claimable, transitions.claim_order(job))
        else:
            heapq.heappush(self._waiting, (job.run_after, job.id))

    def _move_due(self, now: datetime) -> None:
        """Move the jobs due at `now` from the waiting heap to the claim-order heap."""
        while self._waiting and self._waiting[0][0] <= now:
            run_after, job_id = heapq.heappop(self._waiting)
            job = self._jobs.get(job_id)
            if job is not None and job.status is JobStatus.PENDING and job.run_after == run_after:
                heapq.heappush(self._claimable, transitions.claim_order(job))

    def _ordered(self, jobs: Any) -> list[Job[Any, Any]]:
        return [_copy(job) for job in sorted(jobs, key=lambda job: job.id or 0)]

    def _key_holder(self, unique_key: str | None) -> int | None:
        if unique_key is None:
            return None
        holder = self._jobs.get(self._unique.get(unique_key, 0))
        return holder.id if holder is not None and transitions.holds_unique_key(holder) else None

    async def insert(self, jobs: Sequence[Job[Any, Any]]) -> list[Added]:
        """Store new jobs whose unique key is free; what became of each."""
        found = {
            job_id: self._jobs[job_id] for job_id in dependency_ids(jobs) if job_id in self._jobs
        }
        added = []
        failed = []
        taken: dict[str, int] = {}  # a key an earlier job of this batch took -> its id
        for record, takes_key in with_dependencies(jobs, found):
            key = record.unique_key if takes_key else None
            holder = None if key is None else taken.get(key) or self._key_holder(key)
            if holder is not None:
                added.append(Added(holder, False))
                continue
            record.id = next(self._ids)
            record.queue_name = self.queue_name
            record.input = copy.deepcopy(record.input)
            record.metadata = copy.deepcopy(record.metadata)
            record.depends_on = list(record.depends_on)
            for job_id in record.depends_on:
                self._dependants.setdefault(job_id, []).append(record.id)
            self._jobs[record.id] = record
            if record.status is JobStatus.PENDING:
                self._mark_claimable(record)
            elif record.status is JobStatus.FAILED:
                failed.append(record)
            elif record.status in ACTIVE_STATUSES:  # stored as running: leased
                self._leased[record.id] = None
            if key is not None:
                self._unique[key] = taken[key] = record.id
            added.append(Added(record.id, True))
        for event in dependency_failed_events(self.queue_name, failed):
            await self.feed.publish(event)
        return added

    async def _settle(self, job: Job[Any, Any], now: datetime, deleted: bool = False) -> None:
        """Apply `transitions.settle_dependants` after `job` changed (or was deleted)."""
        if job.id not in self._dependants:
            return

        def dependants_of(job_id: int) -> list[Job[Any, Any]]:
            ids = self._dependants.get(job_id, ())
            return [self._jobs[dependant] for dependant in ids if dependant in self._jobs]

        settled = transitions.walk_with(
            transitions.settle_dependants(job, now, deleted), dependants_of
        )
        for released in settled.released:
            self._mark_claimable(released)
        if settled.released:
            self.feed.announce_available()
        for event in dependency_failed_events(self.queue_name, settled.failed):
            await self.feed.publish(event)
        if deleted:
            self._dependants.pop(job.id or 0, None)

    def _has_unfinished_dependants(self, job_id: int) -> bool:
        return any(
            dependant in self._jobs and self._jobs[dependant].status not in FINISHED_STATUSES
            for dependant in self._dependants.get(job_id, ())
        )

    async def insert_in(self, connection: object, jobs: Sequence[Job[Any, Any]]) -> list[Added]:
        """No transactions of the caller to join here."""
        raise TypeError(NO_CALLER_TRANSACTIONS.format(storage="InMemoryQueueStorage"))

    async def get(self, job_id: int) -> Job[Any, Any] | None:
        """A copy of the job, or None."""
        job = self._jobs.get(job_id)
        return None if job is None else _copy(job)

    async def peek(self, status: JobStatus, num: int, kind: str | None) -> list[Job[Any, Any]]:
        """The first `num` jobs with `status` (and `kind`) in claim order."""
        jobs = sorted(
            (
                job
                for job in self._jobs.values()
                if job.status is status and (kind is None or job.kind == kind)
            ),
            key=transitions.claim_order,
        )
        return [_copy(job) for job in jobs[:num]]

    async def count(self, status: JobStatus | None, kind: str | None) -> int:
        """How many jobs have `status` and `kind`."""
        if status is None and kind is None:
            return len(self._jobs)
        return sum(
            1
            for job in self._jobs.values()
            if (status is None or job.status is status) and (kind is None or job.kind == kind)
        )

    async def counts(self) -> dict[tuple[str | None, JobStatus], int]:
        """How many jobs there are of each (kind, status)."""
        counts: dict[tuple[str | None, JobStatus], int] = {}
        for job in self._jobs.values():
            counts[job.kind, job.status] = counts.get((job.kind, job.status), 0) + 1
        return counts

    async def by_run_id(self, job_run_id: str) -> list[Job[Any, Any]]:
        """The jobs of a run, by id."""
        return self._ordered(job for job in self._jobs.values() if job.job_run_id == job_run_id)

    async def completed_by_fingerprint(self, fingerprint: str) -> Job[Any, Any] | None:
        """The latest completed job with this fingerprint."""
        matches = [
            job
            for job in self._jobs.values()
            if job.fingerprint == fingerprint and job.status is JobStatus.COMPLETED
        ]
        if not matches:
            return None
        return _copy(max(matches, key=lambda job: (job.completed_at, job.id or 0)))

    async def claim(
        self,
        worker_id: str,
        now: datetime,
        lease_until: datetime,
        limit: int,
        start_origin: str | None,
        kinds: frozenset[str] | None,
    ) -> list[Job[Any, Any]]:
        """Claim the first claimable jobs of the heap; those it passes over go back."""
        claimed: list[Job[Any, Any]] = []
        passed: list[tuple[int, datetime, int]] = []
        if not self._paused:
            self._move_due(now)
        while not self._paused and self._claimable and len(claimed) < limit:
            entry = heapq.heappop(self._claimable)
            job = self._jobs.get(entry[2])
            if job is None or transitions.claim_order(job) != entry:
                continue  # stale entry
            if job.status is not JobStatus.PENDING:
                continue
            if not transitions.is_claimable(job, now, kinds):
                passed.append(entry)  # not yet, or of a kind this server does not run
                continue
            transitions.claim(job, worker_id, now, lease_until)
            self._leased[entry[2]] = None
            claimed.append(_copy(job))
        for entry in passed:
            heapq.heappush(self._claimable, entry)
        return claimed

    def _attempt(self, job_id: int, worker_id: str, attempt: int) -> Job[Any, Any] | None:
        job = self._jobs.get(job_id)
        if job is None or not transitions.is_attempt(job, worker_id, attempt):
            return None
        return job

    async def renew_lease(
        self, job_id: int, worker_id: str, attempt: int, lease_until: datetime
    ) -> JobStatus | None:
        """Renew the lease of an attempt."""
        job = self._attempt(job_id, worker_id, attempt)
        return None if job is None else transitions.renew_lease(job, lease_until)

    async def save_progress(
        self,
        job_id: int,
        worker_id: str,
        attempt: int,
        progress: float,
        message: str,
        details: dict[str, Any] | None,
    ) -> bool:
        """Save the progress of an attempt."""
        job = self._attempt(job_id, worker_id, attempt)
        if job is None:
            return False
        transitions.save_progress(job, progress, message, details)
        return True

    async def finish_all(self, finishes: Sequence[Finish]) -> list[bool]:
        """Apply outcomes to attempts."""
        return [await self._finish(finish) for finish in finishes]

    async def _finish(self, finish: Finish) -> bool:
        job = self._attempt(finish.job_id, finish.worker_id, finish.attempt)
        if job is None or not transitions.lease_expired(job, finish.lease_expired_before):
            return False
        outcome = finish.outcome
        transitions.finish(job, outcome)
        if transitions.makes_claimable(outcome):
            self._mark_claimable(job)
        await self._settle(job, outcome.at)
        return True

    async def schedule_states(self) -> list[ScheduleState]:
        """The schedules' states."""
        return list(self._schedules.values())

    async def advance_schedule(
        self, name: str, spec: str, due: datetime | None, next_tick: datetime, job: Job[Any, Any]
    ) -> int | None:
        """Apply the schedule rule (atomic: nothing else runs meanwhile)."""
        state = self._schedules.get(name)
        step = decide_step(state, spec, due)
        if step is Step.START:
            last = None if state is None else state.last_tick
            self._schedules[name] = ScheduleState(name, last, next_tick, spec)
            return None
        if step is Step.ENQUEUE:
            self._schedules[name] = ScheduleState(name, due, next_tick, spec)
            ((job_id, _created),) = await self.insert([job])
            return job_id
        return None

    async def record_server(self, server: ServerInfo, forget_before: datetime) -> None:
        """Keep the heartbeat."""
        self._servers[server.server_id] = server
        for server_id, known in list(self._servers.items()):
            if known.expires_at < forget_before:
                del self._servers[server_id]

    async def remove_server(self, server_id: str) -> None:
        """Forget the server."""
        self._servers.pop(server_id, None)

    async def servers(self) -> list[ServerInfo]:
        """Every heartbeat kept."""
        return list(self._servers.values())

    async def set_paused(self, paused: bool, event: JobEvent | None) -> bool:
        """Pause or resume (the event is published by the core, without a pause)."""
        changed = self._paused != paused
        self._paused = paused
        return changed

    async def is_paused(self) -> bool:
        """Whether the queue is paused."""
        return self._paused

    def _change(self, job_id: int, change: Callable[[Job[Any, Any]], T], missing: T) -> T:
        job = self._jobs.get(job_id)
        return missing if job is None else change(job)

    async def abort(self, job_id: int, now: datetime) -> JobStatus | None:
        """Abort one job."""
        status = self._change(job_id, lambda job: transitions.abort(job, now), None)
        if status is not None:
            await self._settle(self._jobs[job_id], now)
        return status

    async def abort_run(self, job_run_id: str, now: datetime) -> list[tuple[int, JobStatus]]:
        """Abort the jobs of a run."""
        changed = []
        for job in self._jobs.values():
            if job.job_run_id == job_run_id and (status := transitions.abort(job, now)):
                changed.append((job.id or 0, status))
        # Then the jobs waiting on them (those of the run are aborted already).
        for job_id, _status in changed:
            await self._settle(self._jobs[job_id], now)
        return changed

    async def disable(self, job_id: int, now: datetime) -> bool:
        """Disable a job that has not started."""
        disabled = self._change(job_id, lambda job: transitions.disable(job, now), False)
        if disabled:
            await self._settle(self._jobs[job_id], now)
        return disabled

    async def retry(self, job_id: int, now: datetime) -> bool:
        """Run a finished job again."""

        def retry(job: Job[Any, Any]) -> bool:
            holder = self._key_holder(job.unique_key)
            completed = all(
                dependency in self._jobs and self._jobs[dependency].status is JobStatus.COMPLETED
                for dependency in job.depends_on
            )
            retried = transitions.retry(job, now, holder not in (None, job.id), completed)
            if retried and job.unique_key is not None:
                self._unique[job.unique_key] = job_id
            if retried:
                self._mark_claimable(job)
            return retried

        return self._change(job_id, retry, False)

    async def expired_leases(self, now: datetime) -> list[Job[Any, Any]]:
        """The running jobs whose lease expired."""
        expired = []
        for job_id in list(self._leased):
            job = self._jobs.get(job_id)
            if job is None or job.status not in ACTIVE_STATUSES:
                del self._leased[job_id]
            elif transitions.lease_has_expired(job, now):
                expired.append(job)
        return self._ordered(expired)

    async def delete_finished(
        self, status: JobStatus, completed_before: datetime, limit: int
    ) -> int:
        """Delete old finished jobs, up to `limit`."""
        doomed = list(
            itertools.islice(
                (
                    job_id
                    for job_id, job in self._jobs.items()
                    if job.status is status
                    and job.completed_at is not None
                    and job.completed_at < completed_before
                    # the outputs of a job's dependencies stay until it has finished
                    and not self._has_unfinished_dependants(job_id)
                ),
                limit,
            )
        )
        for job_id in doomed:
            self._forget_links(self._jobs.pop(job_id))
            self._dependants.pop(job_id, None)
        return len(doomed)

    async def delete(self, job_id: int) -> bool:
        """Delete one job (an unfinished one fails the jobs that wait for it)."""
        job = self._jobs.pop(job_id, None)
        if job is None:
            return False
        await self._settle(job, utcnow(), deleted=True)
        self._forget_links(job)
        return True

    def _forget_links(self, job: Job[Any, Any]) -> None:
        """A deleted job is nobody's dependant any more."""
        for dependency in job.depends_on:
            dependants = self._dependants.get(dependency)
            if dependants is not None and job.id in dependants:
                dependants.remove(job.id)

    async def delete_all(self) -> None:
        """Delete every job."""
        self._jobs.clear()
        self._waiting.clear()
        self._claimable.clear()
        self._unique.clear()
        self._dependants.clear()
        self._leased.clear()

    async def page(
        self, status: JobStatus | None, kind: str | None, before_id: int, limit: int
    ) -> list[Job[Any, Any]]:
        """Jobs newest first, below `before_id`: the dict holds them in id order (ids
        only grow), so a backward walk stops at the page's end."""
        found: list[Job[Any, Any]] = []
        for job_id in reversed(self._jobs):
            job = self._jobs[job_id]
            if job_id >= before_id or (status is not None and job.status is not status):
                continue
            if kind is None or job.kind == kind:
                found.append(_copy(job))
                if len(found) == limit:
                    break
        return found


class InMemoryQueueStorage(BaseQueueStorage):
    """Jobs in a dict of this process; events delivered to this process's subscribers."""

    def __init__(self, queue_name: str) -> None:
        super().__init__(queue_name, MemoryQueueEngine(check_queue_name(queue_name)))

    def __repr__(self) -> str:
        return f"InMemoryQueueStorage({self.queue_name!r})"
