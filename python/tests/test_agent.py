"""Agents from Python: the seed's `agent.run(prompt, on_progress=...)` and `arun_stream`, against
the real server driving a stand-in model that calls a tool served by a Python worker."""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Iterator, List

import pytest
from conftest import HERE, grpc_entry
from standin_model import StandInModel, text, tool_calls

import toolstream
from toolstream import AsyncClient, Client, ProgressEvent

TOOLS = f"{HERE / 'worker_tools.py'}:async_steps,fails"


@pytest.fixture
def model() -> Iterator[StandInModel]:
    model = StandInModel(
        [tool_calls(("call_1", "async_steps", {"count": 3})), text("All ", "three steps done.")]
    )
    yield model
    model.close()


@pytest.fixture
def server(start_worker: Callable[..., Any], start_server: Callable[..., Any], model: StandInModel) -> Any:
    worker = start_worker(TOOLS)
    return start_server(grpc_entry(worker.addr), "--model-url", model.url, "--model", "standin")


def test_run_with_on_progress_gets_the_tool_calls_progress(server: Any, model: StandInModel) -> None:
    seen: List[ProgressEvent] = []
    events: List[ProgressEvent] = []
    with Client(server.addr) as client:
        agent = client.agent(tools=["async_steps"])
        result = agent.run("Take three steps", on_progress=seen.append, on_event=events.append)
    assert result == "All three steps done."
    calls = [e for e in seen if e.call_id]
    assert [(e.progress, e.status) for e in calls] == [
        (pytest.approx(1 / 3), "step 1"),
        (pytest.approx(2 / 3), "step 2"),
        (1.0, "step 3"),
    ]
    assert all(e.call_id == "call_1" and e.tool == "async_steps" for e in calls)
    agent_level = [e for e in seen if e.call_id is None]
    assert agent_level and all(e.progress is not None for e in agent_level)
    kinds = [e.type for e in events]
    assert kinds[0] == "started" and kinds[-1] == "result"
    assert "tool_call_started" in kinds and "tool_call_finished" in kinds
    finished = next(e for e in events if e.type == "tool_call_finished")
    assert finished.result == {"count": 3}
    started = next(e for e in events if e.type == "tool_call_started")
    assert started.data == {"count": 3}
    assert "".join(e.text or "" for e in events if e.type == "message") == result
    # The model was offered the tool with the schema the worker derived from its type hints.
    offered = model.requests[0]["tools"][0]["function"]
    assert offered["name"] == "async_steps"
    assert offered["parameters"]["properties"]["count"] == {"type": "integer"}


def test_tools_can_be_given_as_the_functions_themselves(server: Any) -> None:
    import worker_tools

    with Client(server.addr) as client:
        agent = client.agent(tools=[worker_tools.async_steps])
        assert agent.tools == ["async_steps"]
        assert agent.run("Take three steps") == "All three steps done."


def test_arun_stream_yields_every_event_typed(server: Any) -> None:
    async def main() -> List[ProgressEvent]:
        with Client(server.addr) as client:
            agent = client.agent(tools=["async_steps"])
            return [event async for event in agent.arun_stream("Take three steps")]

    events = asyncio.run(main())
    kinds = [e.type for e in events]
    assert kinds[0] == "started" and kinds[-1] == "result"
    assert events[-1].data == "All three steps done."
    assert {"progress", "message", "tool_call_started", "tool_call_finished"} <= set(kinds)


def test_async_agent_run_with_a_coroutine_callback(server: Any) -> None:
    async def main() -> Any:
        seen: List[ProgressEvent] = []

        async def on_progress(event: ProgressEvent) -> None:
            seen.append(event)

        async with AsyncClient(server.addr) as client:
            result = await client.agent(["async_steps"]).run("Go", on_progress=on_progress)
        assert any(e.call_id == "call_1" for e in seen)
        return result

    assert asyncio.run(main()) == "All three steps done."


def test_a_failing_tool_call_is_fed_back_not_raised(
    start_worker: Callable[..., Any], start_server: Callable[..., Any]
) -> None:
    model = StandInModel(
        [tool_calls(("call_1", "fails", {"message": "no disk"})), text("It failed.")]
    )
    try:
        worker = start_worker(TOOLS)
        server = start_server(grpc_entry(worker.addr), "--model-url", model.url, "--model", "m")
        with Client(server.addr) as client:
            events: List[ProgressEvent] = []
            assert client.agent().run("try", on_event=events.append) == "It failed."
        finished = next(e for e in events if e.type == "tool_call_finished")
        assert finished.error is not None and "no disk" in finished.error
    finally:
        model.close()


def test_an_agent_error_is_raised(server: Any) -> None:
    with Client(server.addr) as client:
        with pytest.raises(toolstream.ToolNotFound):
            client.agent(tools=["nope"]).run("x")
        with pytest.raises(toolstream.InvalidArguments):
            client.agent().run("   ")


def test_on_progress_gets_a_float_for_every_node_of_a_tool_with_sub_tasks(
    start_server: Callable[..., Any], tmp_path: Any
) -> None:
    # checksum announces each file as a sub-task with no fraction yet: the seed's callback,
    # `event.progress * 100`, must still work on every event it gets.
    for name in ("a.txt", "b.txt"):
        (tmp_path / name).write_text(name * 1000)
    call = tool_calls(("call_1", "checksum", {"paths": ["a.txt", "b.txt"]}))
    model = StandInModel([call, text("Hashed."), call, text("Hashed.")])  # sync, then async
    try:
        server = start_server(None, "--model-url", model.url, "--model", "standin", "--root", str(tmp_path))
        lines: List[str] = []
        seen: List[ProgressEvent] = []

        def on_progress(event: ProgressEvent) -> None:
            seen.append(event)
            lines.append(f"{event.progress * 100:.0f}% - {event.status}")

        async def run_async() -> Any:
            async with AsyncClient(server.addr) as client:
                return await client.agent(["checksum"]).run("Hash them", on_progress=on_progress)

        with Client(server.addr) as client:
            assert client.agent(tools=["checksum"]).run("Hash them", on_progress=on_progress) == "Hashed."
        sub_tasks = [e for e in seen if e.parent_call_id]
        assert sub_tasks, "checksum's files come as sub-tasks under the call"
        assert all(isinstance(e.progress, float) for e in seen)
        seen.clear()
        assert asyncio.run(run_async()) == "Hashed."
        assert [e for e in seen if e.parent_call_id] and all(isinstance(e.progress, float) for e in seen)
    finally:
        model.close()
