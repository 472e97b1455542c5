"""The `pyjobqueue` command, run for real in subprocesses against SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import itertools
import json
import signal
import socket
import sqlite3
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from .cli_apps.harness import POLL, Cli, cli_on, script_command

pytestmark = pytest.mark.slow


@pytest.fixture(params=["sqlite", "postgres"])
def cli(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cli]:
    """Commands on a fresh queue of each storage; leftover processes killed afterwards."""
    with cli_on(request.param, tmp_path, "cli") as commands:
        yield commands


def shown_fields(text: str) -> dict[str, str]:
    """The fields `pyjobqueue show` printed in a pipe: name, then the value (whose further
    lines are indented to line up with the first)."""
    fields: dict[str, str] = {}
    name = ""
    for line in text.splitlines():
        if not line:
            break  # what follows the fields (a traceback) is not one
        if line[0] != " ":
            name, _gap, value = line.partition(" ")
            fields[name] = value.strip()
        else:
            fields[name] += "\n" + line.strip()
    return fields


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
    assert status["paused"] is False
    assert status["counts"] == {
        "PENDING": 2,
        "PROCESSING": 0,
        "COMPLETED": 0,
        "FAILED": 0,
        "ABORTING": 0,
        "DISABLED": 0,
        "WAITING": 0,
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
    assert header.split()[:5] == ["ID", "STATUS", "KIND", "PRIORITY", "PROGRESS"]
    assert len(rows) == 2
    assert rows[0].split()[1:4] == ["PENDING", "-", "0"]
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
    assert retried == {"id": job_id, "retried": True, "status": "PENDING", "unique_key": None}
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


# -- many kinds of jobs on one queue (SPEC 8) -------------------------------------------


def test_one_worker_runs_several_kinds_and_leaves_others_waiting(cli: Cli) -> None:
    worker = cli.worker("cli_jobs:Steps", "cli_jobs:upper")
    assert worker.event("worker_start")["kinds"] == ["Steps", "shout"]
    [other] = submitted_ids(cli, "--kind", "resize", '{"n": 1}')
    assert cli.ok("submit", "--kind", "shout", "--wait", '"hi"').stdout.strip() == '"HI"'
    assert cli.ok("submit", "--kind", "Steps", "--wait", '{"n": 2}').stdout == '{"doubled": 4}\n'
    # A job of no kind runs as the worker's first job class.
    assert cli.ok("submit", "--wait", '{"n": 3}').stdout == '{"doubled": 6}\n'
    # The job of kind "resize" is the oldest: had the worker claimed any kind, it would
    # have run it first. No worker runs its kind, so it waits.
    assert cli.job(other)["status"] == "PENDING"
    assert other not in {line.get("job_id") for line in worker.lines}


def test_submit_stores_the_job_options_and_show_prints_them(cli: Cli) -> None:
    args = ["--kind", "Steps", "--priority", "-7", "--metadata", '{"tenant": "a", "tags": [1]}']
    [job_id] = submitted_ids(cli, *args, "--timeout-ms", "1500", "--unique-key", "sync-42", "{}")
    job = cli.job(job_id)
    assert (job["kind"], job["priority"], job["unique_key"]) == ("Steps", -7, "sync-42")
    assert (job["metadata"], job["timeout_ms"]) == ({"tenant": "a", "tags": [1]}, 1500)
    assert job["error_traceback"] is None
    text = cli.ok("show", str(job_id)).stdout
    fields = shown_fields(text)
    assert (fields["kind"], fields["priority"], fields["unique_key"]) == ("Steps", "-7", "sync-42")
    assert fields["timeout_ms"] == "1500 ms"
    assert json.loads(fields["metadata"]) == {"tenant": "a", "tags": [1]}
    assert "traceback" not in text
    # Without options: no kind, priority 0, no key, {} metadata, no timeout of its own.
    [plain] = submitted_ids(cli, "{}")
    job = cli.job(plain)
    assert (job["kind"], job["priority"], job["unique_key"]) == (None, 0, None)
    assert (job["metadata"], job["timeout_ms"]) == ({}, None)


def test_submit_depends_on_makes_jobs_wait_and_a_worker_runs_them_in_order(cli: Cli) -> None:
    [first] = submitted_ids(cli, '{"n": 1}')
    [second, third] = submitted_ids(cli, '{"n": 2}', '{"n": 3}', "--depends-on", str(first))
    job = cli.job(second)
    assert (job["status"], job["depends_on"], job["dependencies_left"]) == ("WAITING", [first], 1)
    assert cli.json("status")["counts"]["WAITING"] == 2
    assert shown_fields(cli.ok("show", str(third)).stdout)["depends_on"] == str(first)
    bad = cli.run("submit", "--depends-on", "1,x", "{}")
    assert bad.returncode == 2 and "invalid job ids '1,x'" in bad.stderr
    unknown = cli.run("submit", "--depends-on", f"{first},987654", "{}")
    assert unknown.returncode != 0 and "987654" in unknown.stderr
    assert cli.json("status")["total"] == 3  # nothing stored by the refused submits
    worker = cli.worker("cli_jobs:Steps")
    worker.event("job_complete", third)
    assert [cli.job(job_id)["status"] for job_id in (first, second, third)] == ["COMPLETED"] * 3


def test_a_unique_key_stores_one_job_and_says_which(cli: Cli) -> None:
    first = cli.run("submit", "--unique-key", "sync-user-42", '{"n": 1}')
    assert first.returncode == 0, first.stderr
    [job_id] = [int(line) for line in first.stdout.split()]
    assert first.stderr == f"job {job_id}: created with unique key 'sync-user-42'\n"
    again = cli.run("submit", "--unique-key", "sync-user-42", '{"n": 2}')
    assert again.returncode == 0, again.stderr
    # stdout is the id to follow either way; stderr says nothing was stored.
    assert again.stdout == f"{job_id}\n"
    assert again.stderr == (
        f"job {job_id}: already in the queue with unique key 'sync-user-42'; nothing stored\n"
    )
    assert cli.json("submit", "--unique-key", "sync-user-42", "{}") == [
        {"id": job_id, "created": False}
    ]
    [fresh] = cli.json("submit", "--unique-key", "another", "{}")
    assert fresh["created"] is True and fresh["id"] != job_id
    assert cli.json("status")["total"] == 2
    assert cli.job(job_id)["input"] == {"n": 1}


def test_a_unique_key_is_free_again_once_its_job_finished(cli: Cli) -> None:
    worker = cli.worker("cli_jobs:Steps")
    [done] = cli.json("submit", "--unique-key", "k", "--wait", '{"n": 1}')
    assert (done["created"], done["output"]) == (True, {"doubled": 2})
    worker.event("job_complete", done["id"])
    [second] = cli.json("submit", "--unique-key", "k", "--wait", '{"n": 5}')
    assert second["created"] is True and second["id"] != done["id"]
    assert second["output"] == {"doubled": 10}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--priority", "high"], "invalid priority 'high': expected a whole number"),
        (["--priority", "1.5"], "invalid priority '1.5'"),
        (["--priority", str(2**31)], "must be from -2147483648 to 2147483647"),
        (["--priority", str(-(2**31) - 1)], "must be from -2147483648 to 2147483647"),
        (["--unique-key", ""], "invalid unique key '': it must not be empty"),
        (["--unique-key", "k" * 256], "unique key is 256 characters long"),
        (["--metadata", "[1, 2]"], "expected a JSON object"),
        (["--metadata", '"tenant"'], "got a JSON string"),
        (["--metadata", "{tenant"], "invalid metadata: not valid JSON"),
        (["--metadata", '{"x": NaN}'], "NaN is not valid JSON"),
        (["--metadata", '{"a": ' + "[" * 150 + "]" * 150 + "}"], "metadata is nested more than"),
        (["--timeout-ms", "0"], "invalid timeout '0': must be a number of milliseconds greater"),
        (["--timeout-ms", "-5"], "invalid timeout '-5'"),
        (["--timeout-ms", "inf"], "invalid timeout 'inf'"),
        (["--timeout-ms", "soon"], "invalid timeout 'soon': expected a number of milliseconds"),
        (["--kind", ""], "invalid kind ''"),
        (["--unique-key", "k", "{}", "{}"], "--unique-key gives one job its key"),
    ],
)
def test_bad_job_options_exit_2_with_one_line_and_store_nothing(
    cli: Cli, args: list[str], message: str
) -> None:
    inputs = [] if "{}" in args else ["{}"]
    result = cli.run("submit", *args, *inputs)
    assert result.returncode == 2, result
    [line] = result.stderr.splitlines()
    assert line.startswith("pyjobqueue")
    assert message in line
    assert result.stdout == ""
    assert cli.json("status")["total"] == 0


def test_pause_and_resume_say_what_changed(cli: Cli) -> None:
    paused = cli.ok("pause")
    assert paused.stdout.startswith(f"queue {cli.queue_name!r} paused: workers start no job")
    assert "already paused" in cli.ok("pause").stdout
    assert cli.json("pause") == {"queue": cli.queue_name, "paused": True, "changed": False}
    status = cli.ok("status").stdout
    assert status.splitlines()[0].endswith("PAUSED (no job starts until `pyjobqueue resume`)")
    assert cli.json("status")["paused"] is True
    assert (
        cli.ok("resume").stdout == f"queue {cli.queue_name!r} resumed: workers start jobs again\n"
    )
    assert cli.json("resume") == {"queue": cli.queue_name, "paused": False, "changed": False}
    assert "was not paused" in cli.ok("resume").stdout
    assert cli.json("status")["paused"] is False
    assert cli.ok("status").stdout.splitlines()[0].endswith(", not paused")


def test_a_paused_queue_starts_nothing_until_resumed_then_highest_priority_first(
    cli: Cli,
) -> None:
    cli.ok("pause")
    worker = cli.worker("cli_jobs:echo")
    # The worker says why it runs nothing.
    assert "pyjobqueue resume" in worker.event("queue_paused")["message"]
    low = submitted_ids(cli, "--priority", "-1", '"low"')
    normal = submitted_ids(cli, '"normal"', '"normal too"')
    [high] = submitted_ids(cli, "--priority", "10", '"high"')
    listed = cli.json("jobs")
    assert [(job["id"], job["priority"]) for job in listed] == [
        (low[0], -1),
        (normal[0], 0),
        (normal[1], 0),
        (high, 10),
    ]
    assert {job["status"] for job in listed} == {"PENDING"}
    cli.ok("resume")
    worker.event("queue_resumed")
    last = worker.event("job_complete", low[0])
    assert last["output"] == "low"
    started = [line["job_id"] for line in worker.lines if line.get("event") == "job_start"]
    assert started == [high, normal[0], normal[1], low[0]]
    events = worker.events()
    assert events.index("queue_paused") < events.index("job_start")


def test_status_counts_jobs_by_kind(cli: Cli) -> None:
    submitted_ids(cli, "--kind", "Steps", "1", "2")
    submitted_ids(cli, "--kind", "shout", '"a"')
    submitted_ids(cli, "3")
    status = cli.json("status")
    assert status["total"] == 4
    assert status["counts"]["PENDING"] == 4
    zero = {name: 0 for name in status["counts"]}
    assert status["kinds"] == [
        {"kind": "Steps", "counts": {**zero, "PENDING": 2}, "total": 2},
        {"kind": "shout", "counts": {**zero, "PENDING": 1}, "total": 1},
        {"kind": None, "counts": {**zero, "PENDING": 1}, "total": 1},
    ]
    lines = cli.ok("status").stdout.splitlines()
    start = lines.index("jobs by kind")
    assert lines[start + 1].split()[:3] == ["KIND", "PENDING", "PROCESSING"]
    assert lines[start + 1].split()[-1] == "TOTAL"
    table = lines[start + 2 :]
    rows = [line.split() for line in table[: table.index("")]]  # up to the servers' part
    assert [(row[0], row[1], row[-1]) for row in rows] == [
        ("Steps", "2", "2"),
        ("shout", "1", "1"),
        ("-", "1", "1"),
    ]


def test_status_of_an_empty_queue_has_no_kind_table(cli: Cli) -> None:
    assert cli.json("status")["kinds"] == []
    assert "jobs by kind" not in cli.ok("status").stdout


def test_jobs_by_kind_with_kind_and_priority_columns(cli: Cli) -> None:
    steps = submitted_ids(cli, "--kind", "Steps", "--priority", "3", "1", "2")
    [shout] = submitted_ids(cli, "--kind", "shout", '"a"')
    submitted_ids(cli, "--kind", "Steps", "--run-id", "r", "4")
    assert [job["id"] for job in cli.json("jobs", "--kind", "shout")] == [shout]
    assert [job["id"] for job in cli.json("jobs", "--kind", "Steps", "--limit", "2")] == steps
    assert cli.json("jobs", "--kind", "Steps", "--status", "failed") == []
    assert cli.json("jobs", "--kind", "shout", "--run-id", "r") == []
    assert len(cli.json("jobs", "--kind", "Steps", "--run-id", "r")) == 1
    result = cli.ok("jobs", "--kind", "Steps", "--limit", "1")
    header, row = result.stdout.splitlines()
    assert header.split()[:4] == ["ID", "STATUS", "KIND", "PRIORITY"]
    assert row.split()[:4] == [str(steps[0]), "PENDING", "Steps", "3"]
    assert "showing 1 of 3 jobs" in result.stderr


def test_show_prints_the_traceback_of_a_failed_job(cli: Cli) -> None:
    worker = cli.worker("cli_jobs:Fails")
    [job_id] = submitted_ids(cli, '{"message": "no luck"}')
    worker.event("job_error", job_id)
    job = cli.job(job_id)
    assert job["error_traceback"].startswith("Traceback (most recent call last):")
    assert job["error_traceback"].rstrip().endswith("ValueError: no luck")
    text = cli.ok("show", str(job_id)).stdout
    fields, _blank, traceback = text.partition("\n\ntraceback of the last failed attempt:\n")
    assert shown_fields(text)["error_code"] == "ValueError"
    assert "error_traceback" not in fields
    assert traceback.startswith("Traceback (most recent call last):\n")
    assert "in execute\n    raise ValueError(" in traceback
    assert traceback.endswith("ValueError: no luck\n")


def test_show_prints_the_traceback_of_a_job_waiting_for_its_retry(cli: Cli) -> None:
    worker = cli.worker("cli_jobs:Flaky")
    [job_id] = submitted_ids(cli, "{}")
    worker.event("job_retry", job_id)
    job = cli.job(job_id)
    # KeyError is in Flaky.retry_on: tried again in an hour, its traceback kept meanwhile.
    assert (job["status"], job["error_code"], job["run_attempts"]) == ("PENDING", "KeyError", 1)
    text = cli.ok("show", str(job_id)).stdout
    assert text.rstrip().endswith("KeyError: 'zz'")
    assert 'return empty[input.get("key", "zz")]' in text
    # The worker logged it too, at WARNING.
    assert "KeyError: 'zz'" in worker.stderr


def test_retry_is_refused_while_another_job_holds_the_unique_key(cli: Cli) -> None:
    worker = cli.worker("cli_jobs:Fails")
    [failed] = submitted_ids(cli, "--unique-key", "nightly", "{}")
    worker.event("job_error", failed)
    worker.send(signal.SIGTERM)
    assert worker.wait() == 0
    [holder] = submitted_ids(cli, "--unique-key", "nightly", "{}")
    assert holder != failed
    refused = cli.run("retry", str(failed))
    assert refused.returncode == 1
    assert refused.stdout == (
        f"job {failed}: not retried, another unfinished job of the queue holds its unique "
        "key 'nightly' (retry it once that job has finished)\n"
    )
    assert cli.job(failed)["status"] == "FAILED"
    cli.ok("abort", str(holder))
    assert cli.json("retry", str(failed)) == [
        {"id": failed, "retried": True, "status": "PENDING", "unique_key": "nightly"}
    ]


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


# -- inside an application: log levels and metrics (SPEC section 9) ------------------------


def test_worker_log_level_info_and_debug_show_the_server_and_each_job(cli: Cli) -> None:
    worker = cli.worker("cli_jobs:Steps", "--log-level", "debug")
    [job_id] = submitted_ids(cli, '{"n": 2}')
    worker.event("job_complete", job_id)
    worker.send(signal.SIGINT)
    assert worker.wait() == 0
    log = worker.stderr
    assert "INFO pyjobqueue.server: server " in log and " started on queue " in log
    assert f"DEBUG pyjobqueue.worker: job {job_id} (Steps)" in log
    assert "complete after" in log
    assert "stopped: 1 jobs completed" in log


def test_worker_metrics_port_serves_counters_that_move(cli: Cli) -> None:
    pytest.importorskip("prometheus_client")
    port = free_port()
    worker = cli.worker("cli_jobs:Steps", "--metrics-port", str(port))
    [job_id] = submitted_ids(cli, '{"n": 3}')
    worker.event("job_complete", job_id)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as response:
        text = response.read().decode()
    queue = cli.queue_name
    assert f'pyjobqueue_jobs_total{{kind="",outcome="completed",queue="{queue}"}} 1.0' in text
    assert "pyjobqueue_attempt_duration_seconds_count" in text
    worker.send(signal.SIGINT)
    assert worker.wait() == 0


def test_worker_rejects_a_bad_log_level_or_port(cli: Cli) -> None:
    for option in (["--log-level", "loud"], ["--metrics-port", "70000"], ["--metrics-port", "x"]):
        result = cli.run("worker", "cli_jobs:Steps", *option)
        assert result.returncode == 2, result.stderr
        assert len(result.stderr.strip().splitlines()) <= 3


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# -- schedules (SPEC section 8.6) ----------------------------------------------------------


def test_three_worker_processes_run_one_schedule_each_tick_exactly_once(cli: Cli) -> None:
    schedule = ("--schedules", "cli_jobs:SCHEDULES")
    workers = [cli.worker("cli_jobs:Tick", *schedule) for _ in range(3)]
    give_up = time.monotonic() + 60
    ticks: list[datetime] = []
    while len(ticks) < 5 and time.monotonic() < give_up:  # whichever workers ran them
        done = cli.json("jobs", "--status", "completed", "--kind", "tick")
        ticks = [datetime.fromisoformat(job["output"]) for job in done]
    for worker in workers:
        worker.send(signal.SIGINT)
        assert worker.wait() == 0
    ticks = sorted(ticks)
    assert len(ticks) == len(set(ticks)), f"a tick ran twice: {ticks}"
    assert all(b - a == timedelta(seconds=1) for a, b in itertools.pairwise(ticks)), ticks
    [state] = cli.json("schedules")
    assert state["name"] == "every-second" and state["spec"] == {"every_seconds": 1.0}
    assert datetime.fromisoformat(state["last_tick"]) >= ticks[-1]
    text = cli.ok("schedules").stdout
    assert "every-second" in text and "every 1s" in text


def test_status_lists_the_servers_that_are_alive(cli: Cli) -> None:
    assert cli.json("status")["servers"] == []
    assert "no server of this queue is running" in cli.ok("status").stdout
    worker = cli.worker("cli_jobs:Steps", "cli_jobs:Tick", "--workers", "3")
    [server] = cli.json("status")["servers"]
    assert server["kinds"] == ["Steps", "tick"] and server["worker_count"] == 3
    assert server["pid"] == worker.process.pid
    text = cli.ok("status").stdout
    assert "servers alive" in text and "Steps, tick" in text
    worker.send(signal.SIGINT)
    assert worker.wait() == 0
    assert cli.json("status")["servers"] == []  # a stopped server removes its heartbeat
