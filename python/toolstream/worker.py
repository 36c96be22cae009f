"""Serve many Python tools from one long-lived process: a toolstream ``ToolService`` that a
toolstream server federates with a ``[[tools]] kind = "grpc"`` entry.

A command tool (:mod:`toolstream.tool`) starts a process per call; a worker starts once, so a
model or a connection pool is loaded once and shared by every call::

    from toolstream import progress
    from toolstream.worker import serve

    @progress
    def slow_search(query: str) -> str:
        '''Searches, slowly.'''
        for i in range(5):
            yield {"progress": (i + 1) / 5, "status": f"Searching page {i + 1}"}
            time.sleep(1)
        return "Search complete"

    if __name__ == "__main__":
        serve([slow_search], listen="127.0.0.1:50052")

and in the server's config::

    [[tools]]
    kind = "grpc"
    endpoint = "http://127.0.0.1:50052"

Or without writing ``serve``: ``python -m toolstream.worker tools.py --listen 127.0.0.1:50052``
serves every ``@progress`` function of ``tools.py`` (or ``module:function`` names).

What runs, and how:

- A **sync generator** (the seed's tools) runs on a thread of its own; each yielded dict is a
  progress report (``{"progress": 0.5, "status": "...", ...extra}``; a bare number is the
  fraction, a bare string the status) and its ``return`` value is the result. An **async
  generator** runs on the event loop; since it cannot ``return`` a value, it yields
  ``{"result": value}`` last (a yielded dict with a ``result`` key is the result for every kind).
  A **plain function** runs on a thread and an **async function** on the loop; their return value
  is the result.
- Arguments arrive as JSON and are converted to the type hints
  (:func:`toolstream.schema.coerce_arguments`); the input schema ListTools reports comes from the
  same hints and the docstring. Arguments that do not fit end the call with INVALID_ARGUMENT
  naming the field; an unknown tool with NOT_FOUND.
- **Cancellation** (the caller cancels or disconnects, its deadline passes, the worker stops)
  reaches the tool: a sync generator is closed at its next ``yield`` (``GeneratorExit`` there,
  so its ``finally:`` blocks run), an async generator or function gets ``CancelledError`` at its
  current ``await``. A plain function cannot be interrupted; it runs to its end and its result is
  dropped.
- An exception ends the call with ABORTED and the text ``"<ExceptionType>: message"``; the
  traceback goes to the log. A result or progress data that is not JSON ends it with INTERNAL.
- At most ``max_concurrency`` calls run at once (a cancelled sync tool holds its place until it
  reaches its next ``yield``); one more is refused with RESOURCE_EXHAUSTED, which a federating
  toolstream server reports as UNAVAILABLE (retry).
- **Sub-tasks** (``progress.child``, see :class:`toolstream.tool.Task`) give the same progress
  tree as in a command tool: each is a node of its own (``call_id`` ``"1"``, ``"1/2"``…, its
  ``parent_call_id``, its label as ``tool``), and the call's own fraction is theirs rolled up
  (the worker does the roll-up, :mod:`toolstream._progress_tree`, since a federating server
  relays a remote's nodes as they are). Sub-tasks still open when the tool returns are finished
  before the result. A call's sub-tasks and tree live only as long as the call.
- **Asking** (``answer = yield toolstream.ask(prompt, type)``, in sync and async generators):
  the question is an input request of the worker's run, an ``input_requested`` event on the
  call's stream. The worker also serves ``toolstream.v1.RunService.RespondToRun`` for its calls
  (its other RunService methods are UNIMPLEMENTED): the federating server asks the question in
  its own run, under its call, and sends the answer (or a decline) back there with the run id of
  the worker's events; a client can answer there directly as well. The first answer wins and
  is converted to the question's type (one that does not fit is INVALID_ARGUMENT, and the
  question stays open); a second is FAILED_PRECONDITION, an unknown run or request NOT_FOUND.
  The question lapses at the call's deadline (sent by the server as ``grpc-timeout``) or its
  ``input_timeout_ms``, and a cancelled call resolves it: the ``yield`` raises
  ``InputDeclined``, ``InputExpired`` or ``InputCancelled``. Each question ends with one
  ``input_resolved`` event. See :mod:`toolstream._worker_questions`.
- When the caller reads slower than the tool reports, up to 64 reports wait to be sent; past
  that a report replaces its node's newest unsent one (the gap in ``sequence`` shows it), so
  memory stays bounded and the tool is never slowed.
- **Partial results** (``yield toolstream.partial(value, key=..., append=...)``) are sent as
  ``partial_result`` events in order with the progress, and are never replaced or dropped; a
  federating server relays them under its call.
- ``grpc.health.v1.Health`` reports ``""`` and ``toolstream.v1.ToolService`` SERVING, and
  NOT_SERVING once the worker is stopping. RunAgent is UNIMPLEMENTED: agents run on the toolstream
  server, which can call a worker's tools.
- ``serve`` runs until SIGTERM or SIGINT, then stops taking calls, gives those running ``grace``
  seconds, and cancels the rest.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import concurrent.futures
import importlib
import importlib.util
import inspect
import json
import logging
import math
import os
import signal
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass
from typing import (
    Any,
    AsyncIterator,
    Callable,
    Deque,
    Dict,
    Iterable,
    List,
    NamedTuple,
    Optional,
    Sequence,
    Tuple,
    Union,
)

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from . import _convert as convert
from .schema import ArgumentError, coerce_arguments, describe
from ._progress_tree import NodeReport, ProgressTree, TaskLineError
from .tool import Ask, CallTasks, Resume, _progress_line
from ._worker_questions import InputRequestedReport, InputResolvedReport, Questions, RespondError
from .v1 import toolstream_pb2 as pb
from .v1 import toolstream_pb2_grpc as pb_grpc

__all__ = ["Worker", "main", "serve", "serve_async"]

log = logging.getLogger("toolstream.worker")

DEFAULT_LISTEN = "127.0.0.1:50052"
SERVICE_NAME = "toolstream.v1.ToolService"
_MAX_MESSAGE = 64 * 1024 * 1024


class _PartialReport(NamedTuple):
    """A partial result the tool yielded (``toolstream.partial``): never dropped from the outbox,
    unlike progress. Of the call itself, or of the sub-task node ``call_id`` (``task=``)."""

    key: str
    value: Any
    append: bool
    call_id: str = ""
    parent_call_id: str = ""
    label: str = ""


#: What the outbox carries: a node's progress, a partial result of the call, or one of its
#: questions asked or resolved (those are never dropped either).
_Report = Union[NodeReport, _PartialReport, InputRequestedReport, InputResolvedReport]


def _partial_report(line: Dict[str, Any], tree: ProgressTree) -> _PartialReport:
    """The ``partial`` object of a yielded line, checked as the server checks the command-tool
    protocol's; one naming a sub-task (``task``) is that node's, looked up in ``tree``."""
    partial = line["partial"]
    if not isinstance(partial, dict):
        raise TaskLineError(f"partial must be a dict such as {{'value': ...}}, not {partial!r}")
    unknown = set(partial) - {"value", "key", "append", "task"}
    if unknown:
        raise TaskLineError(
            f"partial has unknown keys {sorted(unknown)} (known: value, key, append, task)"
        )
    key = partial.get("key") or ""
    if not isinstance(key, str):
        raise TaskLineError(f"partial key must be a string, not {key!r}")
    report = _PartialReport(key=key, value=partial.get("value"), append=bool(partial.get("append")))
    task = partial.get("task")
    if task is None:
        return report
    if not isinstance(task, str):
        raise TaskLineError(f"partial task must be a sub-task's id (a string), not {task!r}")
    node = tree.node(task)
    return report._replace(
        call_id=node.call_id, parent_call_id=node.parent_call_id, label=node.label
    )


@dataclass(frozen=True)
class _Tool:
    name: str
    fn: Callable[..., Any]
    spec: pb.Tool


def _tool(fn: Callable[..., Any]) -> _Tool:
    described = describe(fn)
    spec = pb.Tool(
        name=described["name"],
        description=described["description"],
        input_schema=convert.to_struct(described["input_schema"]),
        kind="native",
    )
    if "output_schema" in described:
        spec.output_schema.CopyFrom(convert.to_struct(described["output_schema"]))
    return _Tool(name=described["name"], fn=fn, spec=spec)


class _Outbox:
    """What a running tool has to say, handed from its thread (or task) to the call's handler:
    progress not yet sent (at most ``limit``; past that a report replaces its node's newest
    unsent one, so a slow caller never slows the tool and memory is bounded by the limit plus the
    tree's nodes), and the end."""

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int = 64) -> None:
        self._loop = loop
        self._limit = limit
        self._lock = threading.Lock()
        self._wake = asyncio.Event()
        self._sequence = 1  # 1 is the started event
        self._progress: Deque[Tuple[int, _Report]] = collections.deque()
        self._end: Optional[Tuple[int, str, Any]] = None

    def _notify(self) -> None:
        try:
            self._loop.call_soon_threadsafe(self._wake.set)
        except RuntimeError:
            pass  # the loop is closed: the worker is gone, nobody is listening

    def progress(self, reports: Iterable[_Report]) -> None:
        with self._lock:
            if self._end is not None:
                return
            for report in reports:
                self._sequence += 1
                # Partial results are never dropped: only progress makes room.
                if len(self._progress) >= self._limit and isinstance(report, NodeReport):
                    self._drop_unsent(report.call_id)
                self._progress.append((self._sequence, report))
        self._notify()

    def _drop_unsent(self, call_id: str) -> None:
        """Drops the newest unsent progress report of node ``call_id``, if any."""
        for position in range(len(self._progress) - 1, -1, -1):
            report = self._progress[position][1]
            if isinstance(report, NodeReport) and report.call_id == call_id:
                del self._progress[position]
                return

    def end(self, kind: str, payload: Any) -> None:
        """``kind`` is "result", "error" (payload: the exception), "broken" (payload: how the
        tool broke the progress protocol) or "cancelled"."""
        with self._lock:
            if self._end is not None:
                return
            self._sequence += 1
            self._end = (self._sequence, kind, payload)
        self._notify()

    async def next(
        self,
    ) -> Tuple[List[Tuple[int, _Report]], Optional[Tuple[int, str, Any]]]:
        """Waits for news: the progress not yet taken, in order, and the end once known."""
        while True:
            with self._lock:
                progress = list(self._progress)
                self._progress.clear()
                end = self._end
                if progress or end is not None:
                    self._wake.clear()
                    return progress, end
            await self._wake.wait()
            self._wake.clear()


class _Execution:
    """One call of a tool, running until it ends or is cancelled."""

    def __init__(
        self,
        tool: _Tool,
        arguments: Dict[str, Any],
        outbox: _Outbox,
        executor: concurrent.futures.ThreadPoolExecutor,
        finished: Callable[[], None],
        questions: Questions,
    ) -> None:
        self.tool = tool
        self.arguments = arguments
        self.outbox = outbox
        self.questions = questions
        # The call's sub-tasks (``progress.child``) and its progress tree: this call's only, and
        # gone with it.
        self._tasks = CallTasks()
        self._tree = ProgressTree()
        self._stop = threading.Event()
        self._task: Optional["asyncio.Task[None]"] = None
        self._finished = finished
        fn = inspect.unwrap(tool.fn)
        if inspect.isasyncgenfunction(fn) or inspect.iscoroutinefunction(fn):
            self._task = asyncio.get_running_loop().create_task(self._run_async())
            self._task.add_done_callback(lambda _: finished())
        else:
            loop = asyncio.get_running_loop()

            def done(_: Any) -> None:
                try:
                    loop.call_soon_threadsafe(finished)
                except RuntimeError:
                    pass  # the loop is closed: nothing left to count

            executor.submit(self._run_sync).add_done_callback(done)

    def cancel(self) -> None:
        """Stops the tool: a sync generator at its next ``yield``, async code at its ``await``."""
        self._stop.set()
        # A tool waiting for an answer gets InputCancelled at its ``yield``, then is closed.
        self.questions.close()
        if self._task is not None and not self._task.done():
            self._task.cancel()

    def _progress(self, report: Any) -> Optional[Dict[str, Any]]:
        """Sends what the tool said before this yield (sub-tasks made or finished), then the
        yielded report; returns the report when it is the result instead."""
        line = _progress_line(report)
        lines = self._tasks.take()
        if "result" not in line:
            lines.append(line)
        reports: List[_Report] = []
        for each in lines:
            if "partial" in each:
                reports.append(_partial_report(each, self._tree))
            else:
                reports.extend(self._tree.apply(each))
        self.outbox.progress(reports)
        return line if "result" in line else None

    def _result(self, value: Any) -> None:
        """Ends the call with ``value``, its sub-tasks still open finished first."""
        reports: List[_Report] = []
        for line in self._tasks.take():
            reports.extend(self._tree.apply(line))
        reports.extend(self._tree.finish_all())
        self.outbox.progress(reports)
        self.outbox.end("result", value)

    def _run_sync(self) -> None:
        try:
            with self._tasks.current():
                self._call_sync()
        except TaskLineError as error:
            self.outbox.end("broken", str(error))
        except BaseException as error:  # noqa: BLE001 - every failure must reach the caller
            self._failed(error)

    def _call_sync(self) -> None:
        outcome = self.tool.fn(**self.arguments)
        if inspect.isgenerator(outcome):
            self._drive(outcome)
        elif inspect.isawaitable(outcome) or inspect.isasyncgen(outcome):
            self.outbox.end(
                "error",
                TypeError("a sync function returned an awaitable; declare it `async def`"),
            )
        else:
            self._result(outcome)

    def _drive(self, generator: Any) -> None:
        """Runs a sync generator step by step, closing it at a ``yield`` once cancelled; a
        yielded question is resumed with its answer (or has InputNotAnswered thrown in)."""
        resume = Resume()
        try:
            while True:
                if self._stop.is_set():
                    generator.close()
                    self.outbox.end("cancelled", None)
                    return
                try:
                    report = resume.send(generator)
                except StopIteration as stop:
                    self._result(stop.value)
                    return
                if isinstance(report, Ask):
                    resume.answer(self.questions.ask(report).result)
                    continue
                final = self._progress(report)
                if final is not None:
                    generator.close()
                    self._result(final["result"])
                    return
        finally:
            generator.close()

    async def _run_async(self) -> None:
        fn = self.tool.fn
        try:
            with self._tasks.current():
                if inspect.isasyncgenfunction(inspect.unwrap(fn)):
                    generator = fn(**self.arguments)
                    try:
                        await self._drive_async(generator)
                    finally:
                        await generator.aclose()
                else:
                    self._result(await fn(**self.arguments))
        except asyncio.CancelledError:
            self.outbox.end("cancelled", None)
        except TaskLineError as error:
            self.outbox.end("broken", str(error))
        except BaseException as error:  # noqa: BLE001
            self._failed(error)

    async def _drive_async(self, generator: Any) -> None:
        """Runs an async generator to its result; a yielded question is resumed with its
        answer (or has InputNotAnswered thrown in)."""
        resume = Resume()
        while True:
            try:
                report = await resume.asend(generator)
            except StopAsyncIteration:
                self._result(None)
                return
            if isinstance(report, Ask):
                outcome = asyncio.wrap_future(self.questions.ask(report))
                await asyncio.wait([outcome])
                resume.answer(outcome.result)
                continue
            final = self._progress(report)
            if final is not None:
                self._result(final["result"])
                return

    def _failed(self, error: BaseException) -> None:
        log.warning(
            "tool %s failed:\n%s",
            self.tool.name,
            "".join(traceback.format_exception(type(error), error, error.__traceback__)).rstrip(),
        )
        self.outbox.end("error", error)


def _error_text(error: BaseException) -> str:
    name = type(error).__name__
    message = str(error)
    if isinstance(error, SystemExit):
        message = f"the tool exited (status {error.code}) before returning a result"
    return f"{name}: {message}" if message else name


_OUTCOMES = {
    "answered": pb.INPUT_OUTCOME_ANSWERED,
    "declined": pb.INPUT_OUTCOME_DECLINED,
    "expired": pb.INPUT_OUTCOME_EXPIRED,
    "cancelled": pb.INPUT_OUTCOME_CANCELLED,
}


def _input_requested(report: InputRequestedReport) -> pb.InputRequested:
    """A question of the call as its ``input_requested`` event carries it (the call's own, so
    its call id and tool are empty, as for any run's top level)."""
    message = pb.InputRequested(
        request_id=report.request_id, prompt=report.prompt, kind=pb.INPUT_KIND_INPUT
    )
    if report.schema is not None:
        message.schema.CopyFrom(convert.to_struct(report.schema))
    if report.expire_time is not None:
        message.expire_time.FromNanoseconds(int(report.expire_time * 1e9))
    return message


def _event_body(report: _Report, tool: str) -> Dict[str, Any]:
    """The ``RunEvent`` field carrying ``report``: its progress, its partial result, or a
    question asked or resolved. Raises ``TypeError``/``ValueError`` for what is not JSON."""
    if isinstance(report, InputRequestedReport):
        return {"input_requested": _input_requested(report)}
    if isinstance(report, InputResolvedReport):
        resolved = pb.InputResolved(request_id=report.request_id, outcome=_OUTCOMES[report.outcome])
        if report.outcome == "answered":
            resolved.value.CopyFrom(convert.to_value(report.value))
        return {"input_resolved": resolved}
    if isinstance(report, _PartialReport):
        value = convert.to_value(report.value)
        return {
            "partial_result": pb.PartialResult(
                call_id=report.call_id,
                parent_call_id=report.parent_call_id,
                tool=report.label,
                key=report.key,
                value=value,
                append=report.append,
            )
        }
    return {"progress": _progress_message(report, tool)}


def _progress_message(report: NodeReport, tool: str) -> pb.Progress:
    """A node's report as a Progress message: ``progress`` and ``status`` out, the rest as data,
    tagged with the node (a sub-task's ``call_id``, ``parent_call_id``, and its label as
    ``tool``). A fraction outside [0, 1] is clamped; NaN is dropped (with a warning)."""
    data = dict(report.fields)
    message = pb.Progress(
        call_id=report.call_id, parent_call_id=report.parent_call_id, tool=report.label
    )
    fraction = data.get("progress")
    if isinstance(fraction, (int, float)) and not isinstance(fraction, bool):
        del data["progress"]
        if math.isnan(fraction):
            log.warning("tool %s reported progress NaN; dropped", tool)
        else:
            message.progress = min(max(float(fraction), 0.0), 1.0)
    elif fraction is None:
        data.pop("progress", None)
    status = data.get("status")
    if isinstance(status, str):
        message.status = status
        del data["status"]
    elif status is None:
        data.pop("status", None)
    message.data.CopyFrom(convert.to_struct(data))
    return message


class _ToolService(pb_grpc.ToolServiceServicer):
    def __init__(self, worker: "Worker") -> None:
        self._worker = worker

    async def ListTools(self, request: pb.ListToolsRequest, context: Any) -> pb.ListToolsResponse:
        return pb.ListToolsResponse(tools=[t.spec for t in self._worker._sorted])

    async def RunAgent(self, request: pb.RunAgentRequest, context: Any) -> AsyncIterator[pb.RunEvent]:
        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED,
            "a toolstream worker runs tools only; run agents on the toolstream server, "
            "which can call this worker's tools",
        )
        yield pb.RunEvent()  # pragma: no cover - abort raises

    async def RunTool(self, request: pb.RunToolRequest, context: Any) -> AsyncIterator[pb.RunEvent]:
        worker = self._worker
        tool = worker._tools.get(request.tool)
        if tool is None:
            await context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"unknown tool {json.dumps(request.tool)}; ListTools shows the tools this worker offers",
            )
            return
        try:
            arguments = coerce_arguments(tool.fn, convert.from_struct(request.arguments))
        except ArgumentError as error:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"invalid arguments for tool {json.dumps(tool.name)}: {error}",
            )
            return
        if worker._stopping:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the worker is shutting down")
            return
        if worker._running >= worker.max_concurrency:
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"the worker is running {worker.max_concurrency} calls, its limit "
                "(max_concurrency); retry later",
            )
            return
        run_id = uuid.uuid4().hex
        await context.send_initial_metadata((("x-run-id", run_id),))
        remaining = context.time_remaining()
        yield pb.RunEvent(
            run_id=run_id,
            sequence=1,
            timestamp=convert.now_timestamp(),
            started=pb.RunStarted(
                run_id=run_id,
                tool=tool.name,
                options=request.options,
                deadline_ms=int(remaining * 1000) if remaining is not None else 0,
            ),
        )
        worker._running += 1
        loop = asyncio.get_running_loop()
        outbox = _Outbox(loop)
        input_timeout = request.options.input_timeout_ms / 1000 if request.options.input_timeout_ms else None
        questions = Questions(
            loop,
            lambda report: outbox.progress([report]),
            deadline=time.time() + remaining if remaining is not None else None,
            input_timeout=input_timeout,
        )
        execution = _Execution(tool, arguments, outbox, worker._executor, worker._finished, questions)
        worker._calls[run_id] = (tool.name, questions)
        # Belt and braces: cancellation also reaches the tool when the call ends while this
        # handler is not at an await (grpc then finalizes the generator later).
        context.add_done_callback(lambda _: execution.cancel())
        try:
            while True:
                progress, end = await outbox.next()
                for sequence, report in progress:
                    try:
                        body = _event_body(report, tool.name)
                    except (TypeError, ValueError) as error:
                        what = (
                            "yielded a partial result"
                            if isinstance(report, _PartialReport)
                            else "reported progress"
                        )
                        await context.abort(
                            grpc.StatusCode.INTERNAL,
                            f"tool {tool.name!r} {what} that is not JSON: {error}",
                        )
                        return
                    yield pb.RunEvent(
                        run_id=run_id,
                        sequence=sequence,
                        timestamp=convert.now_timestamp(),
                        **body,
                    )
                if end is None:
                    continue
                sequence, kind, payload = end
                if kind == "result":
                    try:
                        value = convert.to_value(payload)
                    except (TypeError, ValueError) as error:
                        await context.abort(
                            grpc.StatusCode.INTERNAL,
                            f"tool {tool.name!r} returned a result that is not JSON: {error}",
                        )
                        return
                    yield pb.RunEvent(
                        run_id=run_id,
                        sequence=sequence,
                        timestamp=convert.now_timestamp(),
                        result=pb.Result(value=value),
                    )
                    return
                if kind == "error":
                    await context.abort(grpc.StatusCode.ABORTED, _error_text(payload))
                    return
                if kind == "broken":
                    await context.abort(
                        grpc.StatusCode.INTERNAL,
                        f"tool {tool.name!r} reported progress that breaks the protocol: {payload}",
                    )
                    return
                await context.abort(grpc.StatusCode.CANCELLED, "the run was cancelled")
                return
        finally:
            worker._calls.pop(run_id, None)
            execution.cancel()


class _RunService(pb_grpc.RunServiceServicer):
    """RespondToRun for the worker's calls, so that the server federating it can send back
    the answers to their questions. The worker keeps no runs once their calls end, so it serves
    no other RunService method."""

    def __init__(self, worker: "Worker") -> None:
        self._worker = worker

    async def RespondToRun(self, request: pb.RespondToRunRequest, context: Any) -> pb.Run:
        call = self._worker._calls.get(request.run_id)
        if call is None:
            await context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"no call of this worker is running as run {request.run_id!r} (it ended, or never was)",
            )
            return pb.Run()  # pragma: no cover - abort raises
        tool, questions = call
        value = convert.from_value(request.value) if request.HasField("value") else None
        try:
            questions.respond(request.request_id, value, request.decline)
        except RespondError as error:
            await context.abort(getattr(grpc.StatusCode, error.code), str(error))
            return pb.Run()  # pragma: no cover - abort raises
        still_open = questions.open_requests()
        run = pb.Run(
            run_id=request.run_id,
            tool=tool,
            state=pb.RUN_STATE_INPUT_REQUIRED if still_open else pb.RUN_STATE_RUNNING,
        )
        run.pending_inputs.extend(_input_requested(report) for report in still_open)
        return run


class Worker:
    """A worker serving ``tools``: start it with ``await worker.start()`` (which returns the port
    it listens on), stop it with ``await worker.stop()``. :func:`serve` does both around
    signals; use ``Worker`` to embed a worker in a program that runs its own event loop.

    - ``listen``: ``host:port`` (port 0: any free port); default ``TOOLSTREAM_WORKER_LISTEN`` or
      ``127.0.0.1:50052``. Loopback by default: anyone who can reach the port can run the tools.
    - ``max_concurrency``: calls running at once (default 16); also the size of the thread pool
      sync tools run on.
    - ``grace``: seconds running calls get to finish when the worker stops, before they are
      cancelled.
    - ``server_credentials``: :class:`grpc.ServerCredentials` to serve TLS
      (``grpc.ssl_server_credentials``); ``interceptors``: gRPC server interceptors (to check a
      bearer token, say); ``options``: more gRPC server options.
    """

    def __init__(
        self,
        tools: Iterable[Callable[..., Any]],
        *,
        listen: Optional[str] = None,
        max_concurrency: int = 16,
        grace: float = 10.0,
        server_credentials: Optional[grpc.ServerCredentials] = None,
        interceptors: Optional[Sequence[Any]] = None,
        options: Optional[Sequence[Tuple[str, Any]]] = None,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self._tools: Dict[str, _Tool] = {}
        for fn in tools:
            tool = _tool(fn)
            if tool.name in self._tools:
                raise ValueError(f"two tools are named {tool.name!r}; tool names must be unique")
            self._tools[tool.name] = tool
        if not self._tools:
            raise ValueError("a worker needs at least one tool")
        self._sorted = sorted(self._tools.values(), key=lambda t: t.name)
        self.listen = listen or os.environ.get("TOOLSTREAM_WORKER_LISTEN") or DEFAULT_LISTEN
        self.max_concurrency = max_concurrency
        self.grace = grace
        self._credentials = server_credentials
        self._interceptors = list(interceptors or [])
        self._options = list(options or [])
        self._server: Optional[grpc.aio.Server] = None
        self._health: Optional[Any] = None
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=max_concurrency, thread_name_prefix="toolstream-tool"
        )
        self._running = 0
        # The calls running, by run id: their tool's name and their questions (RespondToRun).
        self._calls: Dict[str, Tuple[str, Questions]] = {}
        self._stopping = False
        self.port: Optional[int] = None

    @property
    def tool_names(self) -> List[str]:
        """The names of the tools served, sorted."""
        return [t.name for t in self._sorted]

    @property
    def address(self) -> str:
        """``host:port`` the worker listens on, once started."""
        host = self.listen.rsplit(":", 1)[0]
        return f"{host}:{self.port}"

    def _finished(self) -> None:
        self._running -= 1

    async def start(self) -> int:
        """Starts listening; returns the port."""
        options = [
            ("grpc.max_receive_message_length", _MAX_MESSAGE),
            ("grpc.max_send_message_length", _MAX_MESSAGE),
        ] + self._options
        server = grpc.aio.server(interceptors=self._interceptors or None, options=options)
        pb_grpc.add_ToolServiceServicer_to_server(_ToolService(self), server)
        pb_grpc.add_RunServiceServicer_to_server(_RunService(self), server)
        health = health_aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health, server)
        for service in ("", SERVICE_NAME):
            await health.set(service, health_pb2.HealthCheckResponse.SERVING)
        if self._credentials is not None:
            port = server.add_secure_port(self.listen, self._credentials)
        else:
            port = server.add_insecure_port(self.listen)
        if not port:
            raise OSError(f"cannot listen on {self.listen}")
        await server.start()
        self._server, self._health, self.port = server, health, port
        log.info(
            "toolstream worker serving on %s with tools: %s",
            self.address,
            ", ".join(self.tool_names),
        )
        return port

    async def stop(self, grace: Optional[float] = None) -> None:
        """Stops taking calls (health NOT_SERVING), gives running calls ``grace`` seconds (the
        worker's by default), then cancels them."""
        if self._server is None:
            return
        self._stopping = True
        if self._health is not None:
            await self._health.enter_graceful_shutdown()
        await self._server.stop(self.grace if grace is None else grace)
        self._executor.shutdown(wait=False)
        log.info("toolstream worker stopped")

    async def wait_for_termination(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()


async def serve_async(tools: Iterable[Callable[..., Any]], **options: Any) -> None:
    """Serves ``tools`` until SIGTERM or SIGINT (or until cancelled), then stops gracefully. The
    options are :class:`Worker`'s."""
    worker = Worker(tools, **options)
    await worker.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(signum, stop.set)
            installed.append(signum)
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # not the main thread, or not supported here
    try:
        await stop.wait()
        log.info("toolstream worker stopping: no new calls, %.1f s for those running", worker.grace)
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
        await worker.stop()


def serve(
    tools: Iterable[Callable[..., Any]],
    *,
    listen: Optional[str] = None,
    max_concurrency: int = 16,
    grace: float = 10.0,
    server_credentials: Optional[grpc.ServerCredentials] = None,
    interceptors: Optional[Sequence[Any]] = None,
    options: Optional[Sequence[Tuple[str, Any]]] = None,
) -> None:
    """Serves ``tools`` (functions, usually ``@progress`` generators) as a toolstream
    ``ToolService`` on ``listen`` until SIGTERM or SIGINT. Logs to stderr when logging is not
    configured. See :class:`Worker` for the options."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(
        serve_async(
            tools,
            listen=listen,
            max_concurrency=max_concurrency,
            grace=grace,
            server_credentials=server_credentials,
            interceptors=interceptors,
            options=options,
        )
    )


_loaded: Dict[str, Any] = {}


def _module(where: str) -> Any:
    """A module by name, or a ``.py`` file loaded once as a module."""
    if not (where.endswith(".py") or os.sep in where):
        return importlib.import_module(where)
    path = os.path.abspath(where)
    if path not in _loaded:
        name = os.path.splitext(os.path.basename(path))[0]
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise SystemExit(f"cannot load {where}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        sys.path.insert(0, os.path.dirname(path))
        spec.loader.exec_module(module)
        _loaded[path] = module
    return _loaded[path]


def _load(target: str) -> List[Callable[..., Any]]:
    """``module:function``, ``file.py:function`` (several: ``file.py:a,b``), or a module or
    ``file.py`` alone (every ``@progress`` function in it)."""
    where, _, names = target.partition(":")
    module = _module(where)
    if names:
        found = []
        for name in names.split(","):
            fn = getattr(module, name, None)
            if not callable(fn):
                raise SystemExit(f"{where} has no function {name!r}")
            found.append(fn)
        return found
    found = [
        value
        for value in vars(module).values()
        if callable(value)
        and getattr(value, "__toolstream_progress__", False)
        and getattr(value, "__module__", None) == module.__name__
    ]
    if not found:
        raise SystemExit(f"{where} has no @progress function; name one as {where}:function")
    return found


def main(argv: Optional[Sequence[str]] = None) -> None:
    """``python -m toolstream.worker TARGET... [--listen ADDR]``."""
    parser = argparse.ArgumentParser(
        prog="python -m toolstream.worker",
        description="Serve Python tools to a toolstream server (federate with kind = \"grpc\").",
    )
    parser.add_argument(
        "targets",
        nargs="+",
        metavar="TARGET",
        help="module:function, file.py:function, or a module or file.py (its @progress functions)",
    )
    parser.add_argument("--listen", help=f"host:port (default {DEFAULT_LISTEN})")
    parser.add_argument("--max-concurrency", type=int, default=16)
    parser.add_argument("--grace", type=float, default=10.0, help="seconds for running calls at shutdown")
    args = parser.parse_args(argv)
    tools: List[Callable[..., Any]] = []
    for target in args.targets:
        tools.extend(_load(target))
    serve(tools, listen=args.listen, max_concurrency=args.max_concurrency, grace=args.grace)


if __name__ == "__main__":
    main()
