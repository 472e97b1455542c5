"""The example of docs/postgres.md runs as pasted: a server process and a client process."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import pytest

from .backend_postgres import fresh_schema, unavailable_reason

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason())),
]

DOCS = Path(__file__).resolve().parent.parent / "docs" / "postgres.md"
ROOT = str(DOCS.parent.parent)


async def test_the_several_machines_example_runs(tmp_path: Path) -> None:
    (code,) = re.findall(r"```python\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.DOTALL)
    script = tmp_path / "jobs.py"
    script.write_text(code, encoding="utf-8")
    async with fresh_schema() as dsn:
        env = {**os.environ, "DATABASE_URL": dsn}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH")]))
        server = await asyncio.create_subprocess_exec(
            sys.executable, str(script), "server", env=env, stderr=asyncio.subprocess.PIPE
        )
        try:
            client = await asyncio.create_subprocess_exec(
                sys.executable,
                str(script),
                "submit",
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await asyncio.wait_for(client.communicate(), 60)
            assert client.returncode == 0, err.decode()
            assert out.decode().strip() == "{'image': 'cat.png', 'size': [640, 480]}"
        finally:
            server.terminate()
            await server.communicate()
