"""The `pyjobqueue` command: argument parsing, dispatch, one-line errors and exit statuses."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import NoReturn

from .. import __version__
from .._retry import one_line
from ..errors import StorageError
from ._console import run_console
from ._inspect import (
    run_abort,
    run_jobs,
    run_pause,
    run_purge,
    run_resume,
    run_retry,
    run_schedules,
    run_show,
    run_status,
)
from ._submit import run_submit
from ._target import DEFAULT_QUEUE, QUEUE_VARIABLE, STORAGE_VARIABLE
from ._values import (
    CliError,
    parse_console_port,
    parse_count,
    parse_duration,
    parse_finished_statuses,
    parse_job_id,
    parse_job_ids,
    parse_kind,
    parse_metadata,
    parse_port,
    parse_positive_duration,
    parse_positive_int,
    parse_priority,
    parse_rate,
    parse_statuses,
    parse_timeout_ms,
    parse_unique_key,
)
from ._worker import run_worker

TRACEBACK_VARIABLE = "PYJOBQUEUE_TRACEBACK"
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
Command = Callable[[argparse.Namespace], Awaitable[int]]

DESCRIPTION = """\
Run and inspect a pyjobqueue queue from the shell.

  pyjobqueue worker app:MyJob            # terminal 1: run jobs until Ctrl-C
  pyjobqueue submit --wait '{"n": 1}'    # terminal 2: submit a job, show its progress

  pyjobqueue worker app:Resize app:SendEmail     # one worker, several kinds of jobs
  pyjobqueue submit --kind SendEmail '{"to": "a@example.com"}'

The storage defaults to the SQLite file ./pyjobqueue.db and the queue to "default".
"""

EPILOG = f"""\
environment: {STORAGE_VARIABLE} and {QUEUE_VARIABLE} give --storage and --queue defaults.
exit status: 0 ok, 1 error, 2 bad command line, 3 a waited-for job did not complete,
130 interrupted."""


class Parser(argparse.ArgumentParser):
    """argparse with errors as one line (no usage dump) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# The levels `worker --log-level` takes.
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _common(parser: argparse.ArgumentParser) -> None:
    """--storage, --queue and --json: every command has them."""
    parser.add_argument(
        "--storage",
        "-s",
        metavar="URL",
        help="sqlite:///path.db, postgresql://user@host/db "
        f"(default: ${STORAGE_VARIABLE}, else sqlite:///pyjobqueue.db)",
    )
    parser.add_argument(
        "--queue",
        "-q",
        metavar="NAME",
        help=f"queue name (default: ${QUEUE_VARIABLE}, else {DEFAULT_QUEUE!r})",
    )
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")


def _add(
    commands: argparse._SubParsersAction[Parser], name: str, command: Command, help: str
) -> Parser:
    parser = commands.add_parser(name, help=help, description=help)
    _common(parser)
    parser.set_defaults(command=command)
    return parser


def _worker_parser(commands: argparse._SubParsersAction[Parser]) -> None:
    parser = _add(commands, "worker", run_worker, "run jobs until SIGINT/SIGTERM")
    parser.add_argument(
        "jobs",
        nargs="+",
        metavar="module:JobClass",
        help="the Job classes to run, one per kind; a job submitted without --kind "
        "runs as the first",
    )
    parser.add_argument(
        "--workers",
        "-w",
        type=parse_positive_int,
        metavar="N",
        help="workers in this process, each running one job at a time "
        "(default: --concurrency, else 1)",
    )
    parser.add_argument(
        "--concurrency",
        "-c",
        type=parse_positive_int,
        metavar="N",
        help="at most N jobs of this process run at once",
    )
    parser.add_argument(
        "--rate",
        type=parse_rate,
        metavar="N/SECONDS",
        help="at most N job starts per window, shared by every worker on the storage "
        "(10/60, 100/1h, 5/s)",
    )
    parser.add_argument(
        "--stop-timeout",
        type=parse_duration,
        default=10.0,
        metavar="DURATION",
        help="on SIGINT/SIGTERM, how long running jobs may take to finish (default 10s)",
    )
    parser.add_argument(
        "--poll-interval",
        type=parse_positive_duration,
        default=0.1,
        metavar="DURATION",
        help="how often to look for jobs when idle (default 100ms)",
    )
    parser.add_argument(
        "--lease",
        type=parse_positive_duration,
        default=30.0,
        metavar="DURATION",
        help="how long a job of a dead worker stays claimed before it is retried (default 30s)",
    )
    parser.add_argument(
        "--schedules",
        metavar="module:name",
        help="a list of pyjobqueue.Schedule to run (each tick is enqueued once, however "
        "many workers run it)",
    )
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        default="WARNING",
        metavar="LEVEL",
        help="what the library logs on stderr: debug (each job's start and end), info "
        "(the server starting and stopping), warning (failed attempts with their "
        "tracebacks; the default), error",
    )
    parser.add_argument(
        "--metrics-port",
        type=parse_port,
        metavar="PORT",
        help="serve Prometheus metrics on this port (needs pyjobqueue[prometheus])",
    )
    parser.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        metavar="HOST",
        help="the address the metrics are served on (default 127.0.0.1)",
    )


def _submit_parser(commands: argparse._SubParsersAction[Parser]) -> None:
    parser = _add(commands, "submit", run_submit, "submit jobs (JSON inputs) in one batch")
    parser.add_argument(
        "inputs",
        nargs="*",
        metavar="JSON",
        help="job inputs; without them, one JSON per line from --file or stdin",
    )
    parser.add_argument(
        "--file", "-f", metavar="FILE", help="read one JSON input per line ('-' for stdin)"
    )
    parser.add_argument(
        "--wait", action="store_true", help="show progress until the jobs end; print outputs"
    )
    parser.add_argument(
        "--timeout",
        type=parse_positive_duration,
        metavar="DURATION",
        help="with --wait: give up after this long",
    )
    parser.add_argument(
        "--quiet", action="store_true", help="with --wait: no progress, only the outputs"
    )
    parser.add_argument("--run-id", metavar="RUN", help="job_run_id of the batch")
    parser.add_argument(
        "--max-retries", type=parse_count, default=10, metavar="N", help="default 10"
    )
    parser.add_argument(
        "--delay", type=parse_duration, metavar="DURATION", help="run no sooner than this from now"
    )
    parser.add_argument(
        "--deadline", type=parse_duration, metavar="DURATION", help="fail if not done by then"
    )
    parser.add_argument(
        "--kind",
        "-k",
        type=parse_kind,
        metavar="NAME",
        help="the kind of job class that runs them (default: a worker's first class)",
    )
    parser.add_argument(
        "--priority",
        type=parse_priority,
        default=0,
        metavar="N",
        help="higher runs first (default 0; -2147483648 to 2147483647)",
    )
    parser.add_argument(
        "--unique-key",
        type=parse_unique_key,
        metavar="KEY",
        help="store the job only if no unfinished job of the queue has this key; "
        "else print that job's id (one input only)",
    )
    parser.add_argument(
        "--metadata",
        type=parse_metadata,
        metavar="JSON",
        help="a JSON object kept with each job (tags, tenant, trace ids)",
    )
    parser.add_argument(
        "--timeout-ms",
        type=parse_timeout_ms,
        metavar="MS",
        help="an attempt still running after MS milliseconds is stopped and retried "
        "(default: the job class's timeout_ms)",
    )
    parser.add_argument(
        "--depends-on",
        type=parse_job_ids,
        metavar="IDS",
        help="comma-separated ids of jobs of the queue: the jobs wait (WAITING) until all "
        "of them completed, and fail if one of them fails",
    )
    parser.add_argument(
        "--poll-interval",
        type=parse_positive_duration,
        default=0.1,
        metavar="DURATION",
        help=argparse.SUPPRESS,
    )


def _inspect_parsers(commands: argparse._SubParsersAction[Parser]) -> None:
    _add(commands, "status", run_status, "whether the queue is paused; its jobs by status and kind")
    _add(commands, "pause", run_pause, "stop every worker of the queue from starting jobs")
    _add(commands, "resume", run_resume, "let the workers of the queue start jobs again")
    _add(commands, "schedules", run_schedules, "the queue's schedules: last and next tick")
    jobs = _add(commands, "jobs", run_jobs, "list jobs")
    jobs.add_argument("--status", type=parse_statuses, metavar="S[,S]", help="only these statuses")
    jobs.add_argument("--kind", "-k", type=parse_kind, metavar="NAME", help="only this kind")
    jobs.add_argument("--run-id", metavar="RUN", help="only the jobs of this run")
    jobs.add_argument(
        "--limit", type=parse_positive_int, default=50, metavar="N", help="default 50"
    )
    show = _add(commands, "show", run_show, "show every field of a job")
    show.add_argument("id", type=parse_job_id)
    abort = _add(commands, "abort", run_abort, "abort jobs, or every unfinished job of a run")
    abort.add_argument("ids", type=parse_job_id, nargs="*", metavar="ID")
    abort.add_argument("--run-id", metavar="RUN")
    retry = _add(commands, "retry", run_retry, "run FAILED or DISABLED jobs again")
    retry.add_argument("ids", type=parse_job_id, nargs="+", metavar="ID")
    purge = _add(commands, "purge", run_purge, "delete finished jobs")
    purge.add_argument(
        "--status",
        type=parse_finished_statuses,
        required=True,
        metavar="S[,S]",
        help="completed, failed and/or disabled",
    )
    purge.add_argument(
        "--older-than",
        type=parse_duration,
        required=True,
        metavar="DURATION",
        help="finished at least this long ago (0 for all)",
    )


def _console_parser(commands: argparse._SubParsersAction[Parser]) -> None:
    parser = _add(commands, "console", run_console, "serve the queue's live console in the browser")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        metavar="HOST",
        help="the address to listen on (default 127.0.0.1; any other needs --token)",
    )
    parser.add_argument(
        "--port",
        type=parse_console_port,
        default=8080,
        metavar="PORT",
        help="the port (default 8080; 0 picks a free one)",
    )
    parser.add_argument(
        "--read-only", action="store_true", help="show the queue, refuse every action"
    )
    parser.add_argument(
        "--token",
        metavar="TOKEN",
        help="every request must carry it (the printed URL does; default "
        "$PYJOBQUEUE_CONSOLE_TOKEN)",
    )


def build_parser() -> Parser:
    """The parser of every command."""
    parser = Parser(
        prog="pyjobqueue",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"pyjobqueue {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", parser_class=Parser)
    commands.required = True
    _worker_parser(commands)
    _submit_parser(commands)
    _inspect_parsers(commands)
    _console_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; the exit status."""
    args = build_parser().parse_args(argv)
    # The library logs failures it recovers from (a lost connection, a failing listener).
    level = getattr(args, "log_level", "WARNING")
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("pyjobqueue").setLevel(level)
    try:
        status: int = asyncio.run(args.command(args))
        return status
    except CliError as error:
        print(f"pyjobqueue: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("pyjobqueue: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `pyjobqueue jobs | head`: the reader left; that is not an error.
        sys.stderr.close()
        return 0
    except StorageError as error:
        # The storage says what is wrong, naming it, in one line.
        if os.environ.get(TRACEBACK_VARIABLE):
            raise
        print(f"pyjobqueue: error: {one_line(error)}", file=sys.stderr)
        return 1
    except Exception as error:
        # A storage failing mid-command (a dropped connection, a locked file): one
        # line, like every other error; the traceback on request.
        if os.environ.get(TRACEBACK_VARIABLE):
            raise
        text = str(error).strip()
        detail = f"{type(error).__name__}: {text}" if text else type(error).__name__
        print(
            f"pyjobqueue: error: {detail} (set {TRACEBACK_VARIABLE}=1 for the traceback)",
            file=sys.stderr,
        )
        return 1
