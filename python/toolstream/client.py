"""The synchronous client: :class:`Client`, the :class:`ProgressStream` a run gives, and
:class:`Agent`. :mod:`toolstream.aio` has the same surface for asyncio; what both share lives in
:mod:`toolstream._stream_core` (following a stream: dedupe, resume, back-off) and
:mod:`toolstream._client_base` (options, requests), and this module carries it out with blocking
calls and ``time.sleep``."""

from __future__ import annotations

import threading
import time
from types import TracebackType
from typing import (
    Any,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Type,
    TypeVar,
    Union,
)

import grpc

from . import _convert as convert
from ._client_base import (
    DECLINED,
    BaseAgent,
    BaseClient,
    BaseStream,
    InputCallback,
    RunPages,
    input_reply,
    report_declined,
    run_tool_request,
    start_watch,
)
from ._client_base import PathOrBytes as PathOrBytes
from ._client_base import ToolRef as ToolRef
from ._stream_core import DEFAULT_RESUME_SECONDS as DEFAULT_RESUME_SECONDS
from ._stream_core import AskRun, Rewatch, Step, StreamCore, deadline_after, not_started
from ._stream_core import resume_window as resume_window
from .errors import (
    FailedPrecondition,
    InvalidArguments,
    NotFound,
    ToolstreamError,
    from_rpc_error,
)
from .events import EveryNodeProgress, ProgressEvent, Run, RunState, ToolInfo
from .v1 import toolstream_pb2 as pb
from .v1 import toolstream_pb2_grpc as pb_grpc

__all__ = ["Agent", "Client", "ProgressStream"]

Outcome = TypeVar("Outcome")


class Client(BaseClient):
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

    def _connected(self) -> None:
        self._channel = self._connection.channel()
        self._tool_stub = pb_grpc.ToolServiceStub(self._channel)
        self._run_stub = pb_grpc.RunServiceStub(self._channel)

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

    # Tools ---------------------------------------------------------------------------------

    def tools(self) -> List[ToolInfo]:
        """The tools the server offers, sorted by name, with their JSON Schemas."""
        response = self._unary(self._tool_stub.ListTools, pb.ListToolsRequest())
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
        on_partial: Optional[ProgressCallback] = None,
        on_input: Optional[InputCallback] = None,
        labels: Optional[Mapping[str, str]] = None,
        idempotency_key: Optional[str] = None,
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
        - ``on_partial``: called with each partial result (a ``"partial"`` event) as the stream
          reads it, whichever way the stream is read; ``stream.partials`` assembles them.
        - ``on_input``: called with each ``"input_requested"`` event as the stream reads it (the
          run asks a person: ``event.data`` has ``prompt``, ``schema``, ``kind``, ``data``); what
          it returns is the answer, or it returns ``toolstream.Decline`` to decline. If it
          raises, or the server refuses its answer (it fails the request's schema), the request
          is declined and the error logged on the ``toolstream`` logger: the run never waits on
          a callback that failed. Without it, answer with :meth:`ProgressStream.respond`.
        - ``labels``: ``{key: value}`` kept with the run, to find it again
          (``client.runs(labels=...)``; see docs/backend.md for what keys may be).
        - ``idempotency_key``: names this request: starting a run again with the same key (a
          retry, from any client of the same principal) gives the run the first one started,
          its events from the start, instead of a second run; the same key with another tool or
          other arguments raises :class:`FailedPrecondition`.

        Raises at once, before any run starts, for an unknown tool (:class:`ToolNotFound`),
        invalid arguments (:class:`InvalidArguments`), a full or unreachable server.
        """
        request = run_tool_request(tool, arguments, kwargs, min_interval=min_interval,
                                   detach=detach, heartbeat=heartbeat, labels=labels,
                                   idempotency_key=idempotency_key)
        call = self._tool_stub.RunTool(
            request, timeout=timeout, metadata=self._connection.metadata
        )
        stream = ProgressStream._started(
            self, call, request.options, timeout=timeout, resume=resume
        )
        stream._on_partial = on_partial
        stream._on_input = on_input
        return stream

    def agent(
        self,
        tools: Optional[Sequence[ToolRef]] = None,
        *,
        model: Optional[str] = None,
        max_steps: Optional[int] = None,
        system_prompt: Optional[str] = None,
        approval_required: Optional[Sequence[str]] = None,
    ) -> "Agent":
        """An agent: the server's language model, calling ``tools`` (names, or the ``@progress``
        functions a worker serves; all of the server's tools when empty) until it can answer.
        Calls of the tools in ``approval_required`` (``"*"``: all) wait for a person's approval
        (an ``input_requested`` event of kind ``"approval"``; see ``on_input`` of
        :meth:`Agent.run`)."""
        names = convert.tool_names(list(tools or []))
        return Agent(self, names, model=model, max_steps=max_steps, system_prompt=system_prompt,
                     approval_required=approval_required)

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
        deadline = deadline_after(timeout, time.monotonic())
        request, core = start_watch(
            run_id, after, from_latest, min_interval, heartbeat, resume, deadline
        )
        return ProgressStream(self, self._watch(request, timeout), core)

    def get_run(self, run_id: str) -> Run:
        """The run's state, latest progress, and result or error."""
        request = pb.GetRunRequest(run_id=run_id)
        return convert.run(self._unary(self._run_stub.GetRun, request, about_runs=True))

    def cancel_run(self, run_id: str) -> Run:
        """Cancels the run for everyone watching it; a run that ended is returned unchanged."""
        request = pb.CancelRunRequest(run_id=run_id)
        return convert.run(self._unary(self._run_stub.CancelRun, request, about_runs=True))

    def respond(
        self, run_id: str, request_id: str, value: Any = None, *, decline: bool = False
    ) -> Run:
        """Answers the run's open input request ``request_id`` with ``value`` (any JSON value
        satisfying the request's schema), or declines it. Raises ``InvalidArguments`` naming the
        field when the value fails the schema (the request stays open), and a ``ToolstreamError``
        with FAILED_PRECONDITION for a second answer or an ended run."""
        request = convert.respond_request(run_id, request_id, value, decline)
        return convert.run(self._unary(self._run_stub.RespondToRun, request, about_runs=True))

    def runs(
        self,
        *,
        state: Union[None, RunState, str] = None,
        tool: Optional[str] = None,
        page_size: Optional[int] = None,
        labels: Optional[Mapping[str, str]] = None,
    ) -> Iterator[Run]:
        """The runs the server holds, newest first, fetched a page at a time as you iterate;
        with ``labels``, only the runs carrying every one of them."""
        pages = RunPages(state, tool, page_size, labels)
        while not pages.done:
            yield from pages.receive(self._unary(self._run_stub.ListRuns, pages.request()))

    # Internals -------------------------------------------------------------------------------

    def _unary(self, method: Any, request: Any, *, about_runs: bool = False) -> Any:
        """One short call; ``about_runs``: it names a run (``request.run_id``)."""
        try:
            return method(request, timeout=self._rpc_timeout, metadata=self._connection.metadata)
        except grpc.RpcError as error:
            run_id = request.run_id if about_runs else None
            raise from_rpc_error(error, run_id=run_id, about_runs=about_runs) from None

    def _watch(self, request: pb.WatchRunRequest, timeout: Optional[float]) -> Any:
        return self._run_stub.WatchRun(request, timeout=timeout, metadata=self._connection.metadata)

    def _ask_run(self, step: AskRun) -> pb.Run:
        # wait_for_ready: wait for the server to be reachable again rather than fail.
        run: pb.Run = self._run_stub.GetRun(
            step.request,
            timeout=step.timeout,
            metadata=self._connection.metadata,
            wait_for_ready=True,
        )
        return run


class ProgressStream(BaseStream[Client]):
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

    def __init__(self, client: Client, call: Any, core: StreamCore) -> None:
        super().__init__(client, None if core.done else call, core)
        # close() and cancel() may come from another thread than the one reading.
        self._lock = threading.Lock()

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
        deadline = deadline_after(timeout, time.monotonic())
        try:
            first = next(call)
        except StopIteration:
            raise not_started() from None
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        core = StreamCore.started(first, options, resume=resume, deadline=deadline)
        return cls(client, call, core)

    # The stream's state (run_id, done, error: BaseStream) --------------------------------------

    @property
    def result(self) -> Any:
        """The run's result: reads the rest of the stream first if needed. Raises the run's error
        (a :class:`ToolstreamError` subclass) when it failed."""
        while not self._core.done:
            try:
                self._next_event()
            except StopIteration:
                break
        if self._core.error is not None:
            raise self._core.error
        return self._core.result

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
        if self._core.error is not None:
            raise self._core.error

    def _next_event(self) -> ProgressEvent:
        event = self._read_event()
        if event.type == "partial" and self._on_partial is not None:
            self._on_partial(event)
        if event.type == "input_requested" and self._on_input is not None:
            self._answer(event, self._on_input)
        return event

    def _answer(self, event: ProgressEvent, on_input: InputCallback) -> None:
        """Answers the request of ``event`` with what ``on_input`` returns; declines it (and
        logs why) when the callback raises or the server refuses its answer."""
        try:
            reply = input_reply(on_input(event))
        except Exception:
            report_declined(event, "the on_input callback raised")
            reply = DECLINED
        for value, decline in (reply, DECLINED):
            try:
                self.respond(event.data["request_id"], value, decline=decline)
                return
            except InvalidArguments:
                report_declined(event, "the server refused the on_input callback's answer")
            except (FailedPrecondition, NotFound):
                return  # answered elsewhere first, or the run ended: nothing waits on it

    def _read_event(self) -> ProgressEvent:
        core = self._core
        while True:
            event = core.take_pending()
            if event is not None:
                return event
            call = self._call
            if core.done or call is None:
                raise StopIteration
            try:
                message = next(call)
            except StopIteration:
                self._follow(self._update(lambda core, now: core.stream_ended(now)))
                continue
            except grpc.RpcError as error:
                self._follow(self._update(lambda core, now: core.stream_failed(error, now)))
                continue
            event = self._update(lambda core, now: core.receive(message))
            if event is not None:
                return event

    def _update(self, change: Callable[[StreamCore, float], Outcome]) -> Outcome:
        """Applies ``change`` to the core, and lets go of the call once the stream has ended."""
        with self._lock:
            outcome = change(self._core, time.monotonic())
            call = None
            if self._core.done:
                call, self._call = self._call, None
        # Let go of the finished call now, while grpc's threads run normally. Held until the
        # interpreter exits, its finaliser can wait forever on a lock that one of grpc's daemon
        # threads held when the interpreter stopped it (seen as a hang at exit).
        del call
        return outcome

    def _follow(self, step: Step) -> None:
        """Carries out the core's steps after the stream broke, until a new stream replaces it
        (resumed) or the stream has ended."""
        while isinstance(step, AskRun):
            time.sleep(step.pause)
            try:
                run = self._client._ask_run(step)
            except grpc.RpcError as error:
                step = self._update(lambda core, now: core.ask_failed(error, now))
            else:
                step = self._update(lambda core, now: core.run_answered(run, now))
        if isinstance(step, Rewatch):
            self._call = self._client._watch(step.request, step.timeout)

    # Ending early ----------------------------------------------------------------------------

    def respond(self, request_id: str, value: Any = None, *, decline: bool = False) -> Run:
        """Answers (or declines) one of this run's input requests (the ``request_id`` of its
        ``input_requested`` event); see ``Client.respond``."""
        return self._client.respond(self._core.run_id, request_id, value, decline=decline)

    def cancel(self) -> None:
        """Cancels the run, for every client watching it; the stream then ends and ``result``
        raises :class:`Cancelled`. Safe from any thread; does nothing once the run ended."""
        if self._core.done:
            return
        try:
            self._client.cancel_run(self._core.run_id)
            return  # the server ends the stream with CANCELLED (or the result, if it was first)
        except ToolstreamError:
            pass  # no RunService there (a worker): leaving cancels the run
        call = self._call
        if call is not None:
            call.cancel()

    def close(self) -> None:
        """Stops reading. A run that has not ended is cancelled, unless it was started with
        ``detach=True``: then it goes on, and can be watched again by its ``run_id``."""
        if self._core.done:
            return
        call = self._call
        if call is not None:
            call.cancel()
        self._update(lambda core, now: core.close())

    def __enter__(self) -> "ProgressStream":
        return self

    def __exit__(
        self,
        kind: Optional[Type[BaseException]],
        value: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        self.close()


ProgressCallback = Callable[[ProgressEvent], Any]


class Agent(BaseAgent[Client]):
    """A language model on the server that calls tools until it can answer a prompt
    (:meth:`Client.agent`)::

        agent = client.agent(tools=["slow_search"])
        result = agent.run("Search for information", on_progress=on_progress)

    ``run`` returns the model's answer; ``stream`` gives the run's :class:`ProgressStream`.
    ``arun`` and ``arun_stream`` hand the same to :mod:`toolstream.aio` for asyncio callers
    (``await agent.arun(...)``; ``async for event in agent.arun_stream(...)`` yields every event),
    on an asyncio connection of their own to the same server.
    """

    def stream(
        self,
        prompt: str,
        *,
        timeout: Optional[float] = None,
        min_interval: Optional[float] = None,
        detach: bool = False,
        heartbeat: Optional[float] = None,
        resume: Union[bool, float] = False,
        labels: Optional[Mapping[str, str]] = None,
        idempotency_key: Optional[str] = None,
    ) -> ProgressStream:
        """Starts the agent on ``prompt``; the options are those of :meth:`Client.run`."""
        request = self._request(prompt, min_interval=min_interval, detach=detach,
                                heartbeat=heartbeat, labels=labels, idempotency_key=idempotency_key)
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
        on_partial: Optional[ProgressCallback] = None,
        on_input: Optional[InputCallback] = None,
        labels: Optional[Mapping[str, str]] = None,
        idempotency_key: Optional[str] = None,
    ) -> Any:
        """Runs the agent on ``prompt`` and returns its answer. ``on_progress`` is called with
        each progress event: the agent's own (``call_id`` is ``None``) and its tool calls'
        (``call_id`` and ``tool`` set), ``progress`` always a float (the node's latest fraction);
        ``on_partial`` with each partial result of a tool call (``call_id`` names the call; the
        model never sees them, only the call's result); ``on_event`` with every event, as sent;
        ``on_input`` answers the run's input requests (approvals of tool calls included: return
        ``True`` to approve), as in :meth:`Client.run`; ``labels`` and ``idempotency_key`` too.
        Raises the run's error."""
        progress = EveryNodeProgress()
        with self.stream(prompt, timeout=timeout, min_interval=min_interval, labels=labels,
                         idempotency_key=idempotency_key) as stream:
            stream._on_input = on_input
            for event in stream.events():
                if on_event is not None:
                    on_event(event)
                if on_partial is not None and event.type == "partial":
                    on_partial(event)
                seen = progress.see(event)
                if on_progress is not None and seen is not None:
                    on_progress(seen)
            return stream.result

    def arun(
        self,
        prompt: str,
        *,
        on_progress: Optional[Callable[[ProgressEvent], Any]] = None,
        on_event: Optional[Callable[[ProgressEvent], Any]] = None,
        timeout: Optional[float] = None,
        min_interval: Optional[float] = None,
        on_partial: Optional[Callable[[ProgressEvent], Any]] = None,
        on_input: Optional[Callable[[ProgressEvent], Any]] = None,
        labels: Optional[Mapping[str, str]] = None,
        idempotency_key: Optional[str] = None,
    ) -> Awaitable[Any]:
        """:meth:`run` for asyncio (``await agent.arun(...)``); callbacks may be coroutine
        functions. Runs as :meth:`toolstream.AsyncAgent.run`."""
        # The one import between the two clients, this way only (aio never imports this module),
        # at the call: sync programs never load the asyncio client.
        from . import aio

        return aio.run_agent(
            self._client,
            self,
            prompt,
            on_progress=on_progress,
            on_event=on_event,
            timeout=timeout,
            min_interval=min_interval,
            on_partial=on_partial,
            on_input=on_input,
            labels=labels,
            idempotency_key=idempotency_key,
        )

    def arun_stream(
        self,
        prompt: str,
        *,
        timeout: Optional[float] = None,
        min_interval: Optional[float] = None,
        labels: Optional[Mapping[str, str]] = None,
        idempotency_key: Optional[str] = None,
    ) -> AsyncIterator[ProgressEvent]:
        """Every event of the agent's run, for asyncio (``async for event in ...``), typed by
        ``event.type``; raises the run's error after the last event. Runs as
        :meth:`toolstream.AsyncAgent.arun_stream`; ``labels`` and ``idempotency_key`` as for
        :meth:`run`."""
        from . import aio  # see arun

        return aio.stream_agent(
            self._client, self, prompt, timeout=timeout, min_interval=min_interval,
            labels=labels, idempotency_key=idempotency_key,
        )
