"""What the client hands out: the events of a run, runs, tools. Plain frozen dataclasses; each has
``dict()`` for JSON."""

from __future__ import annotations

import dataclasses
import datetime
import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, List, Literal, Optional

if TYPE_CHECKING:
    from .errors import ToolstreamError

__all__ = [
    "CallProgress",
    "EventType",
    "PartialOutputs",
    "ProgressEvent",
    "Run",
    "RunState",
    "ToolInfo",
]

#: The kinds of event a run streams (``ProgressEvent.type``): the name of the contract's
#: ``RunEvent.event`` variant.
EventType = Literal[
    "started",
    "progress",
    "result",
    "tool_call_started",
    "tool_call_finished",
    "message",
    "gap",
    "heartbeat",
    "input_requested",
    "input_resolved",
    "partial",
]


@dataclass(frozen=True)
class ProgressEvent:
    """One event of a run.

    The seed's fields come first and mean what they meant there; the others say where the event
    sits in the run:

    - ``progress``: fraction done, 0.0 to 1.0; ``None`` when the tool reported only a status, on
      the report that announces a sub-task, and on events that are not progress. Iterating a
      stream (``for event in stream``) yields the run's top level only, where it is always a
      float (the latest known fraction; 0.0 before the first).
    - ``status``: what the tool is doing now, or ``None``.
    - ``data``: every other key the tool reported with the progress (``{"items_processed": 100}``).
      On a ``result`` event, the result (as in the seed's ``event.data``); on ``tool_call_started``
      the call's arguments; on ``gap`` and ``heartbeat`` their fields; ``{}`` otherwise.
    - ``timestamp``: when the run produced the event (server clock), an aware UTC datetime.
    - ``type``: ``"progress"``, ``"result"``, ``"started"``, ``"tool_call_started"``,
      ``"tool_call_finished"``, ``"message"``, ``"partial"``, ``"gap"`` or ``"heartbeat"``.
    - ``sequence``: the event's position in the run, from 1 (0 on gap and heartbeat events). A gap
      between two events means progress was coalesced because the reader was slower than the tool.
    - ``run_id``: the run.
    - ``call_id``, ``tool``, ``parent_call_id``: the node of the run's progress tree the event
      belongs to, ``None`` at the run's top level (the tool's own progress, or the agent's): in
      agent runs a tool call (``tool`` its tool); a sub-task of a tool (``tool`` its label, such
      as a file name; ``parent_call_id`` the node it belongs to, ``None`` under the top level).
      ``tool`` is also set on ``started`` for a tool run.
    - ``text``: ``message`` events, the model's text; ``error``: a ``tool_call_finished`` whose
      call failed; ``result``: the value of a ``result`` or successful ``tool_call_finished``.
    - ``partial`` events (a piece of a call's output, before its result; the node in ``call_id``):
      ``value`` the piece, ``key`` which output of the call (``""`` for its main one), ``append``
      whether ``value`` is the next item of that output (``True``) or replaces it (``False``);
      ``data`` is the value too. ``stream.partials`` assembles them.
    """

    type: EventType
    run_id: str
    sequence: int
    timestamp: datetime.datetime
    progress: Optional[float] = None
    status: Optional[str] = None
    data: Any = field(default_factory=dict)
    call_id: Optional[str] = None
    tool: Optional[str] = None
    parent_call_id: Optional[str] = None
    text: Optional[str] = None
    result: Any = None
    error: Optional[str] = None
    key: Optional[str] = None
    append: Optional[bool] = None
    value: Any = None

    def dict(self) -> Dict[str, Any]:
        """The event as JSON-ready values (the timestamp in ISO 8601); fields that are ``None``
        beyond the seed's four are left out."""
        out: Dict[str, Any] = {
            "type": self.type,
            "run_id": self.run_id,
            "sequence": self.sequence,
            "timestamp": self.timestamp.isoformat(),
            "progress": self.progress,
            "status": self.status,
            "data": self.data,
        }
        for name in ("call_id", "tool", "parent_call_id", "text", "result", "error", "key", "append"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.type == "partial":
            out["value"] = self.value
        return out


class PartialOutputs:
    """The outputs of a run's calls assembled from their partial results so far, shared by the
    sync and async streams (``stream.partials``, ``stream.partials_by_call``). Per node and key:
    appended items make a list, in order; a replacement sets the latest value (an item appended
    after a replacement that is not a list starts a new list). Fed every event the stream reads,
    each once."""

    __slots__ = ("by_call",)

    def __init__(self) -> None:
        #: Node (``call_id``, ``None`` for the run's top level) → key → output.
        self.by_call: Dict[Optional[str], Dict[str, Any]] = {}

    def see(self, event: ProgressEvent) -> Optional[ProgressEvent]:
        """Takes ``event`` in; returns it when it is a partial result, ``None`` otherwise."""
        if event.type != "partial":
            return None
        outputs = self.by_call.setdefault(event.call_id, {})
        key = event.key or ""
        if event.append:
            items = outputs.get(key)
            if isinstance(items, list):
                items.append(event.value)
            else:
                outputs[key] = [event.value]
        else:
            outputs[key] = event.value
        return event

    @property
    def top(self) -> Dict[str, Any]:
        """The outputs of the run's top level (a tool run's own), by key."""
        return self.by_call.get(None, {})


class TopLevelProgress:
    """What iterating a run's stream yields, shared by the sync and async streams: the run's
    top-level progress events only (not those of an agent's tool calls or a tool's sub-tasks),
    each with ``progress`` a float: the latest top-level fraction known, 0.0 before the first.
    Fed every event the stream reads, in order."""

    __slots__ = ("fraction",)

    def __init__(self) -> None:
        self.fraction = 0.0

    def see(self, event: ProgressEvent) -> Optional[ProgressEvent]:
        """``event`` as iterating yields it, or ``None`` when iterating skips it."""
        if event.type != "progress" or event.call_id is not None:
            return None
        if event.progress is None:
            return dataclasses.replace(event, progress=self.fraction)
        self.fraction = event.progress
        return event


class EveryNodeProgress:
    """What ``on_progress`` callbacks get, shared by the sync and async agents: the progress
    events of every node (the run's own, its tool calls', their sub-tasks'), each with
    ``progress`` a float: the latest fraction that node reported, 0.0 before its first (a
    sub-task's announcement and a status-only report carry none). Holds one float per node of
    the one run it follows."""

    __slots__ = ("fractions",)

    def __init__(self) -> None:
        self.fractions: Dict[Optional[str], float] = {}

    def see(self, event: ProgressEvent) -> Optional[ProgressEvent]:
        """``event`` as ``on_progress`` gets it, or ``None`` for events that are no progress."""
        if event.type != "progress":
            return None
        if event.progress is None:
            return dataclasses.replace(event, progress=self.fractions.get(event.call_id, 0.0))
        self.fractions[event.call_id] = event.progress
        return event


@dataclass(frozen=True)
class ToolInfo:
    """A tool the server offers (``client.tools()``)."""

    name: str
    description: str
    input_schema: Dict[str, Any]
    output_schema: Optional[Dict[str, Any]]
    #: Where the tool lives: "native", "command", "grpc" (a remote server or Python worker), "mcp".
    kind: str

    def dict(self) -> Dict[str, Any]:
        """The tool as JSON-ready values."""
        return {
            "name": self.name,
            "description": self.description,
            "input_schema": self.input_schema,
            "output_schema": self.output_schema,
            "kind": self.kind,
        }


class RunState(str, enum.Enum):
    """Where a run stands."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    #: Running, and waiting on at least one open input request (answer it with ``respond``).
    INPUT_REQUIRED = "input_required"

    @property
    def done(self) -> bool:
        """Whether the run ended (a terminal state never changes)."""
        return self not in (RunState.RUNNING, RunState.INPUT_REQUIRED)


@dataclass(frozen=True)
class CallProgress:
    """The latest progress of one call of a run (``Run.progress``)."""

    progress: Optional[float]
    status: Optional[str]
    data: Dict[str, Any]
    call_id: Optional[str] = None
    tool: Optional[str] = None
    parent_call_id: Optional[str] = None


@dataclass(frozen=True)
class Run:
    """A run as the server holds it (``client.get_run``, ``client.runs()``, ``client.cancel_run``)."""

    run_id: str
    state: RunState
    #: The tool, for a tool run; ``None`` for an agent run.
    tool: Optional[str]
    agent: bool
    created_at: Optional[datetime.datetime]
    #: ``None`` while running.
    ended_at: Optional[datetime.datetime]
    #: The sequence number of the last event the run produced (``watch(run_id, after=...)``).
    last_sequence: int
    #: The latest progress of each call, the run's own first.
    progress: List[CallProgress]
    #: SUCCEEDED: the result.
    result: Any = None
    #: FAILED or CANCELLED: the error its streams ended with.
    error: Optional["ToolstreamError"] = None
    #: The labels it was started with (``run(..., labels=...)``).
    labels: Dict[str, str] = field(default_factory=dict)
    #: The idempotency key it was started with (``run(..., idempotency_key=...)``), if any.
    idempotency_key: Optional[str] = None

    @property
    def done(self) -> bool:
        """Whether the run ended."""
        return self.state.done
