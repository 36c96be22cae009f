"""Iterating a run's stream yields its top level only, with ``event.progress`` always a float, as
the README's loop expects; every event, sub-tasks included, stays in ``stream.events()``. The
``checksum`` tool makes each file a sub-task, announced with no fraction."""

from __future__ import annotations

import asyncio
from typing import List

from toolstream import AsyncClient, Client, ProgressEvent

# Files of this repository (the shared server's root), so each run has several sub-tasks.
FILES = [
    "python/tests/conftest.py",
    "python/tests/test_client.py",
    "python/tests/test_worker.py",
    "python/pyproject.toml",
]


def _check_top_level(iterated: List[ProgressEvent], everything: List[ProgressEvent]) -> None:
    assert iterated, "no top-level progress"
    assert all(e.type == "progress" and e.call_id is None for e in iterated), iterated
    assert all(isinstance(e.progress, float) for e in iterated), iterated
    # The README's loop runs on every one of them.
    lines = [f"{event.progress:.0%} {event.status}" for event in iterated]
    assert lines[-1].startswith("100% "), lines
    fractions = [e.progress for e in iterated]
    assert fractions == sorted(fractions), fractions
    # events() has the sub-tasks: one node per file, under the run's top level.
    sub_tasks = [e for e in everything if e.type == "progress" and e.call_id is not None]
    assert {e.tool for e in sub_tasks} == set(FILES), sub_tasks
    assert all(e.parent_call_id is None for e in sub_tasks), sub_tasks
    assert [e.type for e in everything][0] == "started"
    assert [e.type for e in everything][-1] == "result"


def test_iterating_yields_the_top_level_with_float_progress(server_addr: str) -> None:
    with Client(server_addr) as client:
        stream = client.run("checksum", paths=FILES)
        iterated = list(stream)
        assert len(stream.result["files"]) == len(FILES)
        everything = list(client.run("checksum", paths=FILES).events())
    _check_top_level(iterated, everything)


def test_async_iterating_yields_the_top_level_with_float_progress(server_addr: str) -> None:
    async def main() -> None:
        async with AsyncClient(server_addr) as client:
            stream = await client.run("checksum", paths=FILES)
            iterated = [event async for event in stream]
            assert len((await stream.result)["files"]) == len(FILES)
            stream = await client.run("checksum", paths=FILES)
            everything = [event async for event in stream.events()]
        _check_top_level(iterated, everything)

    asyncio.run(main())
