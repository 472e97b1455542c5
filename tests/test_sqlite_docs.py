"""The README's SQLite quick start runs as pasted: a worker and a client process."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from .backend_sqlite import BACKEND
from .children import child_environment

README = Path(__file__).resolve().parent.parent / "README.md"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        BACKEND.unavailable_reason() is not None, reason=str(BACKEND.unavailable_reason())
    ),
]


def two_terminals_script() -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("\n## Several processes: SQLite\n") :]
    section = section[: section.index("\n## ", 1)]
    code: str
    (code,) = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    return code


def test_two_terminals_worker_and_client(tmp_path: Path) -> None:
    script = tmp_path / "words.py"
    script.write_text(two_terminals_script(), encoding="utf-8")
    worker = subprocess.Popen(
        [sys.executable, str(script), "worker"],
        cwd=tmp_path,
        env=child_environment(),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        client = subprocess.run(
            [sys.executable, str(script), "submit"],
            cwd=tmp_path,
            env=child_environment(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert client.returncode == 0, client.stderr
        assert client.stdout.splitlines() == ["counting", "{'words': 4}"]
    finally:
        worker.send_signal(signal.SIGINT)  # Ctrl-C
        _, errors = worker.communicate(timeout=30)
    assert worker.returncode == 0, errors
    assert (tmp_path / "words.db").is_file()
