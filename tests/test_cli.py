"""The `pyjobqueue` command, run for real in subprocesses against SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import importlib.util
import signal
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from .backends import postgres_dsn
from .cli_apps.harness import POLL, Cli, script_command

pytestmark = pytest.mark.slow


@pytest.fixture(params=["sqlite", "postgres"])
def cli(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cli]:
    """Commands on a fresh queue of each storage; leftover processes killed afterwards."""
    queue_name = f"cli-{uuid.uuid4().hex[:12]}"
    if request.param == "sqlite":
        if importlib.util.find_spec("aiosqlite") is None:
            pytest.skip("aiosqlite is not installed (pip install 'pyjobqueue[sqlite]')")
        url = f"sqlite:///{tmp_path / 'jobs.db'}"
    else:
        dsn = postgres_dsn()
        if dsn is None:
            pytest.skip("PYJOBQUEUE_TEST_POSTGRES_DSN is not set (python build.py test sets it)")
        if importlib.util.find_spec("asyncpg") is None:
            pytest.skip("asyncpg is not installed (pip install 'pyjobqueue[postgres]')")
        url = dsn
    commands = Cli(url, queue_name, tmp_path)
    yield commands
    commands.close()


def submitted_ids(cli: Cli, *args: str, stdin: str | None = None) -> list[int]:
    """Submit without waiting; the ids printed, one per line."""
    result = cli.ok("submit", *args, stdin=stdin)
    return [int(line) for line in result.stdout.split()]


# -- worker and submit -------------------------------------------------------------------


def test_shell_worker_runs_jobs_submitted_from_the_shell(cli: Cli) -> None:
    worker = cli.worker("cli_jobs:Steps", "--workers", "2")
    result = cli.ok("submit", "--wait", '{"n": 21, "steps": [25, 50, 75]}')
    assert result.stdout.strip() == '{"doubled": 42}'
    # Progress travelled from the worker process through the storage to the submitter.
    assert "50% at 50" in result.stderr
    job_id = worker.event("job_complete")["job_id"]
    assert worker.event("job_progress", job_id)["progress"] == 25
    assert cli.job(job_id)["status"] == "COMPLETED"


def test_submit_wait_json_reports_each_job(cli: Cli) -> None:
    cli.worker("cli_jobs:Steps")
    results = cli.json("submit", "--wait", '{"n": 1}', '{"n": 2}', '{"n": 3}')
    assert [result["output"] for result in results] == [
        {"doubled": 2},
        {"doubled": 4},
        {"doubled": 6},
    ]
    assert all(result["status"] == "COMPLETED" for result in results)
    assert len({result["id"] for result in results}) == 3


def test_submit_wait_exits_3_and_reports_a_failed_job(cli: Cli) -> None:
    cli.worker("cli_jobs:Fails")
    result = cli.run("submit", "--wait", "--json", '{"message": "no luck"}')
    assert result.returncode == 3
    [failed] = result.json()
    assert failed["status"] == "FAILED"
    assert failed["error"] == "no luck"
    assert failed["error_code"] == "ValueError"


def test_submit_reads_one_json_per_line_in_one_batch(cli: Cli) -> None:
    ids = submitted_ids(cli, "--run-id", "from-stdin", stdin='{"n": 1}\n\n[1, 2]\n"text"\n')
    assert len(ids) == 3
    jobs = cli.json("jobs", "--run-id", "from-stdin")
    assert [job["input"] for job in jobs] == [{"n": 1}, [1, 2], "text"]
    (cli.cwd / "inputs.jsonl").write_text('{"a": 1}\n{"a": 2}\n')
    assert len(submitted_ids(cli, "--file", "inputs.jsonl")) == 2
    assert cli.json("status")["counts"]["PENDING"] == 5


def test_a_function_job_runs_too(cli: Cli) -> None:
    cli.worker("cli_jobs:echo")
    assert cli.ok("submit", "--wait", '["any", "json"]').stdout.strip() == '["any", "json"]'


def test_rate_limits_job_starts(cli: Cli) -> None:
    worker = cli.worker("cli_jobs:echo", "--workers", "3", "--rate", "2/1h")
    ids = submitted_ids(cli, "1", "2", "3")
    completed = {worker.event("job_complete", job_id)["job_id"] for job_id in ids[:2]}
    assert completed == set(ids[:2])
    # Two starts fill the hour's window: the third job waits for the next one.
    assert cli.job(ids[2])["status"] == "PENDING"


# -- stopping ----------------------------------------------------------------------------


def test_sigterm_lets_the_running_job_finish(cli: Cli) -> None:
    gate = cli.cwd / "gate-open"
    worker = cli.worker("cli_jobs:Gated", "--stop-timeout", "1h")
    [job_id] = submitted_ids(cli, f'{{"gate": "{gate}"}}')
    worker.event("job_progress", job_id)
    worker.send(signal.SIGTERM)
    worker.event("worker_stopping")
    gate.touch()
    assert worker.wait() == 0
    events = worker.events()
    assert events.index("job_complete") < events.index("worker_stop")
    job = cli.job(job_id)
    assert job["status"] == "COMPLETED"
    assert job["output"] == {"gate": "opened", "attempt": 1}


def test_stop_timeout_0_puts_running_jobs_back_at_once(cli: Cli) -> None:
    worker = cli.worker("cli_jobs:Gated", "--stop-timeout", "0")
    [job_id] = submitted_ids(cli, f'{{"gate": "{cli.cwd / "never"}"}}')
    worker.event("job_progress", job_id)
    worker.send(signal.SIGTERM)
    assert worker.wait() == 0
    job = cli.job(job_id)
    # Stopped by the worker, not failed: back in the queue, the attempt given back.
    assert (job["status"], job["run_attempts"], job["error_code"]) == ("PENDING", 0, None)


def test_sigint_stops_an_idle_worker_cleanly(cli: Cli) -> None:
    worker = cli.worker("cli_jobs:Steps")
    worker.send(signal.SIGINT)
    assert worker.wait() == 0
    assert worker.events()[-2:] == ["worker_stopping", "worker_stop"]


def test_a_second_signal_exits_at_once_and_the_job_runs_again_later(cli: Cli) -> None:
    gate = cli.cwd / "gate-open"
    worker = cli.worker("cli_jobs:Gated", "--stop-timeout", "1h", "--lease", "1s")
    [job_id] = submitted_ids(cli, f'{{"gate": "{gate}"}}')
    worker.event("job_progress", job_id)
    worker.send(signal.SIGTERM)
    worker.event("worker_stopping")
    worker.send(signal.SIGTERM)
    assert worker.wait() == 128 + signal.SIGTERM
    assert worker.events()[-1] == "worker_exit"
    # The job went back to the queue at once, without being charged an attempt.
    job = cli.job(job_id)
    assert (job["status"], job["run_attempts"]) == ("PENDING", 0)
    gate.touch()
    successor = cli.worker("cli_jobs:Gated")
    assert successor.event("job_complete", job_id)["output"] == {"gate": "opened", "attempt": 1}


# -- inspecting and acting on jobs -------------------------------------------------------


def test_status_jobs_and_show_print_json(cli: Cli) -> None:
    ids = submitted_ids(cli, '{"n": 1}', '{"n": 2}', "--run-id", "batch")
    status = cli.json("status")
    assert status["counts"] == {
        "PENDING": 2,
        "PROCESSING": 0,
        "COMPLETED": 0,
        "FAILED": 0,
        "ABORTING": 0,
        "DISABLED": 0,
    }
    assert status["total"] == 2
    assert status["queue"] == cli.queue_name
    assert [job["id"] for job in cli.json("jobs")] == ids
    assert [job["id"] for job in cli.json("jobs", "--status", "pending")] == ids
    assert cli.json("jobs", "--status", "failed,completed") == []
    assert [job["id"] for job in cli.json("jobs", "--run-id", "batch", "--limit", "1")] == ids[:1]
    shown = cli.job(ids[1])
    assert shown["input"] == {"n": 2}
    assert shown["job_run_id"] == "batch"
    assert shown["created_at"].endswith("+00:00")


def test_jobs_table_reads_well_and_says_when_it_is_cut(cli: Cli) -> None:
    submitted_ids(cli, '{"n": 1}', '{"n": 2}', '{"n": 3}')
    result = cli.ok("jobs", "--limit", "2")
    header, *rows = result.stdout.splitlines()
    assert header.split()[:3] == ["ID", "STATUS", "PROGRESS"]
    assert len(rows) == 2
    assert rows[0].split()[1] == "PENDING"
    assert "showing 2 of 3 jobs" in result.stderr
    assert "PENDING" in cli.ok("status").stdout


def test_jobs_and_show_list_a_job_whose_input_cannot_be_read(cli: Cli) -> None:
    url = cli.storage_url or ""
    if not url.startswith("sqlite:///"):
        pytest.skip("the row is spoiled through the sqlite3 module")
    ids = submitted_ids(cli, '{"n": 1}', '{"n": 2}')
    spoiled = '{"n": ' + "7" * 5000 + "}"  # more digits than Python reads by default
    connection = sqlite3.connect(url[len("sqlite:///") :])
    with contextlib.closing(connection), connection:
        connection.execute("UPDATE pyjobqueue_jobs SET input = ? WHERE id = ?", (spoiled, ids[0]))
    rows = cli.ok("jobs").stdout.splitlines()[1:]
    assert len(rows) == 2 and "stored input cannot be read" in rows[0]
    shown = cli.job(ids[0])
    assert shown["input"] is None and "stored input cannot be read" in shown["unreadable"]
    assert cli.job(ids[1])["input"] == {"n": 2}


def test_abort_pending_jobs_by_id_and_by_run(cli: Cli) -> None:
    [first] = submitted_ids(cli, "1")
    run = submitted_ids(cli, "2", "3", "--run-id", "doomed")
    [aborted] = cli.json("abort", str(first))
    assert aborted == {"id": first, "result": "aborted", "status": "FAILED"}
    assert cli.job(first)["error_code"] == "AbortSignalJobError"
    by_run = cli.json("abort", "--run-id", "doomed")
    assert [(item["id"], item["status"]) for item in by_run] == [
        (run[0], "FAILED"),
        (run[1], "FAILED"),
    ]
    again = cli.ok("abort", str(first))
    assert "nothing to abort" in again.stdout


def test_abort_reaches_a_job_running_in_a_worker(cli: Cli) -> None:
    worker = cli.worker("cli_jobs:Gated")
    [job_id] = submitted_ids(cli, f'{{"gate": "{cli.cwd / "never"}"}}')
    worker.event("job_progress", job_id)
    cli.ok("abort", str(job_id))
    assert worker.event("job_error", job_id)["error"].startswith("aborted")
    assert cli.job(job_id)["error_code"] == "AbortSignalJobError"


def test_retry_requeues_a_failed_job_and_refuses_others(cli: Cli) -> None:
    worker = cli.worker("cli_jobs:Fails")
    [job_id] = submitted_ids(cli, "{}")
    worker.event("job_error", job_id)
    worker.send(signal.SIGTERM)
    assert worker.wait() == 0
    [retried] = cli.json("retry", str(job_id))
    assert retried == {"id": job_id, "retried": True, "status": "PENDING"}
    job = cli.job(job_id)
    assert (job["status"], job["run_attempts"], job["error"]) == ("PENDING", 0, None)
    refused = cli.run("retry", str(job_id))
    assert refused.returncode == 1
    assert "only FAILED or DISABLED" in refused.stdout


def test_purge_deletes_finished_jobs_older_than_the_cutoff(cli: Cli) -> None:
    worker = cli.worker("cli_jobs:echo")
    ids = submitted_ids(cli, "1", "2")
    for job_id in ids:
        worker.event("job_complete", job_id)
    [pending] = submitted_ids(cli, "3", "--delay", "1h")
    kept = cli.json("purge", "--status", "completed", "--older-than", "1h")
    assert kept["deleted"] == {"COMPLETED": 0}
    purged = cli.json("purge", "--status", "completed,failed", "--older-than", "0")
    assert purged["deleted"] == {"COMPLETED": 2, "FAILED": 0}
    assert [job["id"] for job in cli.json("jobs")] == [pending]


def test_unknown_ids_and_runs_are_one_line_errors(cli: Cli) -> None:
    for args in (["show", "999999"], ["abort", "999999"], ["retry", "999999"]):
        result = cli.run(*args)
        assert result.returncode == 1
        assert result.stderr == f"pyjobqueue: error: no job 999999 in queue {cli.queue_name!r}\n"
    result = cli.run("abort", "--run-id", "no-such-run")
    assert result.returncode == 1
    assert "no jobs with run id 'no-such-run'" in result.stderr


# -- the installed script ----------------------------------------------------------------


def test_installed_script_runs_the_same_commands(cli: Cli) -> None:
    command = script_command()
    if command is None:
        pytest.skip("the pyjobqueue script is not installed (pip install -e .)")
    worker = cli.start("worker", "cli_jobs:Steps", "--json", *POLL, command=command)
    worker.event("worker_start")
    result = cli.run("submit", "--wait", '{"n": 4}', command=command)
    assert (result.returncode, result.stdout.strip()) == (0, '{"doubled": 8}')
    worker.send(signal.SIGTERM)
    assert worker.wait() == 0
