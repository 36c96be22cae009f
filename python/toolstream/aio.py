"""The asyncio client: :class:`AsyncClient`, :class:`AsyncProgressStream` and
:class:`AsyncAgent`, the same surface as :mod:`toolstream.client` with ``await``::

    async with AsyncClient() as client:
        stream = await client.run("batch_process", items=my_items)
        async for event in stream:
            print(f"Progress: {event.progress * 100:.0f}%")
        result = await stream.result
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import time
from types import TracebackType
from typing import (
    Any,
    AsyncIterator,
    Awaitable,
    Callable,
    Deque,
    Generator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Type,
    Union,
)

import grpc
import grpc.aio

from . import _convert as convert
from ._connection import Connection, Metadata
from .client import _RESUMABLE, PathOrBytes, ToolRef, resume_window
from .errors import Cancelled, RunNotFound, ToolstreamError, Unavailable, from_rpc_error
from .events import ProgressEvent, Run, RunState, ToolInfo, TopLevelProgress
from .v1 import toolstream_pb2 as pb
from .v1 import toolstream_pb2_grpc as pb_grpc

__all__ = ["AsyncAgent", "AsyncClient", "AsyncProgressStream"]

_UNSET: Any = object()


class AsyncClient:
    """A connection to a toolstream server for asyncio; the options are :class:`Client`'s.

    The channel opens on first use, in the running event loop; ``async with`` (or
    ``await client.close()``) closes it.
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
        self._channel: Optional[grpc.aio.Channel] = None

    @classmethod
    def _from_connection(cls, connection: Connection, rpc_timeout: float) -> "AsyncClient":
        client = cls.__new__(cls)
        client._connection = connection
        client._rpc_timeout = rpc_timeout
        client._channel = None
        return client

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

    @property
    def target(self) -> str:
        """The server's address."""
        return self._connection.target

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

    def __repr__(self) -> str:
        return f"AsyncClient({self._connection.target!r})"

    async def tools(self) -> List[ToolInfo]:
        """The tools the server offers, sorted by name, with their JSON Schemas."""
        try:
            response = await self._tool_stub.ListTools(
                pb.ListToolsRequest(),
                timeout=self._rpc_timeout,
                metadata=self._connection.metadata,
            )
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
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
        **kwargs: Any,
    ) -> "AsyncProgressStream":
        """Starts a run and returns its stream once started; see :meth:`Client.run`."""
        request = pb.RunToolRequest(
            tool=tool,
            arguments=convert.to_struct(convert.merge_arguments(arguments, kwargs)),
            options=convert.options(min_interval=min_interval, detach=detach, heartbeat=heartbeat),
        )
        call = self._tool_stub.RunTool(
            request, timeout=timeout, metadata=self._connection.metadata
        )
        return await AsyncProgressStream._started(
            self, call, request.options, timeout=timeout, resume=resume
        )

    def agent(
        self,
        tools: Optional[Sequence[ToolRef]] = None,
        *,
        model: Optional[str] = None,
        max_steps: Optional[int] = None,
        system_prompt: Optional[str] = None,
    ) -> "AsyncAgent":
        """An agent calling ``tools``; see :meth:`Client.agent`."""
        return AsyncAgent(
            self,
            convert.tool_names(list(tools or [])),
            model=model,
            max_steps=max_steps,
            system_prompt=system_prompt,
        )

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
        options = convert.options(min_interval=min_interval, detach=False, heartbeat=heartbeat)
        call = self._watch_call(run_id, after, from_latest, options, timeout)
        return AsyncProgressStream(
            self,
            call,
            run_id=run_id,
            options=options,
            deadline=None if timeout is None else time.monotonic() + timeout,
            resume=resume,
            after=after,
            watching=True,
        )

    async def get_run(self, run_id: str) -> Run:
        """The run's state, latest progress, and result or error."""
        return convert.run(
            await self._unary_run(self._run_stub.GetRun, pb.GetRunRequest(run_id=run_id))
        )

    async def cancel_run(self, run_id: str) -> Run:
        """Cancels the run for everyone; a run that ended is returned unchanged."""
        return convert.run(
            await self._unary_run(self._run_stub.CancelRun, pb.CancelRunRequest(run_id=run_id))
        )

    async def runs(
        self,
        *,
        state: Union[None, RunState, str] = None,
        tool: Optional[str] = None,
        page_size: Optional[int] = None,
    ) -> AsyncIterator[Run]:
        """The runs the server holds, newest first (``async for``)."""
        token = ""
        while True:
            request = pb.ListRunsRequest(
                page_size=page_size or 0,
                page_token=token,
                state=convert.state_number(state),
                tool=tool or "",
            )
            try:
                response = await self._run_stub.ListRuns(
                    request, timeout=self._rpc_timeout, metadata=self._connection.metadata
                )
            except grpc.RpcError as error:
                raise from_rpc_error(error) from None
            for run in response.runs:
                yield convert.run(run)
            if not response.next_page_token:
                return
            token = response.next_page_token

    async def _unary_run(self, method: Any, request: Any) -> pb.Run:
        try:
            response: pb.Run = await method(
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


class _Result:
    """``await stream.result``: reads the rest of the stream, then the result or the error."""

    def __init__(self, stream: "AsyncProgressStream") -> None:
        self._stream = stream

    def __await__(self) -> Generator[Any, None, Any]:
        return self._stream._get_result().__await__()


class AsyncProgressStream:
    """The events of one run, for asyncio: ``async for`` yields the progress of the run's top
    level, each with ``event.progress`` a float (as :class:`toolstream.ProgressStream`); then
    ``await stream.result`` gives its result or raises its error. ``events()`` yields every event
    and raises the run's error at the end. ``await stream.cancel()`` cancels the run;
    ``async with`` closes the stream on leaving (which cancels a run not started with
    ``detach=True``)."""

    def __init__(
        self,
        client: AsyncClient,
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
        self._done = False
        self._result: Any = _UNSET
        self._error: Optional[ToolstreamError] = None
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
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            first = await call.read()
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        if first is grpc.aio.EOF:
            raise Unavailable("the stream ended before the run started")
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

    @property
    def run_id(self) -> str:
        """The run's id."""
        return self._run_id

    @property
    def done(self) -> bool:
        """Whether the stream has ended."""
        return self._done

    @property
    def error(self) -> Optional[ToolstreamError]:
        """The run's error once the stream has ended with one."""
        return self._error

    @property
    def result(self) -> Awaitable[Any]:
        """``await stream.result``: the run's result, after reading the rest of the stream;
        raises the run's error when it failed."""
        return _Result(self)

    async def _get_result(self) -> Any:
        while not self._done:
            try:
                await self._next_event()
            except StopAsyncIteration:
                break
        if self._error is not None:
            raise self._error
        return self._result

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
        if self._error is not None:
            raise self._error

    async def _next_event(self) -> ProgressEvent:
        if self._pending:
            return self._pending.popleft()
        while not self._done:
            try:
                message = await self._call.read()
            except grpc.RpcError as error:
                code, details = error.code(), error.details() or ""
                if code in _RESUMABLE and await self._try_resume(code, details):
                    continue
                self._finish(
                    error=from_rpc_error(
                        error,
                        run_id=self._run_id,
                        about_runs=self._watching and not self._seen_any,
                    )
                )
                break
            except asyncio.CancelledError:
                if not self._cancelled_here:
                    raise  # the task reading this stream was cancelled
                self._finish(error=Cancelled("the run was cancelled", run_id=self._run_id))
                break
            if message is grpc.aio.EOF:
                if await self._try_resume(
                    grpc.StatusCode.UNAVAILABLE, "the stream ended without a result"
                ):
                    continue
                self._finish(
                    error=Unavailable(
                        "the stream ended without a result or an error: the connection was lost",
                        run_id=self._run_id,
                    )
                )
                break
            if message.sequence and message.sequence <= self._last_sequence:
                continue
            self._seen_any = True
            self._last_sequence = max(self._last_sequence, message.sequence)
            event = convert.event(message)
            if event.type == "result":
                self._finish(result=event.result)
            return event
        raise StopAsyncIteration

    def _finish(self, *, result: Any = _UNSET, error: Optional[ToolstreamError] = None) -> None:
        if self._done:
            return
        self._done = True
        self._result = None if result is _UNSET else result
        self._error = error

    async def _try_resume(self, code: grpc.StatusCode, details: str) -> bool:
        """See :meth:`ProgressStream._try_resume`."""
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
                run: pb.Run = await self._client._run_stub.GetRun(
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
                    await asyncio.sleep(min(pause, max(remaining, 0)))
                    pause = min(pause * 2, 1.0)
                    continue
                return False
            ended = run.state in (pb.RUN_STATE_FAILED, pb.RUN_STATE_CANCELLED)
            if ended and run.error_code == code.value[0] and run.error_message == details:
                return False
            timeout = None if self._deadline is None else max(self._deadline - time.monotonic(), 0.001)
            self._call = self._client._watch_call(
                self._run_id, self._last_sequence, False, self._options, timeout
            )
            return True

    async def cancel(self) -> None:
        """Cancels the run for everyone watching it; the stream then ends with
        :class:`Cancelled`."""
        if self._done:
            return
        try:
            await self._client.cancel_run(self._run_id)
            return
        except ToolstreamError:
            pass  # no RunService there (a worker): leaving cancels the run
        self._cancelled_here = True
        self._call.cancel()

    async def aclose(self) -> None:
        """Stops reading; cancels the run unless it was started with ``detach=True``."""
        if self._done:
            return
        self._cancelled_here = True
        self._call.cancel()
        self._finish(
            error=Cancelled("the stream was closed before the run ended", run_id=self._run_id)
        )

    async def __aenter__(self) -> "AsyncProgressStream":
        return self

    async def __aexit__(
        self,
        kind: Optional[Type[BaseException]],
        value: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        state = "done" if self._done else "running"
        return f"<AsyncProgressStream run_id={self._run_id!r} {state}>"


AsyncCallback = Callable[[ProgressEvent], Any]


async def _call_back(callback: Optional[AsyncCallback], event: ProgressEvent) -> None:
    if callback is None:
        return
    outcome = callback(event)
    if inspect.isawaitable(outcome):
        await outcome


class AsyncAgent:
    """:class:`toolstream.Agent` for asyncio (:meth:`AsyncClient.agent`)."""

    def __init__(
        self,
        client: AsyncClient,
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

    async def stream(
        self,
        prompt: str,
        *,
        timeout: Optional[float] = None,
        min_interval: Optional[float] = None,
        detach: bool = False,
        heartbeat: Optional[float] = None,
        resume: Union[bool, float] = False,
    ) -> AsyncProgressStream:
        """Starts the agent on ``prompt``; the options are those of :meth:`AsyncClient.run`."""
        request = pb.RunAgentRequest(
            prompt=prompt,
            tools=self.tools,
            model=self.model or "",
            max_steps=self.max_steps or 0,
            system_prompt=self.system_prompt or "",
            options=convert.options(min_interval=min_interval, detach=detach, heartbeat=heartbeat),
        )
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
    ) -> Any:
        """Runs the agent and returns its answer; callbacks may be plain or coroutine functions."""
        async with await self.stream(prompt, timeout=timeout, min_interval=min_interval) as stream:
            async for event in stream.events():
                await _call_back(on_event, event)
                if event.type == "progress":
                    await _call_back(on_progress, event)
            return await stream.result

    arun = run

    async def arun_stream(
        self,
        prompt: str,
        *,
        timeout: Optional[float] = None,
        min_interval: Optional[float] = None,
    ) -> AsyncIterator[ProgressEvent]:
        """Every event of the agent's run, typed by ``event.type``; raises the run's error after
        the last event. Leaving the loop early cancels the run."""
        stream = await self.stream(prompt, timeout=timeout, min_interval=min_interval)
        try:
            async for event in stream.events():
                yield event
        finally:
            await stream.aclose()
