"""The README's examples run as pasted."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from .children import child_environment, signal_once_started

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks(section: str) -> list[str]:
    """The ```python blocks under the README heading `section`."""
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n## {section}\n")
    end = text.find("\n## ", start + 1)
    body = text[start : end if end != -1 else len(text)]
    return re.findall(r"```python\n(.*?)```", body, flags=re.DOTALL)


def run_program(tmp_path: Path, name: str, code: str) -> str:
    """Run `code` as a script in a fresh interpreter; what it printed (it must succeed)."""
    script = tmp_path / name
    script.write_text(code, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_quick_start_prints_the_word_count(tmp_path: Path) -> None:
    (code,) = python_blocks("Quick start")
    assert 10 <= len(code.strip().splitlines()) <= 25
    assert run_program(tmp_path, "quick_start.py", code) == "{'words': 4}"


def test_the_many_kinds_quick_start_runs_both_kinds(tmp_path: Path) -> None:
    (code,) = python_blocks("Many kinds of jobs on one queue")
    output = run_program(tmp_path, "kinds.py", code)
    assert output == "{'width': 320} sent to ada@example.com"


def test_concept_examples_run_together(tmp_path: Path) -> None:
    quick_start, *_ = python_blocks("Quick start")
    examples = python_blocks("Concepts")
    # The concept snippets build on the quick start's names (storage, CountWords, Job...).
    program = quick_start.replace("asyncio.run(main())", "")
    program += "storage = InMemoryQueueStorage('words')\n" + "\n".join(examples)
    program += "\nprint('examples ok')\n"
    assert run_program(tmp_path, "concepts.py", program) == "examples ok"


def test_the_safe_retry_of_a_submit_runs(tmp_path: Path) -> None:
    (retry,) = [block for block in python_blocks("Reference") if "invoice_id" in block]
    body = "\n".join(f"    {line}" for line in retry.splitlines())
    # The first submit stores its job, then loses the answer (as in an outage).
    program = (
        "import asyncio\n"
        "from pyjobqueue import JobQueueClient\n"
        "from pyjobqueue.storage import InMemoryQueueStorage\n\n"
        "class LostAnswer(InMemoryQueueStorage):\n"
        "    lost = False\n"
        "    async def add_jobs(self, jobs, connection=None):\n"
        "        added = await super().add_jobs(jobs, connection)\n"
        "        if not self.lost:\n"
        "            self.lost = True\n"
        "            raise ConnectionResetError('the answer of the commit was lost')\n"
        "        return added\n\n"
        "async def main() -> None:\n"
        "    storage = LostAnswer('invoices')\n"
        "    client = JobQueueClient(storage=storage)\n"
        "    invoice_id = 7\n"
        f"{body}\n"
        "    print([job.input for job in await client.get_jobs_by_run_id(key)])\n\n"
        "asyncio.run(main())\n"
    )
    assert run_program(tmp_path, "safe_retry.py", program) == "[{'invoice': 7}]"


def test_the_embedded_server_serves_until_sigterm(tmp_path: Path) -> None:
    (code,) = python_blocks("Inside an application")
    script = tmp_path / "embedded.py"
    script.write_text(code, encoding="utf-8")
    # It logs when it has started.
    exit_code, _out, rest = signal_once_started(
        [sys.executable, str(script)], "started on queue 'images'", signal.SIGTERM, 60, cwd=tmp_path
    )
    assert exit_code == 0, rest
    assert "of queue 'images' stopped" in rest


def test_the_workflow_fans_out_and_in_on_sqlite_and_postgresql(tmp_path: Path) -> None:
    (code,) = python_blocks("Workflows: jobs that wait for other jobs")
    script = tmp_path / "workflow.py"
    script.write_text(code, encoding="utf-8")
    urls = [f"sqlite:///{tmp_path / 'words.db'}"]
    dsn = os.environ.get("PYJOBQUEUE_TEST_POSTGRES_DSN")
    if dsn:
        urls.append(dsn)
    for url in urls:
        result = subprocess.run(
            [sys.executable, str(script), url],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
            env=child_environment(),
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "7"
    if not dsn:
        pytest.skip("PYJOBQUEUE_TEST_POSTGRES_DSN is not set: ran on SQLite only")
