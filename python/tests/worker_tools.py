"""Tools the worker tests serve (``python -m toolstream.worker worker_tools.py``): every kind of
function, typed arguments, tools that wait to be cancelled and say so in a file."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import os
import threading
import time
from typing import Any, Dict, List, Literal, Optional

from toolstream import InputNotAnswered, ask, progress


class Color(str, enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclasses.dataclass
class Window:
    """A time window.

    Attributes:
        start: First day.
        days: How many days.
    """

    start: str
    days: int = 7


@progress
def typed(
    names: List[str],
    window: Window,
    mode: Literal["fast", "deep"] = "fast",
    limit: Optional[int] = None,
    color: Color = Color.RED,
    ratio: float = 0.5,
) -> Dict[str, Any]:
    """Echoes its arguments as it received them.

    Args:
        names: Who to greet.
        window: When.
        mode: How hard to try.
        limit: At most this many.
    """
    yield {"progress": 0.5, "status": "checking types"}
    return {
        "names": names,
        "window": dataclasses.asdict(window),
        "window_type": type(window).__name__,
        "mode": mode,
        "limit": limit,
        "limit_type": type(limit).__name__,
        "color": color.value,
        "ratio_type": type(ratio).__name__,
    }


@progress(name="renamed", description="A tool with another name.")
def named_otherwise(text: str) -> str:
    return text.upper()


def plain(a: int, b: int = 2) -> int:
    """Adds, without progress."""
    return a + b


async def coroutine(text: str) -> str:
    """An async function."""
    await asyncio.sleep(0)
    return text[::-1]


@progress
async def async_steps(count: int):  # type: ignore[no-untyped-def]
    """An async generator: yields its result last."""
    for i in range(count):
        yield {"progress": (i + 1) / count, "status": f"step {i + 1}"}
        await asyncio.sleep(0)
    yield {"result": {"count": count}}


@progress
def waits_for_cancel(marker: str) -> str:
    """Reports forever until cancelled; its finally block writes `marker`."""
    try:
        i = 0
        while True:
            i += 1
            yield {"status": f"waiting ({i})", "started": True}
            time.sleep(0.01)
    finally:
        with open(marker, "w") as handle:
            handle.write("finally ran")


@progress
async def async_waits_for_cancel(marker: str):  # type: ignore[no-untyped-def]
    """The same, as an async generator."""
    try:
        yield {"status": "waiting"}
        await asyncio.Event().wait()
    finally:
        with open(marker, "w") as handle:
            handle.write("finally ran")


@progress
def blocks(gate: str) -> str:
    """Holds its slot until the file `gate` exists."""
    yield {"status": "holding a slot"}
    while not os.path.exists(gate):
        time.sleep(0.01)
    return "released"


@progress
def asks() -> bool:
    return (yield ask("Proceed?", bool))


@progress
def fails(message: str) -> str:
    yield {"progress": 0.5, "status": "about to fail"}
    raise RuntimeError(message)


_lock = threading.Lock()
_calls = {"n": 0}


@progress
def counts() -> int:
    """The number of calls this process has served: one process, many calls."""
    with _lock:
        _calls["n"] += 1
        return _calls["n"]
    yield  # pragma: no cover - makes this a generator


def not_json() -> object:
    return object()


@progress
def collides(timeout: int, detach: bool, arguments: str, tool: str, min_interval: float) -> dict:
    """Takes arguments named like the client's own options."""
    yield {"status": "checking names"}
    return {
        "timeout": timeout,
        "detach": detach,
        "arguments": arguments,
        "tool": tool,
        "min_interval": min_interval,
    }


@progress
def silent_then_done(gate: str) -> str:
    """Says nothing until the file `gate` exists."""
    while not os.path.exists(gate):
        time.sleep(0.01)
    return "done"
    yield  # pragma: no cover - makes this a generator


@progress
def asks_or_says_why() -> str:
    """Asks for a confirmation, and says why when it got none."""
    try:
        overwrite = yield ask("Overwrite report.pdf?", bool)
    except InputNotAnswered as error:
        return f"not answered: {error.outcome}"
    return "overwritten" if overwrite else "kept"


@progress
async def async_asks():  # type: ignore[no-untyped-def]
    """An async generator that asks for a number and yields its double as the result."""
    count = yield ask("How many copies?", int)
    yield {"result": count * 2}


@progress
def asks_twice() -> List[bool]:
    """Asks two questions, one after the other."""
    first = yield ask("First?", bool)
    second = yield ask("Second?", bool)
    return [first, second]
