"""Partial results from Python: a tool yields ``toolstream.partial(...)`` as a command tool and in a
worker (federated by a real server); the sync and async clients give events of type
``"partial"``, ``stream.partials`` (assembled by key) and ``on_partial`` callbacks."""

from __future__ import annotations

import asyncio
import sys
from typing import Any, Callable, Iterator, List

import pytest
from conftest import HERE, grpc_entry

import toolstream
from toolstream import AsyncClient, Client, ProgressEvent

TOOLS = str(HERE / "partial_tools.py")


def _command_entry() -> str:
    def toml(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

    return (
        '[[tools]]\nkind = "command"\nname = "cmd.search"\n'
        f"command = [{toml(sys.executable)}, {toml(TOOLS)}]\ndescribe = true\n"
        '[[tools]]\nkind = "command"\nname = "cmd.per_file"\n'
        f'command = [{toml(sys.executable)}, {toml(TOOLS)}, "per_file"]\ndescribe = true\n'
    )


@pytest.fixture
def addr(start_worker: Callable[..., Any], start_server: Callable[..., Any]) -> str:
    """A server with ``cmd.search`` (a command tool), ``py.search`` and ``py.search_async`` (in a
    worker), and the built-in tools rooted at this directory."""
    worker = start_worker(f"{TOOLS}:search,search_async,per_file")
    server = start_server(
        _command_entry() + grpc_entry(worker.addr, prefix="py."), "--root", str(HERE)
    )
    return str(server.addr)


@pytest.fixture
def client(addr: str) -> Iterator[Client]:
    with Client(addr) as client:
        yield client


@pytest.mark.parametrize("tool", ["cmd.search", "py.search"])
def test_a_python_tool_emits_partial_results_the_client_assembles(client: Client, tool: str) -> None:
    seen: List[ProgressEvent] = []
    stream = client.run(tool, count=3, on_partial=seen.append)
    events = list(stream.events())
    partials = [e for e in events if e.type == "partial"]
    assert [(e.key, e.value, e.append) for e in partials] == [
        ("hits", {"hit": 0}, True),
        ("", "best: 0", False),
        ("hits", {"hit": 1}, True),
        ("", "best: 1", False),
        ("hits", {"hit": 2}, True),
        ("", "best: 2", False),
    ]
    assert all(e.call_id is None for e in partials), partials
    assert stream.result == 3
    # Appended items as a list, a replaced output as its latest value.
    assert stream.partials == {"hits": [{"hit": 0}, {"hit": 1}, {"hit": 2}], "": "best: 2"}
    assert stream.partials_by_call == {None: stream.partials}
    assert seen == partials
    assert partials[0].dict()["value"] == {"hit": 0}


@pytest.mark.parametrize("tool", ["cmd.per_file", "py.per_file"])
def test_a_partial_result_naming_a_sub_task_is_shown_under_its_node(client: Client, tool: str) -> None:
    stream = client.run(tool, count=2)
    events = list(stream.events())
    nodes = {e.call_id: e.tool for e in events if e.type == "progress" and e.call_id}
    partials = [(e.call_id, e.key, e.value) for e in events if e.type == "partial"]
    assert [(nodes.get(call_id), key, value) for call_id, key, value in partials] == [
        ("file 0", "digest", "digest 0"),
        ("file 1", "digest", "digest 1"),
    ]
    assert stream.partials == {}
    assert sorted(stream.partials_by_call.values(), key=str) == [
        {"digest": "digest 0"},
        {"digest": "digest 1"},
    ]
    assert stream.result == 2


def test_iterating_the_top_level_still_feeds_partials_and_on_partial(client: Client) -> None:
    seen: List[Any] = []
    stream = client.run("py.search", count=2, on_partial=lambda e: seen.append(e.value))
    fractions = [event.progress for event in stream]
    assert fractions == [0.5, 1.0]
    assert seen == [{"hit": 0}, "best: 0", {"hit": 1}, "best: 1"]
    assert stream.partials["hits"] == [{"hit": 0}, {"hit": 1}]


def test_the_async_client_and_an_async_tool(addr: str) -> None:
    async def main(target: str) -> None:
        seen: List[Any] = []

        async def on_partial(event: ProgressEvent) -> None:
            seen.append(event.value)

        async with AsyncClient(target) as aclient:
            stream = await aclient.run("py.search_async", count=3, on_partial=on_partial)
            kinds = [event.type async for event in stream.events()]
            assert kinds.count("partial") == 3
            assert await stream.result == 3
            assert stream.partials == {"hits": [{"hit": 0}, {"hit": 1}, {"hit": 2}]}
            assert seen == [{"hit": 0}, {"hit": 1}, {"hit": 2}]

    asyncio.run(main(addr))


def test_checksum_gives_each_files_digest_as_a_partial_result(client: Client) -> None:
    names = ["partial_tools.py", "conftest.py"]
    stream = client.run("checksum", paths=names)
    result = stream.result
    assert stream.partials["files"] == result["files"]
    assert [entry["path"] for entry in stream.partials["files"]] == names


def test_partial_outputs_assemble_by_node_and_key() -> None:
    outputs = toolstream.PartialOutputs()

    def event(key: str, value: Any, append: bool, call_id: Any = None) -> ProgressEvent:
        import datetime

        return ProgressEvent(
            type="partial",
            run_id="r",
            sequence=1,
            timestamp=datetime.datetime.now(datetime.timezone.utc),
            key=key,
            value=value,
            append=append,
            call_id=call_id,
        )

    outputs.see(event("a", 1, True))
    outputs.see(event("a", 2, True))
    outputs.see(event("", {"x": 1}, False))
    outputs.see(event("", {"x": 2}, False))
    outputs.see(event("a", 9, False, call_id="call_1"))
    outputs.see(event("a", 10, True, call_id="call_1"))
    assert outputs.top == {"a": [1, 2], "": {"x": 2}}
    assert outputs.by_call["call_1"] == {"a": [10]}
