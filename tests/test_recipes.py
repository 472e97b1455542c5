"""docs/recipes.md runs as written: a FastAPI app under its TestClient, a Flask app
submitting through SyncClient with a worker process running the jobs, and the systemd
unit's ExecStart stopped the way systemd stops it."""

from __future__ import annotations

import importlib
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .children import child_environment, signal_once_started

RECIPES = Path(__file__).resolve().parent.parent / "docs" / "recipes.md"


def block(language: str, first_line: str) -> str:
    """The ```language block of docs/recipes.md that starts with `first_line`."""
    text = RECIPES.read_text(encoding="utf-8")
    for code in re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL):
        if code.startswith(first_line):
            return str(code)
    raise AssertionError(f"no {language} block starting with {first_line!r}")


@pytest.fixture
def app_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory on the import path, with JOBS_URL on a SQLite file in it."""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("JOBS_URL", f"sqlite:///{tmp_path / 'jobs.db'}")
    yield tmp_path
    for name in ("fastapi_app", "flask_app", "emails"):
        sys.modules.pop(name, None)


def test_the_fastapi_lifespan_runs_the_server(app_dir: Path) -> None:
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    (app_dir / "fastapi_app.py").write_text(block("python", "# fastapi_app.py"))
    fastapi_app: Any = importlib.import_module("fastapi_app")

    with TestClient(fastapi_app.app) as http:
        job = http.post("/thumbnails", params={"path": "cat.jpg"}).json()["job"]
        deadline = time.monotonic() + 30
        while True:
            answer = http.get(f"/thumbnails/{job}").json()
            if answer["status"] == "COMPLETED" or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        assert answer == {"status": "COMPLETED", "output": {"thumbnail": "cat.jpg.thumb.png"}}
        assert http.get("/thumbnails/999").json() == {"status": "unknown"}
    assert not fastapi_app.server.is_running()  # stopped with the app


EMAILS = """
from pyjobqueue import Job, JobContext


class SendEmail(Job[dict, str]):
    kind = "send_email"

    async def execute(self, input: dict, context: JobContext) -> str:
        return f"welcome sent to {input['to']}"
"""


def test_the_flask_app_submits_through_sync_client(app_dir: Path) -> None:
    pytest.importorskip("flask")
    (app_dir / "flask_app.py").write_text(block("python", "# flask_app.py"))
    (app_dir / "emails.py").write_text(EMAILS)
    flask_app: Any = importlib.import_module("flask_app")

    http = flask_app.app.test_client()
    first = http.post("/signup/ada")
    again = http.post("/signup/ada")  # the form sent twice: one email
    assert first.status_code == again.status_code == 202
    job_id = first.get_json()["job"]
    assert again.get_json()["job"] == job_id
    worker = subprocess.Popen(
        [sys.executable, "-m", "pyjobqueue", "worker", "emails:SendEmail", "--queue", "emails"],
        cwd=app_dir,
        env={**child_environment(), "PYJOBQUEUE_STORAGE": os.environ["JOBS_URL"]},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert flask_app.jobs.wait_for(job_id, timeout=30) == "welcome sent to ada"
        assert http.get(f"/jobs/{job_id}").get_json() == {"status": "COMPLETED"}
    finally:
        worker.send_signal(signal.SIGTERM)
        _out, err = worker.communicate(timeout=30)
        flask_app.jobs.close()
    assert worker.returncode == 0, err


def unit_settings(unit: str) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in unit.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings


def test_the_systemd_unit_starts_a_worker_that_stops_cleanly_on_sigterm(
    tmp_path: Path,
) -> None:
    unit = unit_settings(block("ini", "# /etc/systemd/system/pyjobqueue-images.service"))
    assert unit["KillSignal"] == ["SIGTERM"]
    assert float(unit["TimeoutStopSec"][0]) > 30  # more than --stop-timeout
    command = shlex.split(unit["ExecStart"][0])
    assert command[0].endswith("/pyjobqueue") and command[1] == "worker"
    environment: dict[str, Any] = dict(child_environment())
    for assignment in unit["Environment"]:
        key, value = assignment.split("=", 1)
        environment[key] = value.replace("/srv/app", str(tmp_path))
    (tmp_path / "app.py").write_text(
        "from pyjobqueue import Job\n\n"
        "class Resize(Job[dict, dict]):\n"
        "    async def execute(self, input, context):\n"
        "        return {'width': input['width'] // 2}\n"
    )
    # --log-level info: the server says it started.
    code, out, err = signal_once_started(
        [sys.executable, "-m", "pyjobqueue", *command[1:]],
        "started on queue 'images'",
        signal.SIGTERM,
        40,
        cwd=tmp_path,
        env=environment,
    )
    assert code == 0, err
    assert "worker_stop" in out or "stopped" in out
