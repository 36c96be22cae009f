"""What the sync client (:mod:`toolstream.client`) and the asyncio one (:mod:`toolstream.aio`)
share besides the stream core (:mod:`toolstream._stream_core`): the constructor's options, the
requests their calls send, a stream's state as its users see it, and an agent's settings. No I/O:
each client makes its own calls."""

from __future__ import annotations

import logging
import os
from typing import (
    Any,
    Callable,
    Dict,
    Generic,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Type,
    TypeVar,
    Union,
)

from . import _convert as convert
from ._connection import Connection, Metadata
from ._stream_core import StreamCore
from .errors import ToolstreamError
from .events import ProgressEvent, Run, RunState, TopLevelProgress
from .v1 import toolstream_pb2 as pb

ToolRef = Union[str, Callable[..., Any]]
PathOrBytes = Union[None, bytes, str, "os.PathLike[str]"]

Same = TypeVar("Same", bound="BaseClient")

#: Where the clients report what went wrong in an ``on_input`` callback.
logger = logging.getLogger("toolstream")


class DeclineType:
    """The type of :data:`toolstream.Decline`; it has that one value."""

    def __repr__(self) -> str:
        return "toolstream.Decline"


#: What an ``on_input`` callback returns to decline the request rather than answer it.
Decline = DeclineType()

#: ``on_input=``: called with an ``input_requested`` event; returns the answer, or
#: :data:`Decline`.
InputCallback = Callable[[ProgressEvent], Any]


#: RespondToRun's ``(value, decline)`` that declines.
DECLINED: Tuple[Any, bool] = (None, True)


def input_reply(answer: Any) -> Tuple[Any, bool]:
    """What an ``on_input`` callback returned, as RespondToRun's ``(value, decline)``."""
    return DECLINED if answer is Decline else (answer, False)


def report_declined(event: ProgressEvent, why: str) -> None:
    """Logs that the request of ``event`` (``input_requested``) is declined because ``why``, with
    the exception being handled (if any) attached."""
    logger.error(
        "toolstream: declining input request %r of run %r (%s): %s",
        event.data.get("request_id"),
        event.run_id,
        event.data.get("prompt"),
        why,
        exc_info=True,
    )


class BaseClient:
    """The part of :class:`toolstream.Client` and :class:`toolstream.AsyncClient` that is their
    settings (the options are :class:`toolstream.Client`'s)."""

    def __init__(
        self,
        target: Optional[str] = None,
        *,
        token: Optional[str] = None,
        tls: Optional[bool] = None,
        root_certificates: PathOrBytes = None,
        private_key: PathOrBytes = None,
        certificate_chain: PathOrBytes = None,
        server_name: Optional[str] = None,
        metadata: Optional[Metadata] = None,
        options: Optional[Sequence[Tuple[str, Any]]] = None,
        rpc_timeout: float = 30.0,
    ) -> None:
        self._connection = Connection.make(
            target,
            token=token,
            tls=tls,
            root_certificates=root_certificates,
            private_key=private_key,
            certificate_chain=certificate_chain,
            server_name=server_name,
            metadata=metadata,
            options=options,
        )
        self._rpc_timeout = rpc_timeout
        self._connected()

    @classmethod
    def _like(cls: Type[Same], other: "BaseClient") -> Same:
        """A client of this kind to ``other``'s server, with ``other``'s settings."""
        client = cls.__new__(cls)
        client._connection = other._connection
        client._rpc_timeout = other._rpc_timeout
        client._connected()
        return client

    def _connected(self) -> None:
        """Sets up what the client needs once its connection's settings are known."""

    @property
    def target(self) -> str:
        """The server's address."""
        return self._connection.target

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._connection.target!r})"


Labels = Optional[Mapping[str, str]]


def run_options(
    *,
    min_interval: Optional[float],
    detach: bool,
    heartbeat: Optional[float],
    labels: Labels,
    idempotency_key: Optional[str],
) -> pb.RunOptions:
    """A run's options from the keyword arguments of ``run``, ``agent.run`` and the like."""
    options = convert.options(min_interval=min_interval, detach=detach, heartbeat=heartbeat)
    options.labels.update(labels or {})
    options.idempotency_key = idempotency_key or ""
    return options


def run_tool_request(
    tool: str,
    arguments: Optional[Mapping[str, Any]],
    extra: Mapping[str, Any],
    *,
    min_interval: Optional[float],
    detach: bool,
    heartbeat: Optional[float],
    labels: Labels = None,
    idempotency_key: Optional[str] = None,
) -> pb.RunToolRequest:
    """``client.run(tool, arguments=..., **extra)`` as the request."""
    return pb.RunToolRequest(
        tool=tool,
        arguments=convert.to_struct(convert.merge_arguments(arguments, extra)),
        options=run_options(min_interval=min_interval, detach=detach, heartbeat=heartbeat,
                            labels=labels, idempotency_key=idempotency_key),
    )


def start_watch(
    run_id: str,
    after: int,
    from_latest: bool,
    min_interval: Optional[float],
    heartbeat: Optional[float],
    resume: Union[bool, float],
    deadline: Optional[float],
) -> Tuple[pb.WatchRunRequest, StreamCore]:
    """``client.watch(run_id, ...)`` as the request (watching never detaches or cancels), and
    the core of its stream."""
    options = convert.options(min_interval=min_interval, detach=False, heartbeat=heartbeat)
    request = pb.WatchRunRequest(
        run_id=run_id, after_sequence=after, from_latest=from_latest, options=options
    )
    return request, StreamCore.watch(request, resume=resume, deadline=deadline)


class RunPages:
    """``client.runs(...)`` page by page: the request for the next page, and the runs of each
    answer, until the server gives no next page token."""

    def __init__(
        self,
        state: Union[None, RunState, str],
        tool: Optional[str],
        page_size: Optional[int],
        labels: Labels = None,
    ) -> None:
        self._state = convert.state_number(state)
        self._tool = tool or ""
        self._page_size = page_size or 0
        self._labels = dict(labels or {})
        self._token = ""
        self.done = False

    def request(self) -> pb.ListRunsRequest:
        return pb.ListRunsRequest(
            page_size=self._page_size,
            page_token=self._token,
            state=self._state,
            tool=self._tool,
            labels=self._labels,
        )

    def receive(self, response: pb.ListRunsResponse) -> List[Run]:
        self._token = response.next_page_token
        self.done = not self._token
        return [convert.run(run) for run in response.runs]


ClientKind = TypeVar("ClientKind", bound=BaseClient)


class BaseStream(Generic[ClientKind]):
    """The part of :class:`toolstream.ProgressStream` and :class:`toolstream.AsyncProgressStream`
    that only reads the stream's core: the run's id and how the stream ended."""

    def __init__(self, client: ClientKind, call: Any, core: StreamCore) -> None:
        self._client = client
        # None once the stream has ended (the sync stream lets go of a finished call).
        self._call: Any = call
        self._core = core
        self._top = TopLevelProgress()
        #: Called with each partial result as the stream reads it (``run(..., on_partial=...)``).
        self._on_partial: Optional[Callable[[ProgressEvent], Any]] = None
        #: Asked for the answer to each input request as the stream reads it
        #: (``run(..., on_input=...)``).
        self._on_input: Optional[InputCallback] = None

    @property
    def run_id(self) -> str:
        """The run's id."""
        return self._core.run_id

    @property
    def done(self) -> bool:
        """Whether the stream has ended (the run's result or error is known)."""
        return self._core.done

    @property
    def error(self) -> Optional[ToolstreamError]:
        """The run's error once the stream has ended with one; ``None`` otherwise."""
        return self._core.error

    @property
    def partials(self) -> Dict[str, Any]:
        """The outputs of the run's top level (a tool run's own) assembled from the partial
        results read so far, by key (``""`` for the main output): appended items as a list, in
        order; a replaced output as its latest value. Partial results of sub-tasks and of an
        agent's tool calls are in :attr:`partials_by_call`."""
        return self._core.partials.top

    @property
    def partials_by_call(self) -> Dict[Optional[str], Dict[str, Any]]:
        """The outputs of every node of the run assembled so far, by ``call_id`` (``None``: the
        run's top level), then by key, as in :attr:`partials`."""
        return self._core.partials.by_call

    def __repr__(self) -> str:
        state = "done" if self._core.done else "running"
        return f"<{type(self).__name__} run_id={self._core.run_id!r} {state}>"


class BaseAgent(Generic[ClientKind]):
    """An agent's settings (:meth:`toolstream.Client.agent`) and the request that starts it."""

    def __init__(
        self,
        client: ClientKind,
        tools: List[str],
        *,
        model: Optional[str] = None,
        max_steps: Optional[int] = None,
        system_prompt: Optional[str] = None,
        approval_required: Optional[Sequence[str]] = None,
    ) -> None:
        self._client = client
        self.tools = tools
        self.model = model
        self.max_steps = max_steps
        self.system_prompt = system_prompt
        #: Tools whose calls wait for a person's approval (``"*"``: every tool).
        self.approval_required = list(approval_required or [])

    def _request(
        self,
        prompt: str,
        *,
        min_interval: Optional[float],
        detach: bool,
        heartbeat: Optional[float],
        labels: Labels = None,
        idempotency_key: Optional[str] = None,
    ) -> pb.RunAgentRequest:
        return pb.RunAgentRequest(
            prompt=prompt,
            tools=self.tools,
            model=self.model or "",
            max_steps=self.max_steps or 0,
            system_prompt=self.system_prompt or "",
            approval_required=self.approval_required,
            options=run_options(min_interval=min_interval, detach=detach, heartbeat=heartbeat,
                                labels=labels, idempotency_key=idempotency_key),
        )
