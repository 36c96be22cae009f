"""``progress.child`` in a worker: the same tool gives the same progress tree served by a worker
(federated by a real server) as run as a command tool, and a long-lived worker keeps nothing of
the calls it ran."""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
from typing import Any, Callable, Dict, Iterator, List, Tuple

import pytest
from conftest import HERE, grpc_entry

import toolstream
from toolstream import Client, ProgressEvent
from toolstream.worker import Worker

NESTED = str(HERE / "nested_tools.py")

#: What the tree test compares of a progress event: node, parent, label, fraction.
Node = Tuple[str, str, str, Any]


def _command_entry() -> str:
    return (
        '[[tools]]\nkind = "command"\nname = "cmd.nested"\n'
        f"command = [{_toml(sys.executable)}, {_toml(NESTED)}]\ndescribe = true\n"
    )


def _toml(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _progress(client: Client, tool: str, **arguments: Any) -> List[ProgressEvent]:
    stream = client.run(tool, **arguments)
    events = [event for event in stream.events() if event.type == "progress"]
    assert stream.result == "All done"
    return events


def _nodes(events: List[ProgressEvent]) -> List[Node]:
    return [(e.call_id or "", e.parent_call_id or "", e.tool or "", e.progress) for e in events]


def _parents(nodes: List[Node]) -> Dict[str, Tuple[str, str]]:
    """Each node's parent and label, checking that neither ever changes."""
    seen: Dict[str, Tuple[str, str]] = {}
    for call_id, parent, label, _ in nodes:
        assert seen.setdefault(call_id, (parent, label)) == (parent, label), nodes
    return seen


def _fractions(nodes: List[Node], call_id: str) -> List[float]:
    return [fraction for node, _, _, fraction in nodes if node == call_id and fraction is not None]


@pytest.fixture
def both(start_worker: Callable[..., Any], start_server: Callable[..., Any]) -> Iterator[Client]:
    """A server with ``cmd.nested`` (a command tool) and ``py.nested`` (the same function in a
    worker)."""
    worker = start_worker(f"{NESTED}:nested,nested_async,orphan")
    server = start_server(_command_entry() + grpc_entry(worker.addr, prefix="py."))
    with Client(server.addr) as client:
        yield client


@pytest.mark.parametrize("deep", [False, True])
def test_progress_child_gives_the_same_tree_in_a_worker_as_in_a_command_tool(
    both: Client, deep: bool
) -> None:
    command = _nodes(_progress(both, "cmd.nested", items=3, deep=deep))
    worker = _nodes(_progress(both, "py.nested", items=3, deep=deep))
    tree = _parents(worker)
    assert tree == _parents(command)
    assert tree["1"] == ("", "item 1") and tree["3"] == ("", "item 3")
    if deep:
        assert tree["2/3"] == ("2", "step 3")
    for call_id in tree:
        if call_id:
            # Finished at 1.0, as the server does it (an announcement, with no fraction, may be
            # coalesced away for a slow reader).
            assert _fractions(worker, call_id)[-1] == 1.0, worker
    # The sub-tasks roll up: the top level only moves forward, to 1.0, never back to a sub-task's
    # own fraction; and the sub-tasks' reports carry no `task` data.
    top = _fractions(worker, "")
    assert top == sorted(top) and top[-1] == pytest.approx(1.0), top
    # The seed's numbers: a ninth per step, or an eighteenth per half step (the server may
    # coalesce some of them for a slow reader, never change them).
    steps = 18 if deep else 9
    assert all(abs(f * steps - round(f * steps)) < 1e-9 for f in top), top
    assert not any("task" in e.data for e in _progress(both, "py.nested", items=1, deep=deep))


def test_an_async_tool_gives_the_same_tree(both: Client) -> None:
    worker = _nodes(_progress(both, "py.nested_async", items=2))
    command = _nodes(_progress(both, "cmd.nested", items=2))
    assert _parents(worker) == _parents(command)
    top = _fractions(worker, "")
    assert top == sorted(top) and top[-1] == pytest.approx(1.0), top


def test_a_sub_task_line_that_breaks_the_protocol_fails_the_call_as_internal(both: Client) -> None:
    with pytest.raises(toolstream.ToolCrashed) as crashed:
        both.run("py.orphan").result
    assert "names task 'nobody' as its parent" in crashed.value.message


def _tracked_objects() -> int:
    gc.collect()
    return len(gc.get_objects())


def test_many_calls_leave_no_per_call_state_behind() -> None:
    sys.path.insert(0, str(HERE))
    import nested_tools

    loop = asyncio.new_event_loop()
    worker = Worker([nested_tools.nested, nested_tools.nested_async], listen="127.0.0.1:0")
    port = loop.run_until_complete(worker.start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        with Client(f"127.0.0.1:{port}") as client:

            def calls(count: int) -> None:
                for _ in range(count):
                    for tool in ("nested", "nested_async"):
                        assert client.run(tool, items=3).result == "All done"

            calls(20)  # gRPC's and the interpreter's own caches fill up first
            # State kept per call grows in every batch; a cache filling up late grows in one:
            # the smaller growth of two batches is what calls leave behind.
            counts = [_tracked_objects()]
            for _ in range(2):
                calls(60)
                counts.append(_tracked_objects())
            grown = min(after - before for before, after in zip(counts, counts[1:]))
    finally:
        asyncio.run_coroutine_threadsafe(worker.stop(0), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()
    # Each of the 120 calls of a batch made 3 sub-tasks (6 announcements); none may stay behind
    # (the module-level list this replaced kept about 6 objects a call: 719 a batch).
    assert grown < 120, f"{grown} more objects after each batch of 120 calls"
