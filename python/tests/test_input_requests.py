"""Runs that ask: a command tool (``asks = true``) asks for a confirmation; the Python client sees
the run INPUT_REQUIRED with an ``input_requested`` event, answers it with ``client.respond`` (or
``stream.respond``), and gets ``InvalidArguments`` naming the field for an answer failing the
schema."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from conftest import wait_until, write
from toolstream import AsyncClient, Client, InvalidArguments, RunState, ToolstreamError

ASKING_TOOL = """
import json, sys
arguments = json.loads(sys.stdin.readline())
ask = {"id": "q1", "prompt": f"Overwrite {arguments['path']}?", "schema": {"type": "boolean"}}
print(json.dumps({"ask": ask}), flush=True)
answer = json.loads(sys.stdin.readline())["answer"]
if answer["outcome"] == "answered" and answer["value"] is True:
    print(json.dumps({"result": "overwritten"}), flush=True)
else:
    print(json.dumps({"result": f"kept ({answer['outcome']})"}), flush=True)
"""


@pytest.fixture
def addr(start_server, tmp: Path) -> str:
    script = write(tmp / "confirm.py", ASKING_TOOL)
    config = (
        '[[tools]]\nkind = "command"\nname = "confirm"\nasks = true\n'
        f'command = ["{sys.executable}", "{script}"]\n'
    )
    return start_server(config).addr


def pending(client: Client, run_id: str):
    run = wait_until(
        lambda: (r := client.get_run(run_id)).state == RunState.INPUT_REQUIRED and r,
        "the run to ask",
    )
    return run


def test_a_detached_run_is_answered_with_client_respond(addr: str) -> None:
    with Client(addr) as client:
        stream = client.run("confirm", path="report.pdf", detach=True)
        run_id = stream.run_id
        pending(client, run_id)
        with pytest.raises(InvalidArguments):
            client.respond(run_id, "input-1", "yes")
        answered = client.respond(run_id, "input-1", True)
        assert answered.state in (RunState.RUNNING, RunState.SUCCEEDED)
        with pytest.raises(ToolstreamError):
            client.respond(run_id, "input-1", False)
        done = wait_until(lambda: (r := client.get_run(run_id)).state.done and r, "the end")
        assert done.result == "overwritten"


def test_the_stream_shows_the_question_and_stream_respond_declines_it(addr: str) -> None:
    with Client(addr) as client:
        stream = client.run("confirm", path="report.pdf")
        asked = None
        for event in stream.events():
            if event.type == "input_requested":
                asked = event
                assert event.data["prompt"] == "Overwrite report.pdf?"
                assert event.data["schema"] == {"type": "boolean"}
                stream.respond(event.data["request_id"], decline=True)
            if event.type == "input_resolved":
                assert event.data["outcome"] == "declined"
        assert asked is not None
        assert stream.result == "kept (declined)"


def test_the_async_client_answers_too(addr: str) -> None:
    with Client(addr) as client:
        run_id = client.run("confirm", path="a.txt", detach=True).run_id
        pending(client, run_id)

        async def answer() -> None:
            async with AsyncClient(addr) as aclient:
                await aclient.respond(run_id, "input-1", False)

        asyncio.run(answer())
        done = wait_until(lambda: (r := client.get_run(run_id)).state.done and r, "the end")
        assert done.result == "kept (answered)"
