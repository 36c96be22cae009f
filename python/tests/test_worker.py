"""Python tools in a long-lived worker: schemas from type hints, every kind of function,
cancellation that reaches the tool, errors, bounded concurrency, health, and a federating
server that notices a worker that crashed or came back with other tools."""

from __future__ import annotations

import json
import socket
import urllib.request
from pathlib import Path
from typing import Any, Callable

import grpc
import pytest
from conftest import HERE, grpc_entry, wait_until
from grpc_health.v1 import health_pb2, health_pb2_grpc

import toolstream
from toolstream import Client

TOOLS = str(HERE / "worker_tools.py")
ALL = (
    f"{TOOLS}:typed,named_otherwise,plain,coroutine,async_steps,waits_for_cancel,"
    "async_waits_for_cancel,blocks,fails,asks,counts,not_json,collides,silent_then_done"
)


@pytest.fixture
def worker(start_worker: Callable[..., Any]) -> Any:
    return start_worker(ALL)


def test_input_schemas_come_from_type_hints_and_docstrings(worker: Any) -> None:
    with Client(worker.addr) as client:
        tools = {tool.name: tool for tool in client.tools()}
    typed = tools["typed"]
    assert typed.description == "Echoes its arguments as it received them."
    schema = typed.input_schema
    assert schema["type"] == "object"
    assert schema["required"] == ["names", "window"]
    assert schema["additionalProperties"] is False
    props = schema["properties"]
    assert props["names"] == {
        "type": "array",
        "items": {"type": "string"},
        "description": "Who to greet.",
    }
    assert props["mode"] == {
        "type": "string",
        "enum": ["fast", "deep"],
        "description": "How hard to try.",
        "default": "fast",
    }
    assert props["limit"] == {
        "type": ["integer", "null"],
        "description": "At most this many.",
        "default": None,
    }
    assert props["color"] == {"type": "string", "enum": ["red", "blue"], "default": "red"}
    assert props["ratio"] == {"type": "number", "default": 0.5}
    assert props["window"]["$ref"] == "#/$defs/Window"
    window = schema["$defs"]["Window"]
    assert window["required"] == ["start"]
    assert window["properties"]["days"] == {
        "type": "integer",
        "description": "How many days.",
        "default": 7,
    }
    assert typed.output_schema == {"type": "object"}

    assert tools["renamed"].description == "A tool with another name."
    assert tools["plain"].input_schema["properties"]["b"] == {"type": "integer", "default": 2}
    assert tools["plain"].output_schema == {"type": "integer"}
    assert tools["coroutine"].description == "An async function."


def test_arguments_are_converted_to_the_type_hints(worker: Any) -> None:
    with Client(worker.addr) as client:
        stream = client.run(
            "typed", names=["a", "b"], window={"start": "mon", "days": 3}, limit=4, color="blue"
        )
        assert [e.status for e in stream] == ["checking types"]
        result = stream.result
    assert result == {
        "names": ["a", "b"],
        "window": {"start": "mon", "days": 3},
        "window_type": "Window",
        "mode": "fast",
        "limit": 4,
        # Numbers travel as doubles; the worker gives the tool the int its hint asks for.
        "limit_type": "int",
        "color": "blue",
        "ratio_type": "float",
    }


def test_every_kind_of_function_runs(worker: Any) -> None:
    with Client(worker.addr) as client:
        assert client.run("plain", a=40).result == 42
        assert client.run("coroutine", text="abc").result == "cba"
        assert client.run("renamed", text="hi").result == "HI"
        stream = client.run("async_steps", count=3)
        assert [(e.progress, e.status) for e in stream] == [
            (pytest.approx(1 / 3), "step 1"),
            (pytest.approx(2 / 3), "step 2"),
            (1.0, "step 3"),
        ]
        assert stream.result == {"count": 3}
        # One process serves every call: state persists between them.
        first = client.run("counts").result
        assert client.run("counts").result == first + 1


def test_a_worker_stream_is_a_full_toolstream_stream(worker: Any) -> None:
    with Client(worker.addr) as client:
        stream = client.run("async_steps", count=2)
        events = list(stream.events())
    assert [e.type for e in events] == ["started", "progress", "progress", "result"]
    assert [e.sequence for e in events] == [1, 2, 3, 4]
    assert all(e.run_id == stream.run_id for e in events)
    assert events[0].tool == "async_steps"


@pytest.mark.parametrize("tool", ["waits_for_cancel", "async_waits_for_cancel"])
def test_cancelling_reaches_the_tool_and_its_finally_block_runs(
    worker: Any, tmp_path: Path, tool: str
) -> None:
    marker = tmp_path / "marker"
    with Client(worker.addr) as client:
        stream = client.run(tool, marker=str(marker))
        next(stream)
        stream.cancel()
        with pytest.raises(toolstream.Cancelled):
            stream.result
    # The file may exist a moment before its text is written: wait for the text itself.
    wait_until(
        lambda: marker.exists() and marker.read_text() == "finally ran",
        f"{tool}'s finally block to run",
    )


def test_a_deadline_through_the_server_stops_the_tool(
    worker: Any, start_server: Callable[..., Any], tmp_path: Path
) -> None:
    server = start_server(grpc_entry(worker.addr, prefix="py."))
    marker = tmp_path / "marker"
    with Client(server.addr) as client:
        stream = client.run("py.waits_for_cancel", marker=str(marker), timeout=1.0)
        with pytest.raises(toolstream.DeadlineExceeded):
            stream.result
    wait_until(marker.exists, "the tool to be stopped at the deadline")


def test_cancelling_through_the_server_stops_the_tool(
    worker: Any, start_server: Callable[..., Any], tmp_path: Path
) -> None:
    server = start_server(grpc_entry(worker.addr))
    marker = tmp_path / "marker"
    with Client(server.addr) as client:
        stream = client.run("async_waits_for_cancel", marker=str(marker))
        next(stream)
        stream.cancel()
        with pytest.raises(toolstream.Cancelled):
            stream.result
        assert client.get_run(stream.run_id).state is toolstream.RunState.CANCELLED
    wait_until(marker.exists, "the worker's tool to be cancelled")


def test_errors_have_their_status(worker: Any) -> None:
    with Client(worker.addr) as client:
        stream = client.run("fails", message="disk full")
        assert [e.status for e in stream] == ["about to fail"]
        with pytest.raises(toolstream.ToolFailed) as failed:
            stream.result
        assert failed.value.message == "RuntimeError: disk full"
        assert failed.value.code == grpc.StatusCode.ABORTED

        with pytest.raises(toolstream.ToolCrashed) as crashed:
            client.run("not_json").result
        assert "not JSON" in crashed.value.message

        with pytest.raises(toolstream.ToolNotFound):
            client.run("no_such_tool")
        with pytest.raises(toolstream.InvalidArguments) as invalid:
            client.run("plain", a="forty")
        assert invalid.value.field == "a"
        with pytest.raises(toolstream.InvalidArguments) as unknown:
            client.run("plain", a=1, c=3)
        assert unknown.value.field == "c"
        with pytest.raises(toolstream.Unimplemented):
            client.agent().run("hello")


def test_at_most_max_concurrency_calls_run(start_worker: Callable[..., Any], tmp_path: Path) -> None:
    worker = start_worker(f"{TOOLS}:blocks,plain", "--max-concurrency", "1")
    gate = tmp_path / "gate"
    with Client(worker.addr) as client:
        holding = client.run("blocks", gate=str(gate))
        assert next(holding).status == "holding a slot"
        with pytest.raises(toolstream.ResourceExhausted):
            client.run("plain", a=1)
        gate.write_text("open")
        assert holding.result == "released"
        assert wait_until(lambda: _try_plain(client), "the slot to be free again") == 3


def _try_plain(client: Client) -> Any:
    try:
        return client.run("plain", a=1).result
    except toolstream.ResourceExhausted:
        return None


def test_health_is_served(worker: Any) -> None:
    with grpc.insecure_channel(worker.addr) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ["", "toolstream.v1.ToolService"]:
            response = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_a_crashed_worker_is_unavailable_and_noticed_when_it_comes_back_with_other_tools(
    start_worker: Callable[..., Any], start_server: Callable[..., Any]
) -> None:
    worker = start_worker(f"{TOOLS}:plain,typed")
    server = start_server(grpc_entry(worker.addr, prefix="py."))
    with Client(server.addr) as client:
        assert client.run("py.plain", a=1).result == 3
        worker.kill()
        with pytest.raises(toolstream.Unavailable) as unavailable:
            client.run("py.plain", a=1).result
        assert worker.addr in unavailable.value.message
        # Its tools stay listed while it is down, so calls say UNAVAILABLE, not NOT_FOUND.
        assert "py.plain" in [t.name for t in client.tools()]

        start_worker(f"{TOOLS}:coroutine,plain", listen=worker.addr)
        names = wait_until(
            lambda: _names_if(client, "py.coroutine"), "the server to list the new tools"
        )
        assert "py.typed" not in names
        assert client.run("py.plain", a=5).result == 7
        assert client.run("py.coroutine", text="ab").result == "ba"


def test_a_worker_started_after_the_server_is_listed_when_it_answers(
    start_worker: Callable[..., Any], start_server: Callable[..., Any]
) -> None:
    # `python tools.py & toolstream serve`: the server may well come up first.
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        addr = f"127.0.0.1:{free.getsockname()[1]}"
    server = start_server(grpc_entry(addr, prefix="py."))
    health = _healthz(server.addr)
    assert health["status"] == "SERVING"
    assert health["sources"][0]["reachable"] is False and addr in health["sources"][0]["error"]
    with Client(server.addr) as client:
        assert not [t.name for t in client.tools() if t.name.startswith("py.")]
        start_worker(f"{TOOLS}:plain", listen=addr)
        wait_until(lambda: _names_if(client, "py.plain"), "the worker's tools to appear")
        assert client.run("py.plain", a=1).result == 3
    assert _healthz(server.addr)["sources"][0]["reachable"] is True


def _healthz(addr: str) -> Any:
    with urllib.request.urlopen(f"http://{addr}/healthz", timeout=10) as response:
        return json.loads(response.read())


def _names_if(client: Client, name: str) -> Any:
    names = [t.name for t in client.tools()]
    return names if name in names else None


def test_heartbeats_keep_a_silent_run_visible(
    worker: Any, start_server: Callable[..., Any], tmp_path: Path
) -> None:
    server = start_server(grpc_entry(worker.addr))
    gate = tmp_path / "gate"
    with Client(server.addr) as client:
        stream = client.run("silent_then_done", gate=str(gate), heartbeat=0.05)
        kinds = []
        for event in stream.events():
            kinds.append(event.type)
            if event.type == "heartbeat":
                assert event.sequence == 0 and event.data == {"last_sequence": 1}
                gate.write_text("open")
        assert stream.result == "done"
    assert kinds[0] == "started" and kinds[-1] == "result" and "heartbeat" in kinds
    # Iterating the stream itself yields progress only: a heartbeat is not progress.
    with Client(server.addr) as client:
        gate.unlink()
        stream = client.run("silent_then_done", gate=str(gate), heartbeat=0.05)
        gate.write_text("open")
        assert list(stream) == [] and stream.result == "done"
