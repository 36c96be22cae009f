"""Tools that emit partial results, served both ways: as a command tool (``python
partial_tools.py``, through ``toolstream.tool.main``) and by a worker (``python -m
toolstream.worker partial_tools.py``)."""

from __future__ import annotations

import sys
from typing import Any, AsyncIterator, Dict, Generator

import toolstream
from toolstream import progress
from toolstream.tool import main


@progress
def search(count: int = 3) -> Generator[Dict[str, Any], None, int]:
    """Finds ``count`` hits, each sent as it is found; the best so far replaces the main output."""
    for i in range(count):
        yield {"progress": (i + 1) / count, "status": f"hit {i}"}
        yield toolstream.partial({"hit": i}, key="hits", append=True)
        yield progress.partial(f"best: {i}")
    return count


@progress
async def search_async(count: int = 3) -> AsyncIterator[Dict[str, Any]]:
    """``search`` as an async generator."""
    for i in range(count):
        yield toolstream.partial({"hit": i}, key="hits", append=True)
    yield {"result": count}


@progress
def per_file(count: int = 2) -> Generator[Dict[str, Any], None, int]:
    """One sub-task per file, each with its digest as a partial result of that sub-task."""
    for i in range(count):
        with progress.child(f"file {i}") as sub:
            yield sub.report(0.5)
            yield toolstream.partial(f"digest {i}", key="digest", task=sub)
    return count


if __name__ == "__main__":
    main(per_file if sys.argv[1:] == ["per_file"] else search)
