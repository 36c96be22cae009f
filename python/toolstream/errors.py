"""One exception class per gRPC status a toolstream call can end with, all :class:`ToolstreamError`.

Each carries the status as ``code`` (a :class:`grpc.StatusCode`), the server's message as
``message`` (also ``str(error)``), and the run's id as ``run_id`` when the run had started::

    try:
        result = client.run("checksum", paths=["/etc/passwd"]).result
    except toolstream.PermissionDenied as error:
        print(error.code.name, error.message)       # PERMISSION_DENIED path ... is outside the root
    except toolstream.ToolstreamError as error:      # every other status
        ...

| status | class |
|---|---|
| NOT_FOUND | :class:`ToolNotFound` (an unknown tool), :class:`RunNotFound` (an unknown or expired run), else :class:`NotFound` |
| INVALID_ARGUMENT | :class:`InvalidArguments`, with ``field`` (the first field named) and ``fields`` |
| ABORTED | :class:`ToolFailed`: the tool reported an error |
| INTERNAL | :class:`ToolCrashed` (a :class:`ToolFailed` too): the tool crashed or broke its protocol |
| PERMISSION_DENIED | :class:`PermissionDenied` |
| DEADLINE_EXCEEDED | :class:`DeadlineExceeded` |
| RESOURCE_EXHAUSTED | :class:`ResourceExhausted`: the server's run limit |
| UNAVAILABLE | :class:`Unavailable`: the server, a remote tool or the model cannot be reached (retry) |
| CANCELLED | :class:`Cancelled` |
| FAILED_PRECONDITION | :class:`FailedPrecondition`: no model configured, the agent ran out of steps, ... |
| UNAUTHENTICATED | :class:`Unauthenticated` |
| OUT_OF_RANGE | :class:`OutOfRange`: a message over a size limit |
| UNIMPLEMENTED | :class:`Unimplemented` |
| anything else | :class:`ToolstreamError` |
"""

from __future__ import annotations

import re
from typing import Dict, List, Optional, Type

import grpc

__all__ = [
    "Cancelled",
    "DeadlineExceeded",
    "FailedPrecondition",
    "InvalidArguments",
    "NotFound",
    "OutOfRange",
    "PermissionDenied",
    "ResourceExhausted",
    "RunNotFound",
    "ToolCrashed",
    "ToolFailed",
    "ToolNotFound",
    "ToolstreamError",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "from_rpc_error",
    "from_status",
]


class ToolstreamError(Exception):
    """A toolstream call or run ended with an error status."""

    #: The status this class stands for; an instance may carry another (see ``code``).
    default_code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(
        self,
        message: str,
        *,
        code: Optional[grpc.StatusCode] = None,
        run_id: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code: grpc.StatusCode = code if code is not None else self.default_code
        self.run_id = run_id

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={self.code.name})"


class NotFound(ToolstreamError):
    """NOT_FOUND: something the request names does not exist."""

    default_code = grpc.StatusCode.NOT_FOUND


class ToolNotFound(NotFound):
    """NOT_FOUND: the server has no tool of that name (``client.tools()`` lists those it has)."""


class RunNotFound(NotFound):
    """NOT_FOUND: no run has that id, or it expired (runs are kept for the server's retention
    time)."""


class InvalidArguments(ToolstreamError):
    """INVALID_ARGUMENT: the arguments do not satisfy the tool's input schema.

    ``fields`` are the fields the server's message names (``["count"]`` for "field count: "lots"
    is not of type "integer""), ``field`` the first of them, ``None`` when it names none."""

    default_code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(
        self,
        message: str,
        *,
        code: Optional[grpc.StatusCode] = None,
        run_id: Optional[str] = None,
    ) -> None:
        super().__init__(message, code=code, run_id=run_id)
        self.fields: List[str] = _fields(message)
        self.field: Optional[str] = self.fields[0] if self.fields else None


_FIELD = re.compile(r"\bfield ([^\s:]+):")
_REQUIRED = re.compile(r'"([^"]+)" is a required property')
_UNEXPECTED = re.compile(r"Additional properties are not allowed \(([^)]*)\)")


def _fields(message: str) -> List[str]:
    fields: List[str] = []
    for match in _FIELD.finditer(message):
        fields.append(match.group(1))
    for match in _REQUIRED.finditer(message):
        fields.append(match.group(1))
    for match in _UNEXPECTED.finditer(message):
        fields.extend(re.findall(r"'([^']+)'", match.group(1)))
    unique: List[str] = []
    for name in fields:
        if name not in unique:
            unique.append(name)
    return unique


class ToolFailed(ToolstreamError):
    """ABORTED: the tool ran and reported an error (a Python tool raised; the message holds
    ``"<ExceptionType>: text"``)."""

    default_code = grpc.StatusCode.ABORTED


class ToolCrashed(ToolFailed):
    """INTERNAL: the tool crashed (panicked, exited without a result) or broke its protocol."""

    default_code = grpc.StatusCode.INTERNAL


class PermissionDenied(ToolstreamError):
    """PERMISSION_DENIED: the tool was asked to touch something it may not (a path outside the
    server's root), or the credentials may not run it."""

    default_code = grpc.StatusCode.PERMISSION_DENIED


class DeadlineExceeded(ToolstreamError):
    """DEADLINE_EXCEEDED: the run's deadline (``timeout=``) or the tool's own time limit passed."""

    default_code = grpc.StatusCode.DEADLINE_EXCEEDED


class ResourceExhausted(ToolstreamError):
    """RESOURCE_EXHAUSTED: the server (or worker) is running as many runs as it may; retry."""

    default_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(ToolstreamError):
    """UNAVAILABLE: the server cannot be reached or is shutting down, or a remote tool or the
    model endpoint cannot be reached; retry."""

    default_code = grpc.StatusCode.UNAVAILABLE


class Cancelled(ToolstreamError):
    """CANCELLED: the run was cancelled (``stream.cancel()``, ``client.cancel_run``, shutdown)."""

    default_code = grpc.StatusCode.CANCELLED


class FailedPrecondition(ToolstreamError):
    """FAILED_PRECONDITION: the server cannot do this now: no model configured for agents, the
    model refused the request, the agent used all its steps."""

    default_code = grpc.StatusCode.FAILED_PRECONDITION


class Unauthenticated(ToolstreamError):
    """UNAUTHENTICATED: no or a bad bearer token (``Client(token=...)``)."""

    default_code = grpc.StatusCode.UNAUTHENTICATED


class OutOfRange(ToolstreamError):
    """OUT_OF_RANGE: a message is larger than a size limit (``max_message_bytes``)."""

    default_code = grpc.StatusCode.OUT_OF_RANGE


class Unimplemented(ToolstreamError):
    """UNIMPLEMENTED: the server does not offer this call (a worker has no RunService or
    RunAgent)."""

    default_code = grpc.StatusCode.UNIMPLEMENTED


_BY_CODE: Dict[grpc.StatusCode, Type[ToolstreamError]] = {
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArguments,
    grpc.StatusCode.ABORTED: ToolFailed,
    grpc.StatusCode.INTERNAL: ToolCrashed,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.CANCELLED: Cancelled,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.OUT_OF_RANGE: OutOfRange,
    grpc.StatusCode.UNIMPLEMENTED: Unimplemented,
}


def from_status(
    code: grpc.StatusCode,
    message: str,
    *,
    run_id: Optional[str] = None,
    about_runs: bool = False,
) -> ToolstreamError:
    """The exception for a status. ``about_runs``: the call named a run (GetRun, WatchRun,
    CancelRun), so NOT_FOUND means the run, not a tool."""
    cls = _BY_CODE.get(code, ToolstreamError)
    if cls is NotFound:
        if about_runs:
            cls = RunNotFound
        elif "unknown tool" in message:
            cls = ToolNotFound
    return cls(message, code=code, run_id=run_id)


def from_rpc_error(
    error: grpc.RpcError, *, run_id: Optional[str] = None, about_runs: bool = False
) -> ToolstreamError:
    """The exception for a failed gRPC call (sync or asyncio)."""
    code = error.code() if callable(getattr(error, "code", None)) else None
    details = error.details() if callable(getattr(error, "details", None)) else None
    if not isinstance(code, grpc.StatusCode):
        code = grpc.StatusCode.UNKNOWN
    return from_status(code, details or code.name, run_id=run_id, about_runs=about_runs)
