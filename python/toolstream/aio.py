"""The asyncio client: :class:`AsyncClient`, :class:`AsyncProgressStream` and
:class:`AsyncAgent`, the same surface as :mod:`toolstream.client` with ``await``::

    async with AsyncClient() as client:
        stream = await client.run("batch_process", items=my_items)
        async for event in stream:
            print(f"Progress: {event.progress * 100:.0f}%")
        result = await stream.result

What it shares with the sync client lives in :mod:`toolstream._stream_core` and
:mod:`toolstream._client_base`; this module carries it out with awaited calls and
``asyncio.sleep``.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from types import TracebackType
from typing import (
    Any,
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    List,
    Mapping,
    Optional,
    Sequence,
    Type,
    Union,
)

import grpc
import grpc.aio

from . import _convert as convert
from ._client_base import (
    DECLINED,
    BaseAgent,
    BaseClient,
    BaseStream,
    InputCallback,
    ToolRef,
    RunPages,
    input_reply,
    report_declined,
    run_tool_request,
    start_watch,
)
from ._stream_core import AskRun, Rewatch, Step, StreamCore, deadline_after, not_started
from .errors import (
    Cancelled,
    FailedPrecondition,
    InvalidArguments,
    NotFound,
    ToolstreamError,
    from_rpc_error,
)
from .events import EveryNodeProgress, ProgressEvent, Run, RunState, ToolInfo
from .v1 import toolstream_pb2 as pb
from .v1 import toolstream_pb2_grpc as pb_grpc

__all__ = ["AsyncAgent", "AsyncClient", "AsyncProgressStream"]


class AsyncClient(BaseClient):
    """A connection to a toolstream server for asyncio; the options are :class:`Client`'s.

    The channel opens on first use, in the running event loop; ``async with`` (or
    ``await client.close()``) closes it.
    """

    def _connected(self) -> None:
        self._channel: Optional[grpc.aio.Channel] = None

    def _open(self) -> grpc.aio.Channel:
        if self._channel is None:
            self._channel = self._connection.aio_channel()
        return self._channel

    @property
    def _tool_stub(self) -> Any:
        return pb_grpc.ToolServiceStub(self._open())

    @property
    def _run_stub(self) -> Any:
        return pb_grpc.RunServiceStub(self._open())

    async def close(self) -> None:
        """Closes the connection."""
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(
        self,
        kind: Optional[Type[BaseException]],
        value: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        await self.close()

    async def tools(self) -> List[ToolInfo]:
        """The tools the server offers, sorted by name, with their JSON Schemas."""
        response = await self._unary(self._tool_stub.ListTools, pb.ListToolsRequest())
        return [convert.tool_info(tool) for tool in response.tools]

    async def run(
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
        on_partial: Optional[AsyncCallback] = None,
        on_input: Optional[InputCallback] = None,
        labels: Optional[Mapping[str, str]] = None,
        idempotency_key: Optional[str] = None,
        **kwargs: Any,
    ) -> "AsyncProgressStream":
        """Starts a run and returns its stream once started; see :meth:`Client.run`
        (``on_partial`` and ``on_input`` may be plain or coroutine functions)."""
        request = run_tool_request(tool, arguments, kwargs, min_interval=min_interval,
                                   detach=detach, heartbeat=heartbeat, labels=labels,
                                   idempotency_key=idempotency_key)
        call = self._tool_stub.RunTool(
            request, timeout=timeout, metadata=self._connection.metadata
        )
        stream = await AsyncProgressStream._started(
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
    ) -> "AsyncAgent":
        """An agent calling ``tools``; see :meth:`Client.agent`."""
        names = convert.tool_names(list(tools or []))
        return AsyncAgent(self, names, model=model, max_steps=max_steps,
                          system_prompt=system_prompt, approval_required=approval_required)

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
    ) -> "AsyncProgressStream":
        """Follows a run; see :meth:`Client.watch`."""
        deadline = deadline_after(timeout, time.monotonic())
        request, core = start_watch(
            run_id, after, from_latest, min_interval, heartbeat, resume, deadline
        )
        return AsyncProgressStream(self, self._watch(request, timeout), core)

    async def get_run(self, run_id: str) -> Run:
        """The run's state, latest progress, and result or error."""
        request = pb.GetRunRequest(run_id=run_id)
        return convert.run(await self._unary(self._run_stub.GetRun, request, about_runs=True))

    async def cancel_run(self, run_id: str) -> Run:
        """Cancels the run for everyone; a run that ended is returned unchanged."""
        request = pb.CancelRunRequest(run_id=run_id)
        return convert.run(await self._unary(self._run_stub.CancelRun, request, about_runs=True))

    async def respond(
        self, run_id: str, request_id: str, value: Any = None, *, decline: bool = False
    ) -> Run:
        """Answers (or declines) the run's open input request; see ``Client.respond``."""
        request = convert.respond_request(run_id, request_id, value, decline)
        return convert.run(
            await self._unary(self._run_stub.RespondToRun, request, about_runs=True)
        )

    async def runs(
        self,
        *,
        state: Union[None, RunState, str] = None,
        tool: Optional[str] = None,
        page_size: Optional[int] = None,
        labels: Optional[Mapping[str, str]] = None,
    ) -> AsyncIterator[Run]:
        """The runs the server holds, newest first (``async for``); with ``labels``, only the
        runs carrying every one of them."""
        pages = RunPages(state, tool, page_size, labels)
        while not pages.done:
            for run in pages.receive(await self._unary(self._run_stub.ListRuns, pages.request())):
                yield run

    async def _unary(self, method: Any, request: Any, *, about_runs: bool = False) -> Any:
        """One short call; ``about_runs``: it names a run (``request.run_id``)."""
        try:
            return await method(
                request, timeout=self._rpc_timeout, metadata=self._connection.metadata
            )
        except grpc.RpcError as error:
            run_id = request.run_id if about_runs else None
            raise from_rpc_error(error, run_id=run_id, about_runs=about_runs) from None

    def _watch(self, request: pb.WatchRunRequest, timeout: Optional[float]) -> Any:
        return self._run_stub.WatchRun(request, timeout=timeout, metadata=self._connection.metadata)

    async def _ask_run(self, step: AskRun) -> pb.Run:
        # wait_for_ready: wait for the server to be reachable again rather than fail.
        run: pb.Run = await self._run_stub.GetRun(
            step.request,
            timeout=step.timeout,
            metadata=self._connection.metadata,
            wait_for_ready=True,
        )
        return run


class _Result:
    """``await stream.result``: reads the rest of the stream, then the result or the error."""

    def __init__(self, stream: "AsyncProgressStream") -> None:
        self._stream = stream

    def __await__(self) -> Generator[Any, None, Any]:
        return self._stream._get_result().__await__()


class AsyncProgressStream(BaseStream[AsyncClient]):
    """The events of one run, for asyncio: ``async for`` yields the progress of the run's top
    level, each with ``event.progress`` a float (as :class:`toolstream.ProgressStream`); then
    ``await stream.result`` gives its result or raises its error. ``events()`` yields every event
    and raises the run's error at the end. ``await stream.cancel()`` cancels the run;
    ``async with`` closes the stream on leaving (which cancels a run not started with
    ``detach=True``)."""

    def __init__(self, client: AsyncClient, call: Any, core: StreamCore) -> None:
        super().__init__(client, call, core)
        # grpc.aio reports a call this stream cancelled as asyncio.CancelledError.
        self._cancelled_here = False

    @classmethod
    async def _started(
        cls,
        client: AsyncClient,
        call: Any,
        options: pb.RunOptions,
        *,
        timeout: Optional[float],
        resume: Union[bool, float],
    ) -> "AsyncProgressStream":
        deadline = deadline_after(timeout, time.monotonic())
        try:
            first = await call.read()
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        if first is grpc.aio.EOF:
            raise not_started()
        core = StreamCore.started(first, options, resume=resume, deadline=deadline)
        return cls(client, call, core)

    @property
    def result(self) -> Awaitable[Any]:
        """``await stream.result``: the run's result, after reading the rest of the stream;
        raises the run's error when it failed."""
        return _Result(self)

    async def _get_result(self) -> Any:
        while not self._core.done:
            try:
                await self._next_event()
            except StopAsyncIteration:
                break
        if self._core.error is not None:
            raise self._core.error
        return self._core.result

    def __await__(self) -> Generator[Any, None, Any]:
        """``await stream`` is ``await stream.result``."""
        return self._get_result().__await__()

    def __aiter__(self) -> "AsyncProgressStream":
        return self

    async def __anext__(self) -> ProgressEvent:
        while True:
            top = self._top.see(await self._next_event())
            if top is not None:
                return top

    async def events(self) -> AsyncIterator[ProgressEvent]:
        """Every event of the run, then the run's error if it failed."""
        while True:
            try:
                event = await self._next_event()
            except StopAsyncIteration:
                break
            self._top.see(event)
            yield event
        if self._core.error is not None:
            raise self._core.error

    async def _next_event(self) -> ProgressEvent:
        event = await self._read_event()
        if event.type == "partial":
            await _call_back(self._on_partial, event)
        if event.type == "input_requested" and self._on_input is not None:
            await self._answer(event, self._on_input)
        return event

    async def _answer(self, event: ProgressEvent, on_input: InputCallback) -> None:
        """Answers the request of ``event`` with what ``on_input`` returns (awaited when it is
        a coroutine); declines it (and logs why) when the callback raises or the server refuses
        its answer (see :meth:`toolstream.Client.run`)."""
        try:
            answer = on_input(event)
            reply = input_reply(await answer if inspect.isawaitable(answer) else answer)
        except Exception:
            report_declined(event, "the on_input callback raised")
            reply = DECLINED
        for value, decline in (reply, DECLINED):
            try:
                await self.respond(event.data["request_id"], value, decline=decline)
                return
            except InvalidArguments:
                report_declined(event, "the server refused the on_input callback's answer")
            except (FailedPrecondition, NotFound):
                return  # answered elsewhere first, or the run ended: nothing waits on it

    async def _read_event(self) -> ProgressEvent:
        core = self._core
        while True:
            event = core.take_pending()
            if event is not None:
                return event
            if core.done:
                raise StopAsyncIteration
            try:
                message = await self._call.read()
            except grpc.RpcError as error:
                await self._follow(core.stream_failed(error, time.monotonic()))
                continue
            except asyncio.CancelledError:
                if not self._cancelled_here:
                    raise  # the task reading this stream was cancelled
                core.finish(error=Cancelled("the run was cancelled", run_id=core.run_id))
                continue
            if message is grpc.aio.EOF:
                await self._follow(core.stream_ended(time.monotonic()))
                continue
            event = core.receive(message)
            if event is not None:
                return event

    async def _follow(self, step: Step) -> None:
        """See :meth:`toolstream.ProgressStream._follow`."""
        while isinstance(step, AskRun):
            await asyncio.sleep(step.pause)
            try:
                run = await self._client._ask_run(step)
            except grpc.RpcError as error:
                step = self._core.ask_failed(error, time.monotonic())
            else:
                step = self._core.run_answered(run, time.monotonic())
        if isinstance(step, Rewatch):
            self._call = self._client._watch(step.request, step.timeout)

    async def respond(self, request_id: str, value: Any = None, *, decline: bool = False) -> Run:
        """Answers (or declines) one of this run's input requests (the ``request_id`` of its
        ``input_requested`` event); see :meth:`toolstream.Client.respond`."""
        return await self._client.respond(self.run_id, request_id, value, decline=decline)

    async def cancel(self) -> None:
        """Cancels the run for everyone watching it; the stream then ends with
        :class:`Cancelled`."""
        if self._core.done:
            return
        try:
            await self._client.cancel_run(self._core.run_id)
            return
        except ToolstreamError:
            pass  # no RunService there (a worker): leaving cancels the run
        self._cancelled_here = True
        self._call.cancel()

    async def aclose(self) -> None:
        """Stops reading; cancels the run unless it was started with ``detach=True``."""
        if self._core.done:
            return
        self._cancelled_here = True
        self._call.cancel()
        self._core.close()

    async def __aenter__(self) -> "AsyncProgressStream":
        return self

    async def __aexit__(
        self,
        kind: Optional[Type[BaseException]],
        value: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        await self.aclose()


AsyncCallback = Callable[[ProgressEvent], Any]


async def _call_back(callback: Optional[AsyncCallback], event: ProgressEvent) -> None:
    if callback is None:
        return
    outcome = callback(event)
    if inspect.isawaitable(outcome):
        await outcome


class AsyncAgent(BaseAgent[AsyncClient]):
    """:class:`toolstream.Agent` for asyncio (:meth:`AsyncClient.agent`)."""

    async def stream(
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
    ) -> AsyncProgressStream:
        """Starts the agent on ``prompt``; the options are those of :meth:`AsyncClient.run`."""
        request = self._request(prompt, min_interval=min_interval, detach=detach,
                                heartbeat=heartbeat, labels=labels, idempotency_key=idempotency_key)
        call = self._client._tool_stub.RunAgent(
            request, timeout=timeout, metadata=self._client._connection.metadata
        )
        return await AsyncProgressStream._started(
            self._client, call, request.options, timeout=timeout, resume=resume
        )

    async def run(
        self,
        prompt: str,
        *,
        on_progress: Optional[AsyncCallback] = None,
        on_event: Optional[AsyncCallback] = None,
        timeout: Optional[float] = None,
        min_interval: Optional[float] = None,
        on_partial: Optional[AsyncCallback] = None,
        on_input: Optional[InputCallback] = None,
        labels: Optional[Mapping[str, str]] = None,
        idempotency_key: Optional[str] = None,
    ) -> Any:
        """Runs the agent and returns its answer (see :meth:`toolstream.Agent.run`); callbacks
        may be plain or coroutine functions."""
        progress = EveryNodeProgress()
        started = self.stream(prompt, timeout=timeout, min_interval=min_interval, labels=labels,
                              idempotency_key=idempotency_key)
        async with await started as stream:
            stream._on_input = on_input
            async for event in stream.events():
                await _call_back(on_event, event)
                if event.type == "partial":
                    await _call_back(on_partial, event)
                seen = progress.see(event)
                if seen is not None:
                    await _call_back(on_progress, seen)
            return await stream.result

    arun = run

    async def arun_stream(
        self,
        prompt: str,
        *,
        timeout: Optional[float] = None,
        min_interval: Optional[float] = None,
        labels: Optional[Mapping[str, str]] = None,
        idempotency_key: Optional[str] = None,
    ) -> AsyncIterator[ProgressEvent]:
        """Every event of the agent's run, typed by ``event.type``; raises the run's error after
        the last event. Leaving the loop early cancels the run. ``labels`` and
        ``idempotency_key`` as for :meth:`run`."""
        stream = await self.stream(prompt, timeout=timeout, min_interval=min_interval,
                                   labels=labels, idempotency_key=idempotency_key)
        try:
            async for event in stream.events():
                yield event
        finally:
            await stream.aclose()


def _twin(client: BaseClient, agent: BaseAgent[Any]) -> AsyncAgent:
    """``agent`` on an asyncio client of its own to ``client``'s server."""
    return AsyncAgent(
        AsyncClient._like(client),
        agent.tools,
        model=agent.model,
        max_steps=agent.max_steps,
        system_prompt=agent.system_prompt,
        approval_required=agent.approval_required,
    )


async def run_agent(
    client: BaseClient,
    agent: BaseAgent[Any],
    prompt: str,
    *,
    on_progress: Optional[AsyncCallback],
    on_event: Optional[AsyncCallback],
    timeout: Optional[float],
    min_interval: Optional[float],
    on_partial: Optional[AsyncCallback] = None,
    on_input: Optional[InputCallback] = None,
    labels: Optional[Mapping[str, str]] = None,
    idempotency_key: Optional[str] = None,
) -> Any:
    """:meth:`toolstream.Agent.arun`: the sync client's agent run as :meth:`AsyncAgent.run`, on
    a connection of its own, closed after."""
    twin = _twin(client, agent)
    async with twin._client:
        return await twin.run(
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


async def stream_agent(
    client: BaseClient,
    agent: BaseAgent[Any],
    prompt: str,
    *,
    timeout: Optional[float],
    min_interval: Optional[float],
    labels: Optional[Mapping[str, str]] = None,
    idempotency_key: Optional[str] = None,
) -> AsyncIterator[ProgressEvent]:
    """:meth:`toolstream.Agent.arun_stream`: as :meth:`AsyncAgent.arun_stream`, on a connection
    of its own, closed after."""
    twin = _twin(client, agent)
    async with twin._client:
        events = twin.arun_stream(prompt, timeout=timeout, min_interval=min_interval,
                                  labels=labels, idempotency_key=idempotency_key)
        async for event in events:
            yield event
