"""Prometheus metrics (SPEC section 9): the counters move, and an HTTP scrape shows them."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import urllib.request
from typing import Any

import pytest

pytest.importorskip("prometheus_client")

import prometheus_client

from pyjobqueue import (
    Job,
    JobContext,
    JobQueueClient,
    JobQueueServer,
    JobSnooze,
    RetryableJobError,
)
from pyjobqueue.contrib.prometheus import PrometheusMetrics
from pyjobqueue.storage import InMemoryQueueStorage


class Work(Job[dict[str, Any], str]):
    kind = "work"

    async def execute(self, input: dict[str, Any], context: JobContext) -> str:
        if input.get("fail"):
            raise ValueError("no")
        if input.get("retry") and context.job.run_attempts == 1:
            raise RetryableJobError("again")
        return "done"


class Snoozer(Job[dict[str, Any], str]):
    runs = 0

    async def execute(self, input: dict[str, Any], context: JobContext) -> str:
        Snoozer.runs += 1
        if Snoozer.runs == 1:
            raise JobSnooze(0)
        return "woke"


def scrape(url: str) -> str:
    with urllib.request.urlopen(url) as response:
        text: str = response.read().decode()
        return text


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def test_outcomes_durations_delays_and_depth_are_counted() -> None:
    registry = prometheus_client.CollectorRegistry()
    metrics = PrometheusMetrics(registry, depth_interval=0.02)
    storage = InMemoryQueueStorage("metrics")
    server: JobQueueServer[Any, Any] = JobQueueServer(
        [Work, Snoozer], storage=storage, poll_interval_ms=10
    )
    metrics.instrument(server)
    client: JobQueueClient[dict[str, Any], str] = JobQueueClient(storage=storage)
    waiting = await client.submit({}, kind="nobody")  # stays pending: a depth to see
    async with storage, server:
        client.attach(server)
        for options in ({}, {"retry": True}, {"fail": True}):
            handle = await client.submit(options, kind=Work)
            with contextlib.suppress(Exception):
                await handle.wait_for()
        assert await (await client.submit({}, kind=Snoozer)).wait_for() == "woke"

        def sample(name: str, **labels: str) -> float:
            value = registry.get_sample_value(name, labels)
            return 0.0 if value is None else value

        work = {"queue": "metrics", "kind": "work"}
        assert sample("pyjobqueue_jobs_total", **work, outcome="completed") == 2
        assert sample("pyjobqueue_jobs_total", **work, outcome="retried") == 1
        assert sample("pyjobqueue_jobs_total", **work, outcome="failed") == 1
        assert sample("pyjobqueue_jobs_total", queue="metrics", kind="Snoozer", outcome="snoozed")
        assert sample("pyjobqueue_attempt_duration_seconds_count", **work) == 4
        assert sample("pyjobqueue_start_delay_seconds_count", **work) == 3  # first attempts
        depth = {"queue": "metrics", "kind": "nobody", "status": "PENDING"}
        for _ in range(500):
            if sample("pyjobqueue_queue_jobs", **depth) == 1:
                break
            await asyncio.sleep(0.01)
        assert sample("pyjobqueue_queue_jobs", **depth) == 1  # the server's own reads
        await metrics.refresh_depth(server)
        assert sample("pyjobqueue_queue_jobs", **work, status="COMPLETED") == 2
        await client.disable(waiting.id)
        await metrics.refresh_depth(server)
        assert sample("pyjobqueue_queue_jobs", **depth) == 0

        port = free_port()
        http, thread = prometheus_client.start_http_server(port, "127.0.0.1", registry)
        try:
            text = await asyncio.to_thread(scrape, f"http://127.0.0.1:{port}/metrics")
        finally:
            http.shutdown()
            http.server_close()
            thread.join()
        assert 'pyjobqueue_jobs_total{kind="work",outcome="completed",queue="metrics"} 2.0' in text
