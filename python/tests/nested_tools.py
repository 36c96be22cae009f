"""The seed's nested progress example written with ``progress.child``, served both ways: as a
command tool (``python nested_tools.py``, through ``toolstream.tool.main``) and by a worker
(``python -m toolstream.worker nested_tools.py``). The two must give the client the same tree."""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Dict, Generator

from toolstream import progress
from toolstream.tool import main


@progress
def nested(items: int = 3, deep: bool = False) -> Generator[Dict[str, Any], None, str]:
    """The seed's nested example: ``items`` items of three steps each; with ``deep``, each step
    is a sub-task of its item (three levels)."""
    for i in range(items):
        with progress.child(f"item {i + 1}", weight=1 / items) as sub:
            for j in range(3):
                status = f"Item {i + 1}, step {j + 1}"
                if deep:
                    with sub.child(f"step {j + 1}", weight=1 / 3) as step:
                        yield step.report(0.5, status)
                else:
                    yield sub.report((j + 1) / 3, status)
    return "All done"


@progress
async def nested_async(items: int = 3) -> AsyncIterator[Dict[str, Any]]:
    """``nested`` as an async generator."""
    for i in range(items):
        with progress.child(f"item {i + 1}", weight=1 / items) as sub:
            for j in range(3):
                await asyncio.sleep(0)
                yield sub.report((j + 1) / 3, f"Item {i + 1}, step {j + 1}")
    yield {"result": "All done"}


@progress
def orphan() -> Generator[Dict[str, Any], None, str]:
    """Names a parent sub-task that was never made: the protocol is broken."""
    yield {"task": {"id": "child", "parent": "nobody"}, "progress": 0.5}
    return "never"


if __name__ == "__main__":
    main(nested)
