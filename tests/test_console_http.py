"""`pyjobqueue console` over plain HTTP (no browser), run for real against SQLite and
PostgreSQL: the token gate on every route and on the live stream, read-only mode, the
JSON API's answers to bad input, the stream's events, and a clean stop."""

from __future__ import annotations

import contextlib
import http.client
import importlib.util
import json
import signal
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pyjobqueue.console._hosts import is_loopback
from pyjobqueue.console._live import BUCKET_SECONDS, Throughput

from .cli_apps.harness import WAIT_SECONDS, Cli, Running, cli_on

pytestmark = pytest.mark.slow

TOKEN = "http-test-token-1"
ACTION = {"Content-Type": "application/json", "X-Pyjobqueue-Console": "1"}

if importlib.util.find_spec("starlette") is None or importlib.util.find_spec("uvicorn") is None:
    pytest.skip("the console needs pyjobqueue[console]", allow_module_level=True)


@pytest.fixture(params=["sqlite", "postgres"])
def cli(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cli]:
    """Commands on a fresh queue of each storage; leftover processes killed afterwards."""
    with cli_on(request.param, tmp_path, "console") as commands:
        yield commands


class Console:
    """A running `pyjobqueue console` and plain HTTP requests to it."""

    def __init__(self, running: Running, url: str) -> None:
        self.running = running
        self.url = url
        parts = urllib.parse.urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=WAIT_SECONDS)

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, str]:
        connection = self.connection()
        try:
            data = None if body is None else json.dumps(body)
            connection.request(method, path, body=data, headers=headers or {})
            response = connection.getresponse()
            return response.status, response.read().decode()
        finally:
            connection.close()

    def get_json(self, path: str, headers: dict[str, str] | None = None) -> Any:
        status, text = self.request("GET", path, headers=headers)
        assert status == 200, (path, status, text)
        return json.loads(text)

    def act(self, name: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        path = f"/api/actions/{name}"
        status, text = self.request("POST", path, body, {**ACTION, **(headers or {})})
        return status, json.loads(text) if text.startswith("{") else text


def start(cli: Cli, *args: str) -> Console:
    running = cli.start("console", "--port", "0", "--json", *args)
    line = running.wait_for(lambda line: line.get("event") == "console_start")
    return Console(running, str(line["url"]))


class Stream:
    """The live stream, read event by event."""

    def __init__(self, console: Console, headers: dict[str, str] | None = None) -> None:
        self.connection = console.connection()
        self.connection.request("GET", "/api/events", headers=headers or {})
        self.response = self.connection.getresponse()

    def next_event(self) -> tuple[str, Any]:
        name, data = "", ""
        while True:
            line = self.response.readline().decode()
            assert line, "the stream ended"
            line = line.rstrip("\n")
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
            elif not line and name:
                return name, json.loads(data)

    def wait_for(self, name: str, check: Any = lambda data: True) -> Any:
        while True:
            event, data = self.next_event()
            if event == name and check(data):
                return data

    def close(self) -> None:
        self.connection.close()


@contextlib.contextmanager
def stream(console: Console, headers: dict[str, str] | None = None) -> Iterator[Stream]:
    opened = Stream(console, headers)
    try:
        yield opened
    finally:
        opened.close()


def test_without_the_token_every_route_and_the_stream_are_refused(cli: Cli) -> None:
    console = start(cli, "--token", TOKEN)
    assert console.url.endswith(f"/?token={TOKEN}")
    for path in ("/", "/api/state", "/api/jobs", "/api/events", "/static/view.js"):
        assert console.request("GET", path)[0] == 401, path
        wrong = {"Authorization": "Bearer http-test-token-2"}
        assert console.request("GET", path, headers=wrong)[0] == 401, path
    status, _text = console.request("POST", "/api/actions/pause", {}, ACTION)
    assert status == 401
    assert cli.json("status")["paused"] is False

    bearer = {"Authorization": f"Bearer {TOKEN}"}
    cookie = {"Cookie": f"pyjobqueue_console_token={TOKEN}"}
    assert console.get_json("/api/state", bearer)["queue"] == cli.queue_name
    assert console.get_json("/api/jobs", cookie)["jobs"] == []
    connection = console.connection()
    connection.request("GET", f"/?token={TOKEN}")
    page = connection.getresponse()
    assert page.status == 200 and "pyjobqueue console" in page.read().decode()
    assert f"pyjobqueue_console_token={TOKEN}" in (page.getheader("set-cookie") or "")
    assert "httponly" in (page.getheader("set-cookie") or "").lower()
    connection.close()
    # An action with the token but without the header a cross-site form cannot send.
    assert console.request("POST", "/api/actions/pause", {}, bearer)[0] == 403
    assert console.act("pause", {}, bearer) == (200, {"ok": True, "result": True})
    with stream(console, cookie) as live:
        assert live.response.status == 200
        assert live.wait_for("summary")["paused"] is True


def test_a_loopback_console_without_token_refuses_other_host_names(cli: Cli) -> None:
    console = start(cli)
    assert console.get_json("/api/state")["read_only"] is False
    status, _text = console.request("GET", "/api/state", headers={"Host": "attacker.example"})
    assert status == 403
    # Every name of this machine that --host accepts without a token is served.
    for host in ("127.0.0.2:8080", "[::1]:8080", "[::1]", "LOCALHOST"):
        status, _text = console.request("GET", "/api/state", headers={"Host": host})
        assert status == 200, host


def test_another_address_needs_a_token_of_some_length(cli: Cli) -> None:
    refused = cli.run("console", "--host", "0.0.0.0", "--port", "0")
    assert refused.returncode == 2
    assert "--token" in refused.stderr and refused.stderr.count("\n") == 1
    short = cli.run("console", "--token", "short", "--port", "0")
    assert short.returncode == 2 and "8 characters" in short.stderr
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4")


def test_read_only_refuses_every_action_and_changes_nothing(cli: Cli) -> None:
    [job_id] = [int(line) for line in cli.ok("submit", '"kept"').stdout.split()]
    console = start(cli, "--read-only")
    state = console.get_json("/api/state")
    assert state["read_only"] is True and state["actions"] == []
    for name, body in (
        ("abort", {"id": job_id}),
        ("delete", {"id": job_id}),
        ("disable", {"id": job_id}),
        ("pause", {}),
        ("purge", {"statuses": ["COMPLETED"], "older_than_seconds": 0}),
    ):
        status, answer = console.act(name, body)
        assert status == 403 and "read-only" in answer["error"], name
    assert cli.job(job_id)["status"] == "PENDING"
    assert cli.json("status")["paused"] is False


def test_bad_requests_are_refused_with_a_reason_and_store_nothing(cli: Cli) -> None:
    [job_id] = [int(line) for line in cli.ok("submit", '"pending"').stdout.split()]
    console = start(cli)
    for path, reason in (
        ("/api/jobs?status=lost", "unknown status"),
        ("/api/jobs?limit=0", "limit"),
        ("/api/jobs?limit=501", "limit"),
        ("/api/jobs?before=x", "before"),
        ("/api/jobs?id=-3", "id"),
    ):
        status, text = console.request("GET", path)
        assert status == 400 and reason in json.loads(text)["error"], path
    assert console.act("retry", {"id": job_id})[0] == 409  # pending: nothing to retry
    assert console.act("delete", {"id": job_id + 1000})[0] == 404
    assert console.act("abort", {"id": job_id + 1000})[0] == 404
    assert console.act("nothing", {})[0] == 404
    assert console.act("abort", {"id": "1; DROP TABLE"})[0] == 400
    assert console.act("abort_run", {"run_id": ""})[0] == 400
    for body in (
        {"statuses": ["PENDING"], "older_than_seconds": 0},
        {"statuses": [], "older_than_seconds": 0},
        {"statuses": ["COMPLETED"], "older_than_seconds": -1},
        {"statuses": ["COMPLETED"]},
    ):
        assert console.act("purge", body)[0] == 400, body
    status, _text = console.request("POST", "/api/actions/pause", None, ACTION)
    assert status == 400  # no JSON body
    assert cli.job(job_id)["status"] == "PENDING"
    assert cli.json("status")["paused"] is False


def test_the_stream_brings_new_jobs_progress_and_changes(cli: Cli, tmp_path: Path) -> None:
    console = start(cli)
    gates = tmp_path / "gates"
    gates.mkdir()
    with stream(console) as live:
        assert live.response.getheader("content-type", "").startswith("text/event-stream")
        assert live.wait_for("summary")["counts"]["PENDING"] == 0
        value = json.dumps({"gates": str(gates), "steps": [30]})
        [job_id] = [int(line) for line in cli.ok("submit", value).stdout.split()]
        new = live.wait_for("job", lambda job: job["id"] == job_id)
        assert new["status"] == "PENDING"
        worker = cli.worker("cli_jobs:GatedSteps")
        live.wait_for("job", lambda job: job["id"] == job_id and job["status"] == "PROCESSING")
        (gates / "30").touch()
        step = live.wait_for("progress", lambda data: data["id"] == job_id)
        assert step == {"id": job_id, "progress": 30.0, "message": "passed gate 30"}
        done = live.wait_for(
            "job", lambda job: job["id"] == job_id and job["status"] != "PROCESSING"
        )
        assert done["status"] == "COMPLETED" and done["output"] == {"gates": 1, "attempt": 1}
        summary = live.wait_for("summary", lambda data: data["counts"]["COMPLETED"] == 1)
        assert [server["kinds"] for server in summary["servers"]] == [["GatedSteps"]]
        assert summary["chart"]["failure_rate"] == 0.0
        worker.kill()

        assert console.act("delete", {"id": job_id}) == (200, {"ok": True, "result": None})
        assert live.wait_for("deleted") == {"ids": [job_id]}
    page = console.get_json("/api/jobs")
    assert page == {"jobs": [], "next": None}


def test_sigint_stops_the_console_cleanly_with_a_page_open(cli: Cli) -> None:
    console = start(cli)
    with stream(console) as live:
        live.wait_for("summary")
        console.running.process.send_signal(signal.SIGINT)
        assert console.running.process.wait(WAIT_SECONDS) == 0


def test_the_chart_counts_finished_jobs_per_bucket() -> None:
    start_time = 1_000_000 * BUCKET_SECONDS
    chart = Throughput(started=start_time)
    chart.record("job_complete", start_time + 1)
    chart.record("job_error", start_time + 2)
    chart.record("job_retry", start_time + BUCKET_SECONDS + 1)
    chart.record("job_complete", start_time + BUCKET_SECONDS + 2)
    shown = chart.as_json(start_time + 2 * BUCKET_SECONDS + 1)
    assert shown["buckets"][-3:] == [
        {"completed": 1, "failed": 1, "retried": 0},
        {"completed": 1, "failed": 0, "retried": 1},
        {"completed": 0, "failed": 0, "retried": 0},
    ]
    assert len(shown["buckets"]) == 60
    assert shown["failure_rate"] == pytest.approx(1 / 3)
    assert shown["per_minute"] == pytest.approx(3 * 60 / (2 * BUCKET_SECONDS + 1), abs=0.1)
