"""The synchronous client against the real server: streams, results, every error class, cancel,
deadlines, detached runs, watching, resuming after a dropped connection, TLS and tokens."""

from __future__ import annotations

import datetime
import json
import socket
from pathlib import Path
from typing import Any, Callable, List

import grpc
import pytest
from conftest import HERE, REPO, wait_until
from tcp_proxy import Proxy

import toolstream
from toolstream import Client, ProgressEvent, RunState

COMMANDS = """
[[tools]]
kind = "command"
name = "reports_error"
command = ["sh", "-c", "echo '{\\"progress\\": 0.5}'; echo '{\\"error\\": \\"disk full\\"}'; exit 1"]

[[tools]]
kind = "command"
name = "breaks_protocol"
command = ["sh", "-c", "echo 'this is not JSON'"]
"""


def test_tools_are_listed_with_their_schemas(server_addr: str) -> None:
    with Client(server_addr) as client:
        tools = {tool.name: tool for tool in client.tools()}
    assert tools["ticks"].kind == "native"
    assert tools["ticks"].input_schema["required"] == ["count"]
    assert "count" in tools["ticks"].input_schema["properties"]
    assert json.dumps(tools["ticks"].dict())


def test_a_run_streams_progress_then_holds_its_result(server_addr: str) -> None:
    with Client(server_addr) as client:
        stream = client.run("ticks", count=3, interval_ms=1)
        assert len(stream.run_id) == 32
        events = list(stream)
        assert stream.result == {"count": 3}
        assert stream.done and stream.error is None
    assert [e.type for e in events] == ["progress"] * 3
    assert [e.status for e in events] == ["tick 1/3", "tick 2/3", "tick 3/3"]
    assert [e.progress for e in events][-1] == 1.0
    assert [e.sequence for e in events] == [2, 3, 4]
    for event in events:
        assert isinstance(event, ProgressEvent)
        assert event.run_id == stream.run_id
        assert event.data == {}
        assert event.timestamp.tzinfo is not None
        assert event.timestamp <= datetime.datetime.now(datetime.timezone.utc)
        assert event.call_id is None and event.tool is None
        assert json.loads(json.dumps(event.dict()))["status"] == event.status


def test_events_yields_every_event_typed(server_addr: str) -> None:
    with Client(server_addr) as client:
        stream = client.run("ticks", count=2, interval_ms=1)
        events = list(stream.events())
    assert [e.type for e in events] == ["started", "progress", "progress", "result"]
    assert events[0].tool == "ticks"
    assert events[-1].data == {"count": 2} and events[-1].result == {"count": 2}
    assert [e.sequence for e in events] == [1, 2, 3, 4]


def test_result_reads_the_rest_of_the_stream(server_addr: str) -> None:
    with Client(server_addr) as client:
        assert client.run("ticks", count=5, interval_ms=1).result == {"count": 5}


def test_arguments_named_like_options_go_in_arguments(
    start_worker: Callable[..., Any],
) -> None:
    worker = start_worker(f"{HERE / 'worker_tools.py'}:collides")
    with Client(worker.addr) as client:
        result = client.run(
            "collides",
            arguments={"timeout": 3, "detach": True, "arguments": "a", "min_interval": 0.5},
            tool="t",
        ).result
        with pytest.raises(TypeError, match="both"):
            client.run("collides", arguments={"tool": "x"}, tool="y")
    assert result == {
        "timeout": 3,
        "detach": True,
        "arguments": "a",
        "tool": "t",
        "min_interval": 0.5,
    }


def test_each_status_is_its_own_exception(
    server_addr: str, start_server: Callable[..., Any], tmp_path: Path
) -> None:
    with Client(server_addr) as client:
        with pytest.raises(toolstream.ToolNotFound) as not_found:
            client.run("no_such_tool")
        assert not_found.value.code == grpc.StatusCode.NOT_FOUND
        assert "no_such_tool" in str(not_found.value)

        with pytest.raises(toolstream.InvalidArguments) as invalid:
            client.run("ticks", count="lots")
        assert invalid.value.field == "count"
        assert invalid.value.code == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(toolstream.InvalidArguments) as missing:
            client.run("ticks")
        assert missing.value.field == "count"

        with pytest.raises(toolstream.PermissionDenied):
            client.run("checksum", paths=["/etc/hostname"]).result

        with pytest.raises(toolstream.NotFound) as no_file:
            client.run("checksum", paths=["no/such/file"]).result
        assert not isinstance(no_file.value, toolstream.ToolNotFound)

        with pytest.raises(toolstream.RunNotFound):
            client.get_run("0" * 32)
        with pytest.raises(toolstream.RunNotFound):
            client.watch("0" * 32).result

        stream = client.run("ticks", count=1000, interval_ms=10, timeout=0.5)
        with pytest.raises(toolstream.DeadlineExceeded) as deadline:
            stream.result
        assert deadline.value.run_id == stream.run_id

        with pytest.raises(toolstream.FailedPrecondition):
            client.agent().run("no model is configured")

    commands = start_server(COMMANDS, "--max-runs", "1", "--max-message-bytes", "2048")
    with Client(commands.addr) as client:
        with pytest.raises(toolstream.ToolFailed) as failed:
            client.run("reports_error").result
        assert failed.value.message.endswith("disk full"), failed.value.message
        assert failed.value.code == grpc.StatusCode.ABORTED

        with pytest.raises(toolstream.ToolCrashed) as crashed:
            client.run("breaks_protocol").result
        assert isinstance(crashed.value, toolstream.ToolFailed)
        assert crashed.value.code == grpc.StatusCode.INTERNAL

        with pytest.raises(toolstream.OutOfRange):
            client.run("ticks", count=1, padding="x" * 4096)

        holding = client.run("ticks", count=100000, interval_ms=10)
        with pytest.raises(toolstream.ResourceExhausted):
            client.run("ticks", count=1)
        holding.cancel()
        with pytest.raises(toolstream.Cancelled):
            holding.result

    with Client(f"127.0.0.1:{_free_port()}") as nowhere:
        with pytest.raises(toolstream.Unavailable):
            nowhere.run("ticks", count=1)
        with pytest.raises(toolstream.Unavailable):
            nowhere.tools()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_every_error_class_maps_its_status() -> None:
    from toolstream.errors import from_status

    expected = {
        grpc.StatusCode.NOT_FOUND: toolstream.NotFound,
        grpc.StatusCode.INVALID_ARGUMENT: toolstream.InvalidArguments,
        grpc.StatusCode.ABORTED: toolstream.ToolFailed,
        grpc.StatusCode.INTERNAL: toolstream.ToolCrashed,
        grpc.StatusCode.PERMISSION_DENIED: toolstream.PermissionDenied,
        grpc.StatusCode.DEADLINE_EXCEEDED: toolstream.DeadlineExceeded,
        grpc.StatusCode.RESOURCE_EXHAUSTED: toolstream.ResourceExhausted,
        grpc.StatusCode.UNAVAILABLE: toolstream.Unavailable,
        grpc.StatusCode.CANCELLED: toolstream.Cancelled,
        grpc.StatusCode.FAILED_PRECONDITION: toolstream.FailedPrecondition,
        grpc.StatusCode.UNAUTHENTICATED: toolstream.Unauthenticated,
        grpc.StatusCode.OUT_OF_RANGE: toolstream.OutOfRange,
        grpc.StatusCode.UNIMPLEMENTED: toolstream.Unimplemented,
        grpc.StatusCode.DATA_LOSS: toolstream.ToolstreamError,
    }
    for code, cls in expected.items():
        error = from_status(code, "message", run_id="r")
        assert type(error) is cls, code
        assert isinstance(error, toolstream.ToolstreamError)
        assert (error.code, error.message, error.run_id, str(error)) == (
            code,
            "message",
            "r",
            "message",
        )
    assert type(from_status(grpc.StatusCode.NOT_FOUND, 'unknown tool "x"')) is toolstream.ToolNotFound
    assert type(from_status(grpc.StatusCode.NOT_FOUND, "x", about_runs=True)) is toolstream.RunNotFound
    fields = from_status(
        grpc.StatusCode.INVALID_ARGUMENT,
        'invalid arguments for tool "t": field a.b: 1 is not of type "string"; "c" is a required property',
    )
    assert isinstance(fields, toolstream.InvalidArguments)
    assert fields.fields == ["a.b", "c"] and fields.field == "a.b"


def test_cancel_ends_the_run_for_everyone(server_addr: str) -> None:
    with Client(server_addr) as client:
        stream = client.run("ticks", count=100000, interval_ms=10)
        watcher = client.watch(stream.run_id)
        next(stream)
        stream.cancel()
        with pytest.raises(toolstream.Cancelled):
            stream.result
        with pytest.raises(toolstream.Cancelled):
            watcher.result
        run = client.get_run(stream.run_id)
        assert run.state is RunState.CANCELLED and run.done
        assert isinstance(run.error, toolstream.Cancelled)
        stream.cancel()  # once ended, nothing happens


def test_leaving_the_block_cancels_a_run_unless_detached(server_addr: str) -> None:
    with Client(server_addr) as client:
        with client.run("ticks", count=100000, interval_ms=10) as stream:
            next(stream)
        with pytest.raises(toolstream.Cancelled):
            stream.result
        wait_until(
            lambda: client.get_run(stream.run_id).state is RunState.CANCELLED,
            "the server to cancel the run its caller left",
        )

        with client.run("ticks", count=20, interval_ms=5, detach=True) as detached:
            first = next(detached)
        run_id = detached.run_id
        events = list(client.watch(run_id, after=first.sequence).events())
        assert events[0].sequence == first.sequence + 1
        assert events[-1].type == "result" and events[-1].result == {"count": 20}
        run = client.get_run(run_id)
        assert run.state is RunState.SUCCEEDED and run.result == {"count": 20}
        assert run.tool == "ticks" and not run.agent
        assert run.last_sequence == events[-1].sequence
        assert run.created_at is not None and run.ended_at is not None
        assert run.progress[0].status == "tick 20/20"
        assert run_id in [r.run_id for r in client.runs(tool="ticks", state="succeeded")]
        assert run_id not in [r.run_id for r in client.runs(state=RunState.CANCELLED)]
        assert client.cancel_run(run_id).state is RunState.SUCCEEDED


def test_runs_are_listed_page_by_page(server_addr: str) -> None:
    with Client(server_addr) as client:
        ids = [client.run("ticks", count=1, interval_ms=0).run_id for _ in range(3)]
        listed = [r.run_id for r in client.runs(page_size=1)]
    assert listed[:3] == ids[::-1]


def test_min_interval_coalesces_progress(server_addr: str) -> None:
    with Client(server_addr) as client:
        stream = client.run("ticks", count=300, interval_ms=1, min_interval=10.0)
        events = list(stream)
        assert stream.result == {"count": 300}
    # Far fewer than 300 reach the client; the gaps in sequence show what was coalesced, and the
    # last progress is kept.
    assert len(events) < 300
    assert events[-1].status == "tick 300/300"
    assert [e.sequence for e in events] == sorted(set(e.sequence for e in events))


def test_from_latest_starts_where_the_run_stands(server_addr: str) -> None:
    with Client(server_addr) as client:
        done = client.run("ticks", count=5, interval_ms=1)
        assert done.result == {"count": 5}
        events = list(client.watch(done.run_id, from_latest=True).events())
    assert [e.type for e in events] == ["started", "progress", "result"]
    assert events[1].status == "tick 5/5"


def test_a_watched_stream_resumes_after_a_dropped_connection(server_addr: str) -> None:
    proxy = Proxy(server_addr)
    try:
        with Client(proxy.addr) as client:
            stream = client.run("ticks", count=40, interval_ms=20, detach=True, resume=True)
            seen: List[int] = []
            for event in stream:
                seen.append(event.sequence)
                if len(seen) == 3:
                    proxy.drop()
            assert stream.result == {"count": 40}
            assert seen == sorted(set(seen)), "no event twice, none out of order"
            assert seen[-1] == 41
            assert proxy.connections >= 2

            watched = client.watch(stream.run_id, resume=True)
            replay = []
            for event in watched.events():
                replay.append(event.sequence)
                if len(replay) == 2:
                    proxy.drop()
            assert replay == list(range(1, 43))
    finally:
        proxy.close()


def test_without_resume_a_dropped_connection_is_unavailable(server_addr: str) -> None:
    proxy = Proxy(server_addr)
    try:
        with Client(proxy.addr) as client:
            stream = client.run("ticks", count=1000, interval_ms=10, detach=True)
            next(stream)
            proxy.drop()
            with pytest.raises(toolstream.Unavailable):
                stream.result
        with Client(server_addr) as direct:
            direct.cancel_run(stream.run_id)
    finally:
        proxy.close()


def test_tls_and_bearer_token(start_worker: Callable[..., Any]) -> None:
    worker = start_worker(
        script=str(HERE / "secured_worker.py"), env={"TOOLSTREAM_TEST_TOKEN": "s3cret"}
    )
    port = worker.addr.rsplit(":", 1)[1]
    ca = HERE / "certs" / "ca.pem"
    with Client(f"https://localhost:{port}", root_certificates=ca, token="s3cret") as client:
        assert client.run("plain", a=1).result == 3
    with Client(f"localhost:{port}", tls=True, root_certificates=ca.read_bytes()) as client:
        with pytest.raises(toolstream.Unauthenticated):
            client.run("plain", a=1)
    with Client(
        f"127.0.0.1:{port}", root_certificates=ca, token="wrong", server_name="localhost"
    ) as client:
        with pytest.raises(toolstream.Unauthenticated):
            client.tools()
    with Client(f"127.0.0.1:{port}", token="s3cret") as plaintext:
        with pytest.raises(toolstream.Unavailable):
            plaintext.tools()


def test_a_toolstream_server_with_tls_and_tokens(start_server: Callable[..., Any]) -> None:
    import hashlib

    certs = HERE / "certs"
    digest = hashlib.sha256(b"py-token").hexdigest()
    server = start_server(
        f'[server]\ntls_cert = "{certs / "server.pem"}"\ntls_key = "{certs / "server.key"}"\n\n'
        f'[[auth.tokens]]\nname = "py"\nsha256 = "{digest}"\ntools = ["ticks"]\n'
    )
    port = server.addr.rsplit(":", 1)[1]
    ca = certs / "ca.pem"
    with Client(f"https://localhost:{port}", root_certificates=ca, token="py-token") as client:
        assert [tool.name for tool in client.tools()] == ["ticks"]
        assert client.run("ticks", count=2, interval_ms=0).result == {"count": 2}
        with pytest.raises(toolstream.PermissionDenied):
            client.run("checksum", paths=["Cargo.toml"]).result
    with Client(f"https://localhost:{port}", root_certificates=ca) as anonymous:
        with pytest.raises(toolstream.Unauthenticated):
            anonymous.tools()


def test_client_reads_its_address_from_the_environment(
    server_addr: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOOLSTREAM_ADDR", f"http://{server_addr}")
    with Client() as client:
        assert client.target == server_addr
        assert client.run("ticks", count=1, interval_ms=0).result == {"count": 1}


def test_the_repository_root_is_the_server_root(server_addr: str) -> None:
    with Client(server_addr) as client:
        result = client.run("checksum", paths=["Cargo.toml"]).result
    assert result["files"][0]["bytes"] == (REPO / "Cargo.toml").stat().st_size
