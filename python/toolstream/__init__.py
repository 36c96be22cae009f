"""toolstream for Python: a client for toolstream servers with the API of the progress-streaming
library it comes from, and two ways to write tools in Python.

Client (``grpcio``)::

    from toolstream import Client

    client = Client("127.0.0.1:50051")
    stream = client.run("batch_process", items=my_items)     # a ProgressStream
    for event in stream:                                       # ProgressEvent
        print(f"Progress: {event.progress * 100:.0f}%")
    result = stream.result

Tools: a ``@progress`` generator is a tool; it can ask a person with
``answer = yield toolstream.ask(prompt, type)``. Run one per call as a command tool with
:func:`toolstream.tool.main` (standard library only), or serve many in one long-lived process
with :func:`toolstream.worker.serve`. Their input schemas come from the type hints.

Modules: :mod:`toolstream.client` (sync client), :mod:`toolstream.aio` (asyncio client),
:mod:`toolstream.errors` (one exception per status), :mod:`toolstream.events` (what the client
returns), :mod:`toolstream.tool`, :mod:`toolstream.worker`, :mod:`toolstream.schema`, and the
generated contract in :mod:`toolstream.v1`.

Importing ``toolstream`` itself loads nothing but the standard library: the client's names load
``grpc`` on first use, so a command tool needs nothing installed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .tool import (
    InputCancelled as InputCancelled,
    InputDeclined as InputDeclined,
    InputExpired as InputExpired,
    InputNotAnswered as InputNotAnswered,
    InputRefused as InputRefused,
    ask as ask,
    partial as partial,
    progress as progress,
)

# The one place the Python package's version is set (pyproject.toml reads it); it is the
# server's too: Cargo.toml says the same, and tests/test_version.py fails when they drift.
__version__ = "0.3.0"

if TYPE_CHECKING:
    from .aio import (
        AsyncAgent as AsyncAgent,
        AsyncClient as AsyncClient,
        AsyncProgressStream as AsyncProgressStream,
    )
    from ._client_base import Decline as Decline
    from .client import (
        Agent as Agent,
        Client as Client,
        ProgressStream as ProgressStream,
    )
    from .errors import (
        Cancelled as Cancelled,
        DeadlineExceeded as DeadlineExceeded,
        FailedPrecondition as FailedPrecondition,
        InvalidArguments as InvalidArguments,
        NotFound as NotFound,
        OutOfRange as OutOfRange,
        PermissionDenied as PermissionDenied,
        ResourceExhausted as ResourceExhausted,
        RunNotFound as RunNotFound,
        ToolCrashed as ToolCrashed,
        ToolFailed as ToolFailed,
        ToolNotFound as ToolNotFound,
        ToolstreamError as ToolstreamError,
        Unauthenticated as Unauthenticated,
        Unavailable as Unavailable,
        Unimplemented as Unimplemented,
    )
    from .events import (
        CallProgress as CallProgress,
        PartialOutputs as PartialOutputs,
        ProgressEvent as ProgressEvent,
        Run as Run,
        RunState as RunState,
        ToolInfo as ToolInfo,
    )

_LAZY = {
    "Client": "client",
    "ProgressStream": "client",
    "Agent": "client",
    "AsyncClient": "aio",
    "AsyncProgressStream": "aio",
    "AsyncAgent": "aio",
    "ProgressEvent": "events",
    "PartialOutputs": "events",
    "Run": "events",
    "RunState": "events",
    "ToolInfo": "events",
    "CallProgress": "events",
    "Decline": "_client_base",
    "ToolstreamError": "errors",
    "NotFound": "errors",
    "ToolNotFound": "errors",
    "RunNotFound": "errors",
    "InvalidArguments": "errors",
    "ToolFailed": "errors",
    "ToolCrashed": "errors",
    "PermissionDenied": "errors",
    "DeadlineExceeded": "errors",
    "ResourceExhausted": "errors",
    "Unavailable": "errors",
    "Cancelled": "errors",
    "FailedPrecondition": "errors",
    "Unauthenticated": "errors",
    "OutOfRange": "errors",
    "Unimplemented": "errors",
}

_TOOL_NAMES = [
    "progress",
    "partial",
    "ask",
    "InputNotAnswered",
    "InputDeclined",
    "InputExpired",
    "InputCancelled",
    "InputRefused",
]

__all__ = [
    *_TOOL_NAMES,
    "Client",
    "ProgressStream",
    "Agent",
    "AsyncClient",
    "AsyncProgressStream",
    "AsyncAgent",
    "ProgressEvent",
    "PartialOutputs",
    "Run",
    "RunState",
    "ToolInfo",
    "CallProgress",
    "Decline",
    "ToolstreamError",
    "NotFound",
    "ToolNotFound",
    "RunNotFound",
    "InvalidArguments",
    "ToolFailed",
    "ToolCrashed",
    "PermissionDenied",
    "DeadlineExceeded",
    "ResourceExhausted",
    "Unavailable",
    "Cancelled",
    "FailedPrecondition",
    "Unauthenticated",
    "OutOfRange",
    "Unimplemented",
]
assert set(__all__) == {*_TOOL_NAMES, *_LAZY}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'toolstream' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
