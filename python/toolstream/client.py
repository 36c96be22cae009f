"""The synchronous client: :class:`Client`, the :class:`ProgressStream` a run gives, and
:class:`Agent`. :mod:`toolstream.aio` has the same surface for asyncio."""

from __future__ import annotations

import collections
import os
import threading
import time
from types import TracebackType
from typing import (
    TYPE_CHECKING,
    Any,
    AsyncIterator,
    Callable,
    Deque,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Type,
    Union,
)

import grpc

from . import _convert as convert
from ._connection import Connection, Metadata
from .errors import (
    Cancelled,
    RunNotFound,
    ToolstreamError,
    Unavailable,
    from_rpc_error,
)
from .events import ProgressEvent, Run, RunState, ToolInfo, TopLevelProgress
from .v1 import toolstream_pb2 as pb
from .v1 import toolstream_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    from .aio import AsyncClient

__all__ = ["Agent", "Client", "ProgressStream"]

#: How long ``resume=True`` keeps trying to reach the server again after a dropped connection.
DEFAULT_RESUME_SECONDS = 30.0

ToolRef = Union[str, Callable[..., Any]]
PathOrBytes = Union[None, bytes, str, "os.PathLike[str]"]

# Codes a dropped connection can end a stream with. Whether it was the connection or the run's
# own error is decided by asking the server for the run (GetRun) before resuming.
_RESUMABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)

_UNSET: Any = object()


def resume_window(resume: Union[bool, float]) -> Optional[float]:
    """``resume=`` as seconds to keep trying, or ``None`` for no resuming."""
    if resume is True:
        return DEFAULT_RESUME_SECONDS
    if resume is False or resume is None:
        return None
    if resume <= 0:
        raise ValueError("resume must be True, False or a positive number of seconds")
    return float(resume)


class Client:
    """A connection to a toolstream server.

    ``Client()`` connects to ``TOOLSTREAM_ADDR`` or ``127.0.0.1:50051``. The target may be
    ``host:port``, ``http://host:port`` (plaintext) or ``https://host:port`` (TLS).

    - ``token``: a bearer token sent with every call (default ``TOOLSTREAM_TOKEN``).
    - ``tls``: force TLS on or off; by default on for ``https://`` or when certificates are given.
    - ``root_certificates``: PEM (bytes, or a file's path) of the CAs to trust instead of the
      system's; ``private_key`` and ``certificate_chain`` for mutual TLS; ``server_name`` to check
      the certificate against another name than the target's host.
    - ``metadata``: more ``(key, value)`` pairs for every call; ``options``: gRPC channel options.
    - ``rpc_timeout``: seconds the short calls (``tools``, ``get_run``...) may take.

    Use it as a context manager, or call :meth:`close`, to close the connection.
    """

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
        self._channel = self._connection.channel()
        self._tool_stub = pb_grpc.ToolServiceStub(self._channel)
        self._run_stub = pb_grpc.RunServiceStub(self._channel)

    @property
    def target(self) -> str:
        """The server's address."""
        return self._connection.target

    def close(self) -> None:
        """Closes the connection; streams still open end with :class:`Cancelled`."""
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(
        self,
        kind: Optional[Type[BaseException]],
        value: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({self._connection.target!r})"

    # Tools ---------------------------------------------------------------------------------

    def tools(self) -> List[ToolInfo]:
        """The tools the server offers, sorted by name, with their JSON Schemas."""
        try:
            response = self._tool_stub.ListTools(
                pb.ListToolsRequest(),
                timeout=self._rpc_timeout,
                metadata=self._connection.metadata,
            )
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        return [convert.tool_info(tool) for tool in response.tools]

    def run(
        self,
        tool: str,
        /,
        *,
        arguments: Optional[Mapping[str, Any]] = None,
        timeout: Optional[float] = None,
        min_interval: Optional[float] = None,
        detach: bool = False,
        heartbeat: Optional[float] = None,
        resume: Union[bool, float] = False,
        **kwargs: Any,
    ) -> "ProgressStream":
        """Starts a run of ``tool`` with ``**kwargs`` as its arguments, and returns its stream once
        the server has started it (its ``run_id`` is known).

        Arguments whose names are also options here (``timeout``, ``arguments``, ...) go in
        ``arguments={...}``. Options:

        - ``timeout``: seconds the run may take (its deadline); past it the run is stopped and
          ``.result`` raises :class:`DeadlineExceeded`.
        - ``min_interval``: at most one progress event per this many seconds (the newest wins).
        - ``detach``: the run goes on if this client goes away (closes the stream, loses the
          connection); watch it again with :meth:`watch`. By default leaving cancels the run.
        - ``heartbeat``: ask for a heartbeat event after this many silent seconds (keeps idle
          proxies from closing the stream; not yielded when iterating the stream).
        - ``resume``: after a dropped connection, reconnect and go on from the last event seen
          (for ``resume`` seconds, or 30 with ``True``). Useful with ``detach=True``: otherwise
          the server cancels the run when the connection drops.

        Raises at once, before any run starts, for an unknown tool (:class:`ToolNotFound`),
        invalid arguments (:class:`InvalidArguments`), a full or unreachable server.
        """
        request = pb.RunToolRequest(
            tool=tool,
            arguments=convert.to_struct(convert.merge_arguments(arguments, kwargs)),
            options=convert.options(min_interval=min_interval, detach=detach, heartbeat=heartbeat),
        )
        call = self._tool_stub.RunTool(
            request, timeout=timeout, metadata=self._connection.metadata
        )
        return ProgressStream._started(
            self, call, request.options, timeout=timeout, resume=resume
        )

    def agent(
        self,
        tools: Optional[Sequence[ToolRef]] = None,
        *,
        model: Optional[str] = None,
        max_steps: Optional[int] = None,
        system_prompt: Optional[str] = None,
    ) -> "Agent":
        """An agent: the server's language model, calling ``tools`` (names, or the ``@progress``
        functions a worker serves; all of the server's tools when empty) until it can answer."""
        return Agent(
            self,
            convert.tool_names(list(tools or [])),
            model=model,
            max_steps=max_steps,
            system_prompt=system_prompt,
        )

    # Runs ----------------------------------------------------------------------------------

    def watch(
        self,
        run_id: str,
        *,
        after: int = 0,
        from_latest: bool = False,
        min_interval: Optional[float] = None,
        heartbeat: Optional[float] = None,
        timeout: Optional[float] = None,
        resume: Union[bool, float] = False,
    ) -> "ProgressStream":
        """Follows a run from any client: the events after sequence ``after`` (0: from the
        start), then live, to its end. ``from_latest`` skips the history (the latest progress of
        each call, then live). Watching never affects the run. Errors (an unknown run is
        :class:`RunNotFound`) come from iterating or ``.result``."""
        options = convert.options(min_interval=min_interval, detach=False, heartbeat=heartbeat)
        call = self._watch_call(run_id, after, from_latest, options, timeout)
        return ProgressStream(
            self,
            call,
            run_id=run_id,
            options=options,
            deadline=None if timeout is None else time.monotonic() + timeout,
            resume=resume,
            after=after,
            watching=True,
        )

    def get_run(self, run_id: str) -> Run:
        """The run's state, latest progress, and result or error."""
        return convert.run(self._unary_run(self._run_stub.GetRun, pb.GetRunRequest(run_id=run_id)))

    def cancel_run(self, run_id: str) -> Run:
        """Cancels the run for everyone watching it; a run that ended is returned unchanged."""
        return convert.run(
            self._unary_run(self._run_stub.CancelRun, pb.CancelRunRequest(run_id=run_id))
        )

    def runs(
        self,
        *,
        state: Union[None, RunState, str] = None,
        tool: Optional[str] = None,
        page_size: Optional[int] = None,
    ) -> Iterator[Run]:
        """The runs the server holds, newest first, fetched a page at a time as you iterate."""
        token = ""
        while True:
            request = pb.ListRunsRequest(
                page_size=page_size or 0,
                page_token=token,
                state=convert.state_number(state),
                tool=tool or "",
            )
            try:
                response = self._run_stub.ListRuns(
                    request, timeout=self._rpc_timeout, metadata=self._connection.metadata
                )
            except grpc.RpcError as error:
                raise from_rpc_error(error) from None
            for run in response.runs:
                yield convert.run(run)
            if not response.next_page_token:
                return
            token = response.next_page_token

    # Internals -------------------------------------------------------------------------------

    def _unary_run(self, method: Any, request: Any) -> pb.Run:
        try:
            response: pb.Run = method(
                request, timeout=self._rpc_timeout, metadata=self._connection.metadata
            )
        except grpc.RpcError as error:
            raise from_rpc_error(error, run_id=request.run_id, about_runs=True) from None
        return response

    def _watch_call(
        self,
        run_id: str,
        after: int,
        from_latest: bool,
        options: pb.RunOptions,
        timeout: Optional[float],
    ) -> Any:
        request = pb.WatchRunRequest(
            run_id=run_id, after_sequence=after, from_latest=from_latest, options=options
        )
        return self._run_stub.WatchRun(
            request, timeout=timeout, metadata=self._connection.metadata
        )

    def _async_twin(self) -> "AsyncClient":
        from .aio import AsyncClient

        return AsyncClient._from_connection(self._connection, self._rpc_timeout)


class ProgressStream:
    """The events of one run, as they happen.

    Iterating yields the progress of the run's top level (:class:`ProgressEvent`: the tool's own
    progress, or the agent's) until the run ends, each with ``event.progress`` a float (the
    latest known fraction, 0.0 before the first); then ``result`` holds its result, or raises
    its error. ``events()`` yields every event instead (typed by ``event.type``: sub-tasks, an
    agent's tool calls and all) and raises the run's error at the end::

        stream = client.run("batch_process", items=my_items)
        for event in stream:
            print(f"Progress: {event.progress * 100:.0f}%")
        result = stream.result

    ``run_id`` names the run (for :meth:`Client.watch`, :meth:`Client.get_run`). ``cancel()``
    cancels the run (from any thread). Used as a context manager, leaving the block before the
    run ends closes the stream, which cancels the run unless it was started with ``detach=True``.
    """

    def __init__(
        self,
        client: Client,
        call: Any,
        *,
        run_id: str,
        options: pb.RunOptions,
        deadline: Optional[float],
        resume: Union[bool, float],
        after: int = 0,
        watching: bool = False,
        pending: Sequence[ProgressEvent] = (),
    ) -> None:
        self._client = client
        self._call = call
        self._run_id = run_id
        self._options = options
        self._deadline = deadline
        self._resume = resume_window(resume)
        self._watching = watching
        self._last_sequence = after
        self._seen_any = bool(pending)
        self._pending: Deque[ProgressEvent] = collections.deque(pending)
        self._top = TopLevelProgress()
        self._lock = threading.Lock()
        self._done = False
        self._result: Any = _UNSET
        self._error: Optional[ToolstreamError] = None

    @classmethod
    def _started(
        cls,
        client: Client,
        call: Any,
        options: pb.RunOptions,
        *,
        timeout: Optional[float],
        resume: Union[bool, float],
    ) -> "ProgressStream":
        """Waits for the run's first event (``started``), so that errors before the run raise
        here and the run id is known."""
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            first = next(call)
        except StopIteration:
            raise Unavailable("the stream ended before the run started") from None
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        started = convert.event(first)
        stream = cls(
            client,
            call,
            run_id=first.run_id,
            options=options,
            deadline=deadline,
            resume=resume,
            after=first.sequence,
            pending=[started],
        )
        if started.type == "result":
            stream._finish(result=started.result)
        return stream

    # The stream's state ------------------------------------------------------------------------

    @property
    def run_id(self) -> str:
        """The run's id."""
        return self._run_id

    @property
    def done(self) -> bool:
        """Whether the stream has ended (the run's result or error is known)."""
        return self._done

    @property
    def error(self) -> Optional[ToolstreamError]:
        """The run's error once the stream has ended with one; ``None`` otherwise."""
        return self._error

    @property
    def result(self) -> Any:
        """The run's result: reads the rest of the stream first if needed. Raises the run's error
        (a :class:`ToolstreamError` subclass) when it failed."""
        while not self._done:
            try:
                self._next_event()
            except StopIteration:
                break
        if self._error is not None:
            raise self._error
        return self._result

    # Iteration -------------------------------------------------------------------------------

    def __iter__(self) -> "ProgressStream":
        return self

    def __next__(self) -> ProgressEvent:
        while True:
            top = self._top.see(self._next_event())
            if top is not None:
                return top

    def events(self) -> Iterator[ProgressEvent]:
        """Every event of the run (``started``, ``progress``, ``result``, and in agent runs
        ``tool_call_started``, ``tool_call_finished``, ``message``), then raises the run's error if
        it failed."""
        while True:
            try:
                event = self._next_event()
            except StopIteration:
                break
            self._top.see(event)
            yield event
        if self._error is not None:
            raise self._error

    def _next_event(self) -> ProgressEvent:
        if self._pending:
            return self._pending.popleft()
        while not self._done:
            try:
                message = next(self._call)
            except StopIteration:
                lost = grpc.StatusCode.UNAVAILABLE
                if self._try_resume(lost, "the stream ended without a result"):
                    continue
                self._finish(
                    error=Unavailable(
                        "the stream ended without a result or an error: the connection was lost",
                        run_id=self._run_id,
                    )
                )
                break
            except grpc.RpcError as error:
                code, details = error.code(), error.details() or ""
                if code in _RESUMABLE and self._try_resume(code, details):
                    continue
                self._finish(
                    error=from_rpc_error(
                        error,
                        run_id=self._run_id,
                        about_runs=self._watching and not self._seen_any,
                    )
                )
                break
            if message.sequence and message.sequence <= self._last_sequence:
                continue  # already seen before a resume
            self._seen_any = True
            self._last_sequence = max(self._last_sequence, message.sequence)
            event = convert.event(message)
            if event.type == "result":
                self._finish(result=event.result)
            return event
        raise StopIteration

    def _finish(self, *, result: Any = _UNSET, error: Optional[ToolstreamError] = None) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
            self._result = None if result is _UNSET else result
            self._error = error
            call, self._call = self._call, None
        # Let go of the finished call now, while grpc's threads run normally. Held until the
        # interpreter exits, its finaliser can wait forever on a lock that one of grpc's daemon
        # threads held when the interpreter stopped it (seen as a hang at exit).
        del call

    # Resuming ------------------------------------------------------------------------------

    def _try_resume(self, code: grpc.StatusCode, details: str) -> bool:
        """After the stream broke with ``code``: whether it was the connection (then a new
        WatchRun from the last event seen replaces the stream) rather than the run's own end."""
        if self._resume is None or self._done:
            return False
        limit = time.monotonic() + self._resume
        if self._deadline is not None:
            limit = min(limit, self._deadline)
        pause = 0.05
        while True:
            remaining = limit - time.monotonic()
            if remaining <= 0:
                return False
            try:
                # wait_for_ready: wait for the server to be reachable again rather than fail.
                run: pb.Run = self._client._run_stub.GetRun(
                    pb.GetRunRequest(run_id=self._run_id),
                    timeout=min(remaining, 5.0),
                    metadata=self._client._connection.metadata,
                    wait_for_ready=True,
                )
            except grpc.RpcError as error:
                if error.code() == grpc.StatusCode.NOT_FOUND:
                    self._finish(
                        error=RunNotFound(
                            f"the connection was lost and the run is gone: {error.details()}",
                            run_id=self._run_id,
                        )
                    )
                    return False
                if error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    time.sleep(min(pause, max(remaining, 0)))
                    pause = min(pause * 2, 1.0)
                    continue
                return False  # no RunService (a worker), or not allowed: cannot resume
            ended_so = run.state in (pb.RUN_STATE_FAILED, pb.RUN_STATE_CANCELLED)
            if ended_so and run.error_code == code.value[0] and run.error_message == details:
                return False  # the run's own error, not the connection's
            timeout = None if self._deadline is None else max(self._deadline - time.monotonic(), 0.001)
            self._call = self._client._watch_call(
                self._run_id, self._last_sequence, False, self._options, timeout
            )
            return True

    # Ending early ----------------------------------------------------------------------------

    def cancel(self) -> None:
        """Cancels the run, for every client watching it; the stream then ends and ``result``
        raises :class:`Cancelled`. Safe from any thread; does nothing once the run ended."""
        if self._done:
            return
        try:
            self._client.cancel_run(self._run_id)
            return  # the server ends the stream with CANCELLED (or the result, if it was first)
        except ToolstreamError:
            pass  # no RunService there (a worker): leaving cancels the run
        call = self._call
        if call is not None:
            call.cancel()

    def close(self) -> None:
        """Stops reading. A run that has not ended is cancelled, unless it was started with
        ``detach=True``: then it goes on, and can be watched again by its ``run_id``."""
        if self._done:
            return
        call = self._call
        if call is not None:
            call.cancel()
        self._finish(
            error=Cancelled("the stream was closed before the run ended", run_id=self._run_id)
        )

    def __enter__(self) -> "ProgressStream":
        return self

    def __exit__(
        self,
        kind: Optional[Type[BaseException]],
        value: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "done" if self._done else "running"
        return f"<ProgressStream run_id={self._run_id!r} {state}>"


ProgressCallback = Callable[[ProgressEvent], Any]


class Agent:
    """A language model on the server that calls tools until it can answer a prompt
    (:meth:`Client.agent`)::

        agent = client.agent(tools=["slow_search"])
        result = agent.run("Search for information", on_progress=on_progress)

    ``run`` returns the model's answer; ``stream`` gives the run's :class:`ProgressStream`;
    ``arun`` and ``arun_stream`` are the same for asyncio (``arun_stream`` yields every event).
    """

    def __init__(
        self,
        client: Client,
        tools: List[str],
        *,
        model: Optional[str] = None,
        max_steps: Optional[int] = None,
        system_prompt: Optional[str] = None,
    ) -> None:
        self._client = client
        self.tools = tools
        self.model = model
        self.max_steps = max_steps
        self.system_prompt = system_prompt

    def _request(
        self,
        prompt: str,
        min_interval: Optional[float],
        detach: bool,
        heartbeat: Optional[float],
    ) -> pb.RunAgentRequest:
        return pb.RunAgentRequest(
            prompt=prompt,
            tools=self.tools,
            model=self.model or "",
            max_steps=self.max_steps or 0,
            system_prompt=self.system_prompt or "",
            options=convert.options(min_interval=min_interval, detach=detach, heartbeat=heartbeat),
        )

    def stream(
        self,
        prompt: str,
        *,
        timeout: Optional[float] = None,
        min_interval: Optional[float] = None,
        detach: bool = False,
        heartbeat: Optional[float] = None,
        resume: Union[bool, float] = False,
    ) -> ProgressStream:
        """Starts the agent on ``prompt``; the options are those of :meth:`Client.run`."""
        request = self._request(prompt, min_interval, detach, heartbeat)
        call = self._client._tool_stub.RunAgent(
            request, timeout=timeout, metadata=self._client._connection.metadata
        )
        return ProgressStream._started(
            self._client, call, request.options, timeout=timeout, resume=resume
        )

    def run(
        self,
        prompt: str,
        *,
        on_progress: Optional[ProgressCallback] = None,
        on_event: Optional[ProgressCallback] = None,
        timeout: Optional[float] = None,
        min_interval: Optional[float] = None,
    ) -> Any:
        """Runs the agent on ``prompt`` and returns its answer. ``on_progress`` is called with
        each progress event: the agent's own (``call_id`` is ``None``) and its tool calls'
        (``call_id`` and ``tool`` set); ``on_event`` with every event. Raises the run's error."""
        with self.stream(prompt, timeout=timeout, min_interval=min_interval) as stream:
            for event in stream.events():
                if on_event is not None:
                    on_event(event)
                if on_progress is not None and event.type == "progress":
                    on_progress(event)
            return stream.result

    async def arun(
        self,
        prompt: str,
        *,
        on_progress: Optional[Callable[[ProgressEvent], Any]] = None,
        on_event: Optional[Callable[[ProgressEvent], Any]] = None,
        timeout: Optional[float] = None,
        min_interval: Optional[float] = None,
    ) -> Any:
        """:meth:`run` for asyncio; callbacks may be coroutine functions."""
        async with self._client._async_twin() as client:
            agent = client.agent(
                self.tools,
                model=self.model,
                max_steps=self.max_steps,
                system_prompt=self.system_prompt,
            )
            return await agent.run(
                prompt,
                on_progress=on_progress,
                on_event=on_event,
                timeout=timeout,
                min_interval=min_interval,
            )

    async def arun_stream(
        self,
        prompt: str,
        *,
        timeout: Optional[float] = None,
        min_interval: Optional[float] = None,
    ) -> AsyncIterator[ProgressEvent]:
        """Every event of the agent's run, for asyncio (``async for event in ...``), typed by
        ``event.type``; raises the run's error after the last event."""
        async with self._client._async_twin() as client:
            agent = client.agent(
                self.tools,
                model=self.model,
                max_steps=self.max_steps,
                system_prompt=self.system_prompt,
            )
            async for event in agent.arun_stream(prompt, timeout=timeout, min_interval=min_interval):
                yield event
