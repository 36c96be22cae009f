"""Worker tools that ask (``answer = yield toolstream.ask(...)``): a real worker process, a real
``toolstream serve`` federating it, and a client of the server answering over RunService; the
worker's own RespondToRun (answered there directly, refused answers); the declined outcome
raising ``InputDeclined`` in the tool, caught or failing the call."""

from __future__ import annotations

from typing import Any, Callable, List, Optional

import grpc
import pytest
from conftest import HERE, grpc_entry

import toolstream
from toolstream import Client, InvalidArguments, RunState, ToolstreamError

TOOLS = f"{HERE / 'worker_tools.py'}:asks,asks_or_says_why,asks_twice,async_asks"


@pytest.fixture
def worker(start_worker: Callable[..., Any]) -> Any:
    return start_worker(TOOLS)


@pytest.fixture
def server(worker: Any, start_server: Callable[..., Any]) -> Any:
    return start_server(grpc_entry(worker.addr, prefix="w."))


def answered(stream: Any, value: Any = None, decline: bool = False) -> List[Any]:
    """Reads ``stream`` to its end, answering (or declining) each question it asks; returns the
    events."""
    events = []
    for event in stream.events():
        events.append(event)
        if event.type == "input_requested":
            stream.respond(event.data["request_id"], value, decline=decline)
    return events


def outcomes(events: List[Any]) -> List[Optional[str]]:
    return [event.data["outcome"] for event in events if event.type == "input_resolved"]


def test_a_worker_tool_asks_through_the_server_and_gets_the_answer(server: Any) -> None:
    with Client(server.addr) as client:
        stream = client.run("w.asks")
        asked = None
        for event in stream.events():
            if event.type == "input_requested":
                asked = event
                waiting = client.get_run(stream.run_id)
                assert waiting.state == RunState.INPUT_REQUIRED
                with pytest.raises(InvalidArguments):
                    stream.respond(event.data["request_id"], "yes")
                stream.respond(event.data["request_id"], True)
                with pytest.raises(ToolstreamError):
                    stream.respond(event.data["request_id"], False)
        assert asked is not None
        assert asked.data["prompt"] == "Proceed?"
        assert asked.data["schema"] == {"type": "boolean"}
        assert stream.result is True


def test_an_async_worker_tool_is_resumed_with_its_answer(server: Any) -> None:
    with Client(server.addr) as client:
        stream = client.run("w.async_asks")
        events = answered(stream, 21)
        assert outcomes(events) == ["answered"]
        assert stream.result == 42


def test_a_declined_question_raises_input_declined_in_the_worker_tool(server: Any) -> None:
    with Client(server.addr) as client:
        caught = client.run("w.asks_or_says_why")
        assert outcomes(answered(caught, decline=True)) == ["declined"]
        assert caught.result == "not answered: declined"

        uncaught = client.run("w.asks")
        with pytest.raises(toolstream.ToolFailed) as failed:
            answered(uncaught, decline=True)
        assert "InputDeclined: 'Proceed?' was not answered: declined" in failed.value.message


def test_the_worker_answers_respond_to_run_for_its_own_calls(worker: Any) -> None:
    with Client(worker.addr) as client:
        stream = client.run("asks_twice")
        asked = []
        for event in stream.events():
            if event.type != "input_requested":
                continue
            request_id = event.data["request_id"]
            asked.append(request_id)
            if len(asked) == 1:
                with pytest.raises(toolstream.NotFound):
                    client.respond(stream.run_id, "input-9", True)
                with pytest.raises(InvalidArguments):
                    client.respond(stream.run_id, request_id, "perhaps")
                answered_run = client.respond(stream.run_id, request_id, False)
                assert answered_run.state == RunState.RUNNING
            else:
                # The first question is resolved; the call goes on waiting on the second.
                with pytest.raises(ToolstreamError) as second:
                    client.respond(stream.run_id, asked[0], True)
                assert second.value.code == grpc.StatusCode.FAILED_PRECONDITION
                client.respond(stream.run_id, request_id, True)
        assert asked == ["input-1", "input-2"]
        assert stream.result == [False, True]
        # The call ended: the worker forgot it.
        with pytest.raises(toolstream.NotFound):
            client.respond(stream.run_id, "input-2", True)


def test_a_question_nobody_answers_expires_at_the_calls_input_timeout(worker: Any) -> None:
    from toolstream.v1 import toolstream_pb2 as pb
    from toolstream.v1 import toolstream_pb2_grpc as pb_grpc

    with grpc.insecure_channel(worker.addr) as channel:
        request = pb.RunToolRequest(
            tool="asks_or_says_why", options=pb.RunOptions(input_timeout_ms=100)
        )
        events = list(pb_grpc.ToolServiceStub(channel).RunTool(request))
    kinds = [event.WhichOneof("event") for event in events]
    assert kinds == ["started", "input_requested", "input_resolved", "result"], kinds
    asked, resolved = events[1].input_requested, events[2].input_resolved
    assert asked.HasField("expire_time"), asked
    assert resolved.request_id == asked.request_id
    assert resolved.outcome == pb.INPUT_OUTCOME_EXPIRED
    assert events[3].result.value.string_value == "not answered: expired"
