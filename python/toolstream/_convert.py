"""Conversions between the contract's messages and the client's Python values: the one place that
knows both."""

from __future__ import annotations

import datetime
import math
from typing import Any, Dict, List, Mapping, Optional

from google.protobuf import struct_pb2, timestamp_pb2

from .errors import from_status
from .events import CallProgress, EventType, ProgressEvent, Run, RunState, ToolInfo
from .schema import json_default
from .v1 import toolstream_pb2 as pb

# Whole numbers up to 2**53 are exact as doubles; bigger ones stay floats.
_EXACT = 2.0**53


def number(value: float) -> Any:
    """A protobuf number as Python: whole numbers as ``int`` (JSON numbers travel as doubles)."""
    if value.is_integer() and abs(value) <= _EXACT:
        return int(value)
    return value


def from_value(value: struct_pb2.Value) -> Any:
    """A ``google.protobuf.Value`` as plain Python (dict, list, str, int/float, bool, None)."""
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        return number(value.number_value)
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return from_struct(value.struct_value)
    if kind == "list_value":
        return [from_value(v) for v in value.list_value.values]
    return None


def from_struct(struct: struct_pb2.Struct) -> Dict[str, Any]:
    """A ``google.protobuf.Struct`` as a dict, its keys sorted (a Struct is a map: the order the
    tool wrote them in is not kept on the wire, so a stable one is given instead)."""
    fields = struct.fields
    return {key: from_value(fields[key]) for key in sorted(fields)}


def _plain(obj: Any) -> Any:
    """``obj`` as JSON values only (dataclasses, models, tuples... through ``json_default``)."""
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return _plain(json_default(obj))


def to_value(obj: Any) -> struct_pb2.Value:
    """A Python value as a ``google.protobuf.Value``."""
    value = struct_pb2.Value()
    _fill(value, _plain(obj))
    return value


def _fill(value: struct_pb2.Value, obj: Any) -> None:
    if obj is None:
        value.null_value = struct_pb2.NULL_VALUE
    elif isinstance(obj, bool):
        value.bool_value = obj
    elif isinstance(obj, (int, float)):
        if isinstance(obj, float) and not math.isfinite(obj):
            raise ValueError(f"{obj} is not a JSON number")
        value.number_value = float(obj)
    elif isinstance(obj, str):
        value.string_value = obj
    elif isinstance(obj, dict):
        value.struct_value.SetInParent()
        for key, item in obj.items():
            _fill(value.struct_value.fields[key], item)
    else:
        value.list_value.SetInParent()
        for item in obj:
            _fill(value.list_value.values.add(), item)


def to_struct(obj: Mapping[str, Any]) -> struct_pb2.Struct:
    """A mapping as a ``google.protobuf.Struct``."""
    struct = struct_pb2.Struct()
    for key, item in _plain(obj).items():
        _fill(struct.fields[key], item)
    return struct


def timestamp(stamp: timestamp_pb2.Timestamp) -> datetime.datetime:
    """A protobuf timestamp as an aware UTC datetime."""
    return datetime.datetime.fromtimestamp(
        stamp.seconds + stamp.nanos / 1e9, tz=datetime.timezone.utc
    )


def now_timestamp() -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.GetCurrentTime()
    return stamp


def _optional(text: str) -> Optional[str]:
    return text or None


def event(message: pb.RunEvent) -> ProgressEvent:
    """A wire ``RunEvent`` as a :class:`ProgressEvent`."""
    kind = message.WhichOneof("event")
    base: Dict[str, Any] = {
        "run_id": message.run_id,
        "sequence": message.sequence,
        "timestamp": timestamp(message.timestamp),
    }
    if kind == "progress":
        p = message.progress
        return ProgressEvent(
            type="progress",
            progress=p.progress if p.HasField("progress") else None,
            status=p.status if p.HasField("status") else None,
            data=from_struct(p.data),
            call_id=_optional(p.call_id),
            tool=_optional(p.tool),
            parent_call_id=_optional(p.parent_call_id),
            **base,
        )
    if kind == "result":
        value = from_value(message.result.value)
        return ProgressEvent(type="result", data=value, result=value, **base)
    if kind == "started":
        s = message.started
        data: Dict[str, Any] = {}
        if s.model:
            data["model"] = s.model
        if s.tools:
            data["tools"] = list(s.tools)
        if s.max_steps:
            data["max_steps"] = s.max_steps
        if s.deadline_ms:
            data["deadline_ms"] = s.deadline_ms
        return ProgressEvent(type="started", tool=_optional(s.tool), data=data, **base)
    if kind == "tool_call_started":
        c = message.tool_call_started
        arguments: Any = from_struct(c.arguments) if c.HasField("arguments") else {}
        if not c.HasField("arguments") and c.raw_arguments:
            arguments = {"raw_arguments": c.raw_arguments}
        return ProgressEvent(
            type="tool_call_started",
            data=arguments,
            call_id=_optional(c.call_id),
            tool=_optional(c.tool),
            parent_call_id=_optional(c.parent_call_id),
            **base,
        )
    if kind == "tool_call_finished":
        f = message.tool_call_finished
        outcome = f.WhichOneof("outcome")
        result = from_value(f.result) if outcome == "result" else None
        return ProgressEvent(
            type="tool_call_finished",
            result=result,
            data={} if result is None else {"result": result},
            error=f.error if outcome == "error" else None,
            call_id=_optional(f.call_id),
            tool=_optional(f.tool),
            parent_call_id=_optional(f.parent_call_id),
            **base,
        )
    if kind == "message":
        return ProgressEvent(type="message", text=message.message.text, **base)
    if kind == "partial_result":
        r = message.partial_result
        value = from_value(r.value)
        return ProgressEvent(
            type="partial",
            data=value,
            value=value,
            key=r.key,
            append=r.append,
            call_id=_optional(r.call_id),
            tool=_optional(r.tool),
            parent_call_id=_optional(r.parent_call_id),
            **base,
        )
    if kind == "gap":
        g = message.gap
        return ProgressEvent(
            type="gap",
            status=g.reason or None,
            data={
                "from_sequence": g.from_sequence,
                "to_sequence": g.to_sequence,
                "reason": g.reason,
            },
            **base,
        )
    if kind == "heartbeat":
        return ProgressEvent(
            type="heartbeat", data={"last_sequence": message.heartbeat.last_sequence}, **base
        )
    if kind == "input_requested":
        q = message.input_requested
        asked: Dict[str, Any] = {
            "request_id": q.request_id,
            "prompt": q.prompt,
            "kind": "approval" if q.kind == pb.INPUT_KIND_APPROVAL else "input",
            "schema": from_struct(q.schema) if q.HasField("schema") else None,
        }
        if q.HasField("data"):
            asked["data"] = from_struct(q.data)
        if q.HasField("expire_time"):
            asked["expire_time"] = timestamp(q.expire_time)
        return ProgressEvent(
            type="input_requested",
            status=q.prompt,
            data=asked,
            call_id=_optional(q.call_id),
            tool=_optional(q.tool),
            parent_call_id=_optional(q.parent_call_id),
            **base,
        )
    if kind == "input_resolved":
        v = message.input_resolved
        outcome = pb.InputOutcome.Name(v.outcome).removeprefix("INPUT_OUTCOME_").lower()
        resolved: Dict[str, Any] = {"request_id": v.request_id, "outcome": outcome}
        if v.HasField("value"):
            resolved["value"] = from_value(v.value)
        return ProgressEvent(type="input_resolved", data=resolved, **base)
    # An event kind newer than this client: shown as a heartbeat-like no-op rather than failing.
    unknown: EventType = "heartbeat"
    return ProgressEvent(type=unknown, data={"unknown_event": kind}, **base)


def tool_info(tool: pb.Tool) -> ToolInfo:
    return ToolInfo(
        name=tool.name,
        description=tool.description,
        input_schema=from_struct(tool.input_schema) if tool.HasField("input_schema") else {},
        output_schema=from_struct(tool.output_schema) if tool.HasField("output_schema") else None,
        kind=tool.kind,
    )


_STATES = {
    pb.RUN_STATE_RUNNING: RunState.RUNNING,
    pb.RUN_STATE_SUCCEEDED: RunState.SUCCEEDED,
    pb.RUN_STATE_FAILED: RunState.FAILED,
    pb.RUN_STATE_CANCELLED: RunState.CANCELLED,
    pb.RUN_STATE_INPUT_REQUIRED: RunState.INPUT_REQUIRED,
}
_STATE_NUMBERS = {state: number for number, state in _STATES.items()}


def state_number(state: Any) -> Any:
    """``RunState`` (or its name) as the contract's number; 0 (any) for ``None``."""
    return _STATE_NUMBERS[RunState(state)] if state else pb.RUN_STATE_UNSPECIFIED


def respond_request(
    run_id: str, request_id: str, value: Any = None, decline: bool = False
) -> pb.RespondToRunRequest:
    """A ``RespondToRunRequest``: ``value`` as JSON, or a decline."""
    if decline:
        return pb.RespondToRunRequest(run_id=run_id, request_id=request_id, decline=True)
    return pb.RespondToRunRequest(run_id=run_id, request_id=request_id, value=to_value(value))


def run(message: pb.Run) -> Run:
    import grpc

    state = _STATES.get(message.state, RunState.RUNNING)
    error = None
    if state in (RunState.FAILED, RunState.CANCELLED):
        try:
            code = next(c for c in grpc.StatusCode if c.value[0] == message.error_code)
        except StopIteration:
            code = grpc.StatusCode.UNKNOWN
        error = from_status(code, message.error_message, run_id=message.run_id)
    return Run(
        run_id=message.run_id,
        state=state,
        tool=message.tool or None,
        agent=message.agent,
        created_at=timestamp(message.create_time) if message.HasField("create_time") else None,
        ended_at=timestamp(message.end_time) if message.HasField("end_time") else None,
        last_sequence=message.last_sequence,
        progress=[
            CallProgress(
                progress=p.progress if p.HasField("progress") else None,
                status=p.status if p.HasField("status") else None,
                data=from_struct(p.data),
                call_id=_optional(p.call_id),
                tool=_optional(p.tool),
                parent_call_id=_optional(p.parent_call_id),
            )
            for p in message.progress
        ],
        result=from_value(message.result) if message.HasField("result") else None,
        error=error,
        labels=dict(message.labels),
        idempotency_key=message.idempotency_key or None,
    )


def options(
    *,
    min_interval: Optional[float],
    detach: bool,
    heartbeat: Optional[float],
) -> pb.RunOptions:
    """Delivery options from the client's keyword arguments (seconds → milliseconds)."""
    opts = pb.RunOptions()
    if min_interval is not None:
        if min_interval < 0:
            raise ValueError("min_interval must not be negative")
        opts.min_progress_interval_ms = max(1, round(min_interval * 1000)) if min_interval else 0
    if detach:
        opts.on_disconnect = pb.ON_DISCONNECT_CONTINUE
    if heartbeat is not None:
        if heartbeat < 0:
            raise ValueError("heartbeat must not be negative")
        opts.heartbeat_interval_ms = max(1, round(heartbeat * 1000)) if heartbeat else 0
    return opts


def merge_arguments(arguments: Optional[Mapping[str, Any]], extra: Mapping[str, Any]) -> Dict[str, Any]:
    """``arguments={...}`` and ``**kwargs`` together; a name given twice is a mistake."""
    merged: Dict[str, Any] = dict(arguments or {})
    for name, value in extra.items():
        if name in merged:
            raise TypeError(f"argument {name!r} given both as a keyword and in arguments=")
        merged[name] = value
    return merged


def tool_names(tools: Optional[List[Any]]) -> List[str]:
    """Tool names from names or from the functions that are the tools (``@progress`` functions
    served by a worker have their function's name, or the one given to ``@progress``)."""
    from .schema import tool_name

    names: List[str] = []
    for tool in tools or []:
        if isinstance(tool, str):
            names.append(tool)
        elif callable(tool):
            names.append(tool_name(tool))
        else:
            raise TypeError(f"a tool is a name or a function, not {tool!r}")
    return names
