"""`mypy --strict` is clean on the package, and on a program using it as the README does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import REPO

USER = '''
import asyncio
from typing import Any, List

import toolstream
from toolstream import AsyncClient, Client, ProgressEvent, RunState, progress
from toolstream.worker import Worker


@progress
def process_files(files: list[str]) -> Any:
    for i, file in enumerate(files):
        yield {"progress": (i + 1) / len(files), "status": f"Processing {file}"}
    return "All files processed"


@progress
def confirm(path: str) -> Any:
    try:
        overwrite: bool = yield toolstream.ask(f"Overwrite {path}?", bool)
    except toolstream.InputNotAnswered as error:
        return error.outcome
    return overwrite


def sync(client: Client) -> None:
    stream = client.run("process_files", files=["a"], timeout=5.0)
    seen: List[float] = [event.progress for event in stream if event.progress is not None]
    result: Any = stream.result
    run = client.get_run(stream.run_id)
    assert run.state is RunState.SUCCEEDED, (seen, result)
    try:
        client.agent(tools=[process_files]).run("go", on_progress=lambda e: print(e.status))
    except toolstream.ToolstreamError as error:
        print(error.code.name, error.message)


async def asynchronous(client: AsyncClient) -> None:
    stream = await client.run("ticks", count=1)
    async for event in stream:
        print(event.dict())
    print(await stream.result)
    agent = client.agent(["ticks"])
    async for each in agent.arun_stream("go"):
        _: ProgressEvent = each


Worker([process_files], listen="127.0.0.1:0")
asyncio.run(asynchronous(AsyncClient()))
'''


def test_mypy_strict_is_clean(tmp_path: Path) -> None:
    user = tmp_path / "user.py"
    user.write_text(USER)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--config-file",
            str(REPO / "python" / "pyproject.toml"),
            "--cache-dir",
            str(REPO / "target" / "mypy-cache"),
            str(REPO / "python" / "toolstream"),
            str(user),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
