"""``on_input=``: a callback answers the run's input requests as the stream reads them. Its return
value is the answer, ``toolstream.Decline`` declines; a callback that raises, or an answer the
server refuses, declines the request (logged on the ``toolstream`` logger) and the run goes on.
Against the real server: a command tool asking for a confirmation, and an agent whose calls of
``ticks`` need approval (a stand-in model)."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, List

import pytest
from conftest import write
from standin_model import StandInModel, text, tool_calls
from test_input_requests import ASKING_TOOL

import toolstream
from toolstream import AsyncClient, Client, ProgressEvent


@pytest.fixture
def addr(start_server: Callable[..., Any], tmp: Path) -> str:
    script = write(tmp / "confirm.py", ASKING_TOOL)
    config = (
        '[[tools]]\nkind = "command"\nname = "confirm"\nasks = true\n'
        f'command = ["{sys.executable}", "{script}"]\n'
    )
    addr: str = start_server(config).addr
    return addr


def test_the_callbacks_return_value_is_the_answer(addr: str) -> None:
    asked: List[ProgressEvent] = []

    def on_input(event: ProgressEvent) -> Any:
        asked.append(event)
        return True

    with Client(addr) as client:
        stream = client.run("confirm", path="report.pdf", on_input=on_input)
        assert stream.result == "overwritten"
    assert [e.data["prompt"] for e in asked] == ["Overwrite report.pdf?"]
    assert asked[0].data["schema"] == {"type": "boolean"}


def test_returning_decline_declines(addr: str) -> None:
    with Client(addr) as client:
        outcomes = [
            e.data["outcome"]
            for e in client.run("confirm", path="a", on_input=lambda e: toolstream.Decline).events()
            if e.type == "input_resolved"
        ]
    assert outcomes == ["declined"]


def test_a_callback_that_raises_declines_and_is_logged(
    addr: str, caplog: pytest.LogCaptureFixture
) -> None:
    def on_input(event: ProgressEvent) -> Any:
        raise RuntimeError("no one at the keyboard")

    with caplog.at_level(logging.ERROR, logger="toolstream"), Client(addr) as client:
        assert client.run("confirm", path="a", on_input=on_input).result == "kept (declined)"
    [record] = [r for r in caplog.records if r.name == "toolstream"]
    assert "the on_input callback raised" in record.getMessage()
    assert record.exc_info is not None and "no one at the keyboard" in str(record.exc_info[1])


def test_an_answer_failing_the_schema_declines_and_is_logged(
    addr: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="toolstream"), Client(addr) as client:
        assert client.run("confirm", path="a", on_input=lambda e: "yes").result == "kept (declined)"
    [record] = [r for r in caplog.records if r.name == "toolstream"]
    assert "refused" in record.getMessage()


def test_the_async_client_awaits_a_coroutine_callback(addr: str) -> None:
    async def on_input(event: ProgressEvent) -> Any:
        await asyncio.sleep(0)
        return False

    async def main() -> Any:
        async with AsyncClient(addr) as client:
            stream = await client.run("confirm", path="a", on_input=on_input)
            return await stream.result

    assert asyncio.run(main()) == "kept (answered)"


def test_the_async_stream_responds_too(addr: str) -> None:
    async def main() -> Any:
        async with AsyncClient(addr) as client:
            stream = await client.run("confirm", path="a")
            async for event in stream.events():
                if event.type == "input_requested":
                    await stream.respond(event.data["request_id"], True)
            return await stream.result

    assert asyncio.run(main()) == "overwritten"


@pytest.fixture
def model() -> Iterator[StandInModel]:
    call = tool_calls(("call_1", "ticks", {"count": 2, "interval_ms": 1}))
    # One run approves the call, the next declines it.
    model = StandInModel([call, text("Ticked."), call, text("Not allowed.")])
    yield model
    model.close()


def test_an_agents_approvals_go_to_on_input(
    start_server: Callable[..., Any], model: StandInModel
) -> None:
    server = start_server(None, "--model-url", model.url, "--model", "standin")
    asked: List[ProgressEvent] = []

    def approve(event: ProgressEvent) -> Any:
        asked.append(event)
        return True

    with Client(server.addr) as client:
        agent = client.agent(tools=["ticks"], approval_required=["ticks"])
        assert agent.run("tick twice", on_input=approve) == "Ticked."
        [approval] = asked
        assert approval.data["kind"] == "approval"
        assert approval.data["data"] == {"tool": "ticks", "arguments": {"count": 2, "interval_ms": 1}}
        # Declined through Agent.arun (the asyncio twin): the call is not made, the model is told.
        declined = asyncio.run(agent.arun("tick twice", on_input=lambda e: toolstream.Decline))
    assert declined == "Not allowed."
    told = model.requests[3]["messages"][-1]["content"]
    assert "declined" in told, told
