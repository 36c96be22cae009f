"""The asyncio client: the same surface as the sync one, with await."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Callable, List

import pytest
from conftest import HERE, wait_until

import toolstream
from toolstream import AsyncClient, RunState


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_async_run_iterates_progress_and_awaits_the_result(server_addr: str) -> None:
    async def main() -> None:
        async with AsyncClient(server_addr) as client:
            assert "ticks" in [t.name for t in await client.tools()]
            stream = await client.run("ticks", count=3, interval_ms=1)
            statuses = [event.status async for event in stream]
            assert statuses == ["tick 1/3", "tick 2/3", "tick 3/3"]
            assert await stream.result == {"count": 3}
            assert await stream == {"count": 3}

            stream = await client.run("ticks", count=2, interval_ms=1)
            kinds = [event.type async for event in stream.events()]
            assert kinds == ["started", "progress", "progress", "result"]

            stream = await client.run("ticks", count=2, interval_ms=1)
            assert await stream.result == {"count": 2}  # without iterating first

    run(main())


def test_async_errors_cancel_and_deadline(server_addr: str) -> None:
    async def main() -> None:
        async with AsyncClient(server_addr) as client:
            with pytest.raises(toolstream.ToolNotFound):
                await client.run("nope")
            with pytest.raises(toolstream.InvalidArguments) as invalid:
                await client.run("ticks", count=-1)
            assert invalid.value.field == "count"

            stream = await client.run("ticks", count=100000, interval_ms=10)
            await stream.__anext__()
            await stream.cancel()
            with pytest.raises(toolstream.Cancelled):
                await stream.result
            assert (await client.get_run(stream.run_id)).state is RunState.CANCELLED

            stream = await client.run("ticks", count=100000, interval_ms=10, timeout=0.5)
            with pytest.raises(toolstream.DeadlineExceeded):
                await stream.result

            with pytest.raises(toolstream.RunNotFound):
                await client.get_run("0" * 32)

    run(main())


def test_async_detach_watch_and_list(server_addr: str) -> None:
    async def main() -> None:
        async with AsyncClient(server_addr) as client:
            async with await client.run("ticks", count=10, interval_ms=5, detach=True) as stream:
                first = await stream.__anext__()
            events = [e async for e in client.watch(stream.run_id, after=first.sequence).events()]
            assert events[0].sequence == first.sequence + 1
            assert events[-1].result == {"count": 10}
            listed = [r.run_id async for r in client.runs(tool="ticks")]
            assert stream.run_id in listed
            assert (await client.cancel_run(stream.run_id)).state is RunState.SUCCEEDED

            async with await client.run("ticks", count=100000, interval_ms=10) as leaving:
                await leaving.__anext__()
            with pytest.raises(toolstream.Cancelled):
                await leaving.result

    run(main())
    with toolstream.Client(server_addr) as client:
        cancelled = [r for r in client.runs(state="cancelled")]
        assert cancelled


def test_async_cancellation_reaches_a_worker_tool(
    start_worker: Callable[..., Any], tmp_path: Path
) -> None:
    worker = start_worker(f"{HERE / 'worker_tools.py'}:waits_for_cancel")
    marker = tmp_path / "marker"

    async def main() -> None:
        async with AsyncClient(worker.addr) as client:
            stream = await client.run("waits_for_cancel", marker=str(marker))
            event = await stream.__anext__()
            assert event.data == {"started": True}
            await stream.cancel()
            with pytest.raises(toolstream.Cancelled):
                await stream.result

    run(main())
    wait_until(marker.exists, "the worker's tool to run its finally block")


def test_many_runs_at_once_on_one_connection(server_addr: str) -> None:
    async def main() -> List[Any]:
        async with AsyncClient(server_addr) as client:

            async def one(n: int) -> Any:
                stream = await client.run("ticks", count=n, interval_ms=1)
                return await stream.result

            return await asyncio.gather(*(one(n) for n in range(1, 21)))

    assert run(main()) == [{"count": n} for n in range(1, 21)]
