"""The `pyjobqueue` command: the default setup, bad input, terminals, and its value parsers."""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import re
import shlex
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pyjobqueue.cli._values import (
    parse_duration,
    parse_finished_statuses,
    parse_kind,
    parse_metadata,
    parse_priority,
    parse_rate,
    parse_statuses,
    parse_timeout_ms,
    parse_unique_key,
    redact_url,
)
from pyjobqueue.job import JobStatus

from .backends import postgres_dsn
from .cli_apps.harness import POLL, Cli, run_in_terminal, script_command

needs_sqlite = pytest.mark.skipif(
    importlib.util.find_spec("aiosqlite") is None,
    reason="aiosqlite is not installed (pip install 'pyjobqueue[sqlite]')",
)

ROOT = Path(__file__).resolve().parent.parent
# Documents whose shell example runs as a test: (file, heading of its section).
SHELL_EXAMPLES = [
    ("docs/cli.md", "Two terminals are a complete setup"),
    ("docs/cli.md", "Several kinds of jobs, one worker"),
    ("README.md", "From the shell"),
]


@dataclasses.dataclass
class ShellExample:
    """A documented two-terminal session: app.py, the two commands, the printed output."""

    app: str
    worker: list[str]
    submit: list[str]
    output: list[str]


def shell_example(document: str, heading: str) -> ShellExample:
    """A document section's example: its ```python block and its first ```sh block."""
    text = (ROOT / document).read_text(encoding="utf-8")
    pattern = rf"\n#+ {re.escape(heading)}\n(.*?)(?=\n## |\Z)"
    match = re.search(pattern, text, flags=re.DOTALL)
    if match is None:
        pytest.skip(f"{document} has no section {heading!r}")
    section = match.group(1)
    [app] = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    session = re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL)[0]
    example = ShellExample(app, [], [], [])
    for line in session.splitlines():
        words = shlex.split(line, comments=True)
        if words[:2] == ["pyjobqueue", "worker"]:
            example.worker = words[1:]
        elif words[:2] == ["pyjobqueue", "submit"]:
            example.submit = words[1:]
        elif words and words[0] not in ("pyjobqueue", "pip"):
            example.output.append(line)
    return example


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    """Commands on a fresh SQLite file and queue."""
    commands = Cli(f"sqlite:///{tmp_path / 'jobs.db'}", f"q-{uuid.uuid4().hex[:8]}", tmp_path)
    yield commands
    commands.close()


@pytest.fixture
def bare(tmp_path: Path) -> Iterator[Cli]:
    """Commands with no storage or queue given: the defaults apply."""
    commands = Cli(None, None, tmp_path)
    yield commands
    commands.close()


# -- the two-terminal setup --------------------------------------------------------------


@needs_sqlite
@pytest.mark.slow
@pytest.mark.parametrize(("document", "heading"), SHELL_EXAMPLES)
def test_worker_and_submit_with_defaults_are_a_complete_setup(
    bare: Cli, document: str, heading: str
) -> None:
    """The documented session, as pasted: app.py, a worker, then submit --wait."""
    example = shell_example(document, heading)
    (bare.cwd / "app.py").write_text(example.app)
    command = script_command()
    worker = bare.start(*example.worker, "--json", command=command)
    worker.event("worker_start")
    result = bare.run(*example.submit, command=command)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == example.output
    assert (bare.cwd / "pyjobqueue.db").is_file()
    assert bare.json("status")["queue"] == "default"
    worker.send(signal.SIGTERM)
    assert worker.wait() == 0


# -- bad input: one line, non-zero exit, nothing stored ----------------------------------


def without_colours(text: str) -> str:
    """Terminal output without its ANSI escape sequences."""
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


def one_line_error(result_stderr: str) -> str:
    lines = result_stderr.splitlines()
    assert len(lines) == 1, result_stderr
    return lines[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["status", "--storage", "redis://localhost/0"], "unknown storage url 'redis://"),
        (["status", "--storage", "memory://"], "lives inside one process"),
        (["worker", "no_such_module:Job"], "no module named 'no_such_module'"),
        (["worker", "cli_jobs:Missing"], "module 'cli_jobs' has no attribute 'Missing'"),
        (["worker", "cli_jobs:NotAJob"], "cli_jobs:NotAJob is not a Job class"),
        (["worker", "cli_jobs:NOT_A_JOB"], "got int"),
        (["worker", "cli_jobs"], "must be written module:JobClass"),
        (["worker", "pyjobqueue:Job"], "pyjobqueue.Job itself"),
        (["submit", "{not json"], "invalid JSON in the input"),
        (["submit", '{"x": NaN}'], "NaN is not valid JSON"),
        (["submit", "1", "[2,"], "invalid JSON in input 2"),
        (["show", "1", "--storage", "sqlite:///no/such/dir/jobs.db"], "cannot open storage"),
        (["status", "--storage", "sqlite:///not-a-database.txt"], "cannot open storage"),
    ],
)
def test_bad_input_gets_one_clear_line(cli: Cli, args: list[str], message: str) -> None:
    (cli.cwd / "not-a-database.txt").write_text("plain text, not SQLite\n" * 100)
    result = cli.run(*args)
    assert result.returncode == 1
    line = one_line_error(result.stderr)
    assert line.startswith("pyjobqueue: error: ")
    assert message in line
    assert result.stdout == ""


def test_an_unreachable_database_is_one_line(cli: Cli) -> None:
    if importlib.util.find_spec("asyncpg") is None:
        pytest.skip("asyncpg is not installed (pip install 'pyjobqueue[postgres]')")
    result = cli.run("status", "--storage", "postgresql://someone:secret@127.0.0.1:9/db")
    assert result.returncode == 1
    line = one_line_error(result.stderr)
    assert line.startswith("pyjobqueue: error: cannot open storage postgresql://someone:***@")
    assert "secret" not in line


@pytest.mark.parametrize("command", ["worker", "status"])
def test_a_password_query_parameter_stays_hidden_when_the_database_is_unreachable(
    cli: Cli, command: str
) -> None:
    if importlib.util.find_spec("asyncpg") is None:
        pytest.skip("asyncpg is not installed (pip install 'pyjobqueue[postgres]')")
    url = "postgresql://u@127.0.0.1:1/db?password=secret"
    args = ["worker", "cli_jobs:Steps"] if command == "worker" else ["status"]
    result = cli.run(*args, "--storage", url)
    assert result.returncode == 1
    line = one_line_error(result.stderr)
    shown = "postgresql://u@127.0.0.1:1/db?password=***"
    assert line.startswith(f"pyjobqueue: error: cannot open storage {shown}")
    assert "secret" not in result.stderr + result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("output", ["text", "json"])
def test_the_worker_start_line_hides_a_password_query_parameter(
    tmp_path: Path, output: str
) -> None:
    dsn = postgres_dsn()
    if dsn is None:
        pytest.skip("PYJOBQUEUE_TEST_POSTGRES_DSN is not set (python build.py test sets it)")
    if importlib.util.find_spec("asyncpg") is None:
        pytest.skip("asyncpg is not installed (pip install 'pyjobqueue[postgres]')")
    # The test cluster trusts local connections: the password is sent and ignored.
    url = dsn + ("&" if "?" in dsn else "?") + "password=s3cret-in-query"
    commands = Cli(url, f"q-{uuid.uuid4().hex[:8]}", tmp_path)
    try:
        as_json = ["--json"] if output == "json" else []
        worker = commands.start("worker", "cli_jobs:Steps", *as_json, *POLL)
        start = worker.wait_for(
            lambda line: (
                line.get("event") == "worker_start" or "worker_start" in line.get("text", "")
            )
        )
        shown = json.dumps(start)
        assert "password=***" in shown
        assert "storage=postgresql://" in shown
        worker.send(signal.SIGTERM)
        assert worker.wait() == 0
        assert "s3cret" not in json.dumps(worker.lines) + worker.stderr
    finally:
        commands.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["worker", "cli_jobs:Steps", "--rate", "10"], "invalid rate '10'"),
        (["worker", "cli_jobs:Steps", "--workers", "0"], "must be at least 1"),
        (["worker", "cli_jobs:Steps", "--poll-interval", "0"], "must be greater than 0"),
        (["purge", "--status", "pending", "--older-than", "1h"], "only finished jobs"),
        (["purge", "--status", "failed", "--older-than", "soon"], "invalid duration 'soon'"),
        (["jobs", "--status", "lost"], "unknown status 'lost'"),
        (["show", "x"], "invalid job id 'x'"),
        (["launch"], "invalid choice: 'launch'"),
        (["worker"], "the following arguments are required: module:JobClass"),
        (
            ["worker", "cli_jobs:Steps", "cli_jobs:AlsoSteps"],
            "cli_jobs:Steps and cli_jobs:AlsoSteps have the same kind 'Steps'",
        ),
        (
            ["worker", "cli_jobs:echo", "cli_jobs:Steps", "cli_jobs:echo"],
            "cli_jobs:echo is given twice",
        ),
        (["jobs", "--kind", ""], "invalid kind ''"),
        (["submit", "--priority", "2.0", "{}"], "invalid priority '2.0'"),
        (["submit", "--metadata", "null", "{}"], "got a JSON null"),
        (["pause", "extra"], "unrecognized arguments: extra"),
    ],
)
def test_bad_command_lines_exit_2_with_one_line(cli: Cli, args: list[str], message: str) -> None:
    result = cli.run(*args)
    assert result.returncode == 2
    assert message in one_line_error(result.stderr)


@needs_sqlite
def test_a_bad_line_in_a_batch_stores_nothing(cli: Cli) -> None:
    (cli.cwd / "inputs.jsonl").write_text('{"n": 1}\n{"n": 2}\n{"n": \n')
    result = cli.run("submit", "--file", "inputs.jsonl")
    assert result.returncode == 1
    assert "line 3 of inputs.jsonl" in one_line_error(result.stderr)
    assert cli.json("status")["total"] == 0


@needs_sqlite
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["[" * 150 + "]" * 150], "nested more than 100 levels deep"),
        (['{"n": ' + "9" * 5000 + "}"], "4300 digits"),
        (['{"text": "\\udc80"}'], "lone surrogate"),
        (["{}", "--run-id", "r" * 300], "job_run_id is 300 characters long"),
        (["{}", "--max-retries", str(2**31)], "max_retries must be at most"),
    ],
)
def test_submit_refuses_what_no_storage_can_keep(cli: Cli, args: list[str], message: str) -> None:
    result = cli.run("submit", *args)
    assert result.returncode != 0
    assert message in one_line_error(result.stderr)
    assert cli.json("status")["total"] == 0


def test_submit_with_no_input_says_how_to_give_one(cli: Cli) -> None:
    result = cli.run("submit", stdin="\n\n")
    assert result.returncode == 1
    assert "no input in standard input" in one_line_error(result.stderr)


# -- terminals and pipes -----------------------------------------------------------------


def test_import_pyjobqueue_loads_no_command_line_dependency() -> None:
    code = (
        "import sys, pyjobqueue, pyjobqueue.storage\n"
        "names = ('rich', 'argparse', 'pyjobqueue.cli')\n"
        "loaded = [name for name in names if name in sys.modules]\n"
        "print(loaded)"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert output.strip() == "[]"


@pytest.mark.parametrize("args", [["status"], ["jobs", "--json"]])
def test_pipes_need_no_rich(cli: Cli, args: list[str]) -> None:
    """With output to a pipe, the command never imports rich: plain text or pure JSON."""
    code = (
        "import sys, runpy\n"
        f"sys.argv = ['pyjobqueue', *{args!r}]\n"
        "try:\n"
        "    runpy.run_module('pyjobqueue', run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('rich' in sys.modules, file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cli.cwd,
        env=cli.env(),
        check=False,
    )
    if "--json" in args:
        assert json.loads(result.stdout) == []
    else:
        assert "PENDING" in result.stdout
    assert result.stderr.strip() == "False"


@needs_sqlite
@pytest.mark.slow
def test_submit_wait_shows_live_progress_bars_on_a_terminal(cli: Cli) -> None:
    if importlib.util.find_spec("rich") is None:
        pytest.skip("rich is not installed (pip install 'pyjobqueue[cli]')")
    cli.worker("cli_jobs:Steps")
    args = ["submit", "--wait", '{"n": 1, "steps": [30, 60]}', '{"n": 2, "steps": [90]}']
    returncode, terminal, stdout = run_in_terminal(cli, args, "stderr")
    assert returncode == 0
    assert stdout.splitlines() == ['{"doubled": 2}', '{"doubled": 4}']
    assert "━" in terminal  # rich's bar
    assert "2 jobs" in terminal
    assert "100%" in terminal


@needs_sqlite
def test_tables_use_rich_on_a_terminal(cli: Cli) -> None:
    if importlib.util.find_spec("rich") is None:
        pytest.skip("rich is not installed (pip install 'pyjobqueue[cli]')")
    cli.ok("submit", '{"label": "[bold]not markup[/bold]"}')
    returncode, shown, _stderr = run_in_terminal(cli, ["jobs"], "stdout")
    assert returncode == 0
    terminal = without_colours(shown)
    assert "┃ ID" in terminal
    assert "[bold]not markup" in terminal


def test_version_and_help(cli: Cli) -> None:
    assert cli.ok("--version").stdout.startswith("pyjobqueue ")
    help_text = cli.ok("--help").stdout
    commands = ("worker", "submit", "status", "pause", "resume", "jobs", "show", "abort")
    for command in (*commands, "retry", "purge"):
        assert command in help_text
    submit_help = cli.ok("submit", "--help").stdout
    for option in ("--kind", "--priority", "--unique-key", "--metadata", "--timeout-ms"):
        assert option in submit_help


# -- value parsers -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90.0),
        ("1.5", 1.5),
        ("30s", 30.0),
        ("500ms", 0.5),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("2d", 172800.0),
        ("1w", 604800.0),
        ("1h30m", 5400.0),
        (" 2H ", 7200.0),
        ("0", 0.0),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "-5", "1h30", "5 minutes", "1.h", "ms"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="invalid duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "rate"),
    [("10/60", (10, 60.0)), ("100/1h", (100, 3600.0)), ("5/s", (5, 1.0)), ("3/m", (3, 60.0))],
)
def test_rates(text: str, rate: tuple[int, float]) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["10", "x/60", "0/60", "10/0", "10/soon", "1.5/60"])
def test_bad_rates(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_rate(text)


def test_statuses() -> None:
    assert parse_statuses("failed") == [JobStatus.FAILED]
    assert parse_statuses("Pending, PROCESSING,pending") == [
        JobStatus.PENDING,
        JobStatus.PROCESSING,
    ]
    assert parse_finished_statuses("completed,disabled") == [
        JobStatus.COMPLETED,
        JobStatus.DISABLED,
    ]
    with pytest.raises(argparse.ArgumentTypeError, match="only finished jobs"):
        parse_finished_statuses("completed,aborting")


def test_job_option_values() -> None:
    assert parse_priority("-3") == -3
    assert parse_priority(str(2**31 - 1)) == 2**31 - 1
    assert parse_priority(str(-(2**31))) == -(2**31)
    assert parse_kind("resize") == "resize"
    assert parse_unique_key("sync-user-42") == "sync-user-42"
    assert parse_metadata('{"tenant": "a", "n": [1.5]}') == {"tenant": "a", "n": [1.5]}
    assert parse_metadata("{}") == {}
    assert parse_timeout_ms("1500") == 1500.0
    assert parse_timeout_ms("0.5") == 0.5


@pytest.mark.parametrize(
    ("parse", "text"),
    [
        (parse_priority, "1e3"),
        (parse_priority, str(-(2**31) - 1)),
        (parse_priority, "true"),
        (parse_kind, "a\x00b"),
        (parse_kind, "k" * 256),
        (parse_unique_key, "\udc80"),
        (parse_metadata, "1"),
        (parse_metadata, "true"),
        (parse_metadata, '{"n": Infinity}'),
        (parse_metadata, '{"text": "\\udc80"}'),
        (parse_timeout_ms, "nan"),
        (parse_timeout_ms, "-inf"),
        (parse_timeout_ms, ""),
    ],
)
def test_bad_job_option_values(parse: Callable[[str], object], text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=r"^invalid "):
        parse(text)


def test_passwords_are_hidden_in_messages() -> None:
    assert redact_url("postgresql://me:pw@host/db") == "postgresql://me:***@host/db"
    assert redact_url("postgresql://me@host/db") == "postgresql://me@host/db"
    assert redact_url("sqlite:///jobs.db") == "sqlite:///jobs.db"
