"""``labels=`` and ``idempotency_key=`` on ``run`` and ``agent.run``, and ``runs(labels=...)``,
against the real server (docs/backend.md): labelled runs are found again by their labels; a
retried start with the same key gets the first run; the same key with other arguments is
``FailedPrecondition``."""

from __future__ import annotations

import asyncio
from typing import Any, Callable, List

import pytest
from standin_model import StandInModel, text

from toolstream import AsyncClient, Client, FailedPrecondition, Run


@pytest.fixture
def addr(start_server: Callable[..., Any]) -> str:
    addr: str = start_server(None).addr
    return addr


def test_runs_are_found_by_their_labels(addr: str) -> None:
    with Client(addr) as client:
        first = client.run("ticks", count=1, interval_ms=1, labels={"team": "billing", "order": "1"})
        second = client.run("ticks", count=1, interval_ms=1, labels={"team": "billing", "order": "2"})
        client.run("ticks", count=1, interval_ms=1).result
        assert first.result == second.result == {"count": 1}
        billing = list(client.runs(labels={"team": "billing"}))
        assert sorted(r.run_id for r in billing) == sorted([first.run_id, second.run_id])
        [order] = list(client.runs(labels={"team": "billing", "order": "2"}))
        assert order.run_id == second.run_id
        assert order.labels == {"team": "billing", "order": "2"}
        assert order.idempotency_key is None


def test_a_retry_with_the_same_key_gets_the_first_run(addr: str) -> None:
    with Client(addr) as client:
        first = client.run("ticks", count=2, interval_ms=1, idempotency_key="order-8812", detach=True)
        again = client.run("ticks", count=2, interval_ms=1, idempotency_key="order-8812")
        assert again.run_id == first.run_id
        assert again.result == {"count": 2}
        assert client.get_run(first.run_id).idempotency_key == "order-8812"
        with pytest.raises(FailedPrecondition, match="order-8812"):
            client.run("ticks", count=3, interval_ms=1, idempotency_key="order-8812")


def test_the_async_client_takes_labels_and_keys(addr: str) -> None:
    async def main() -> List[Run]:
        async with AsyncClient(addr) as client:
            stream = await client.run(
                "ticks", count=1, interval_ms=1, labels={"job": "a"}, idempotency_key="job-a"
            )
            again = await client.run("ticks", count=1, interval_ms=1, idempotency_key="job-a")
            assert again.run_id == stream.run_id
            await stream.result
            return [run async for run in client.runs(labels={"job": "a"})]

    [run] = asyncio.run(main())
    assert run.labels == {"job": "a"} and run.idempotency_key == "job-a"


def test_an_agent_run_carries_labels_and_a_key(start_server: Callable[..., Any]) -> None:
    model = StandInModel([text("Hello."), text("Hello again.")])
    try:
        server = start_server(None, "--model-url", model.url, "--model", "standin")
        with Client(server.addr) as client:
            agent = client.agent(tools=["ticks"])
            assert agent.run("Say hello", labels={"kind": "greeting"}, idempotency_key="hi-1") == "Hello."
            # The same key again: the first run's answer, not a second run.
            assert agent.run("Say hello", idempotency_key="hi-1") == "Hello."
            assert asyncio.run(agent.arun("Say hello", labels={"kind": "async"})) == "Hello again."

            async def streamed() -> List[str]:
                events = agent.arun_stream("Say hello", labels={"kind": "streamed"},
                                           idempotency_key="hi-1")
                return [event.type async for event in events]

            # The key of the first run: its events again, no new run.
            assert "result" in asyncio.run(streamed())
            [run] = list(client.runs(labels={"kind": "greeting"}))
            assert run.agent and run.idempotency_key == "hi-1"
            assert [r.labels for r in client.runs(labels={"kind": "async"})] == [{"kind": "async"}]
            assert list(client.runs(labels={"kind": "streamed"})) == []
        assert len(model.requests) == 2
    finally:
        model.close()
