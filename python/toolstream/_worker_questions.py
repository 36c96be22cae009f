"""The questions a worker's call asks (``answer = yield toolstream.ask(...)``) and their answers.

A worker cannot reach a person itself: the server that federates it relays each question under
its own call and sends the outcome back with ``RunService.RespondToRun`` on the worker (see
``docs/mcp-and-remote-tools.md``). So a question here is an input request of the worker's run:
an ``input_requested`` event on the call's stream, open until exactly one of

- ``RespondToRun`` answers it (the value converted to the question's type; one that does not
  fit is INVALID_ARGUMENT and the question stays open) or declines it;
- its ``expire_time`` passes (the call's deadline, or ``input_timeout_ms`` of the call's
  options): EXPIRED;
- the call is cancelled: CANCELLED;

and each is followed by one ``input_resolved`` event. The tool's ``yield`` then gives the
answer, or raises the :class:`toolstream.tool.InputNotAnswered` subclass for the outcome.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from typing import Any, Callable, Dict, List, NamedTuple, Optional

from .schema import ArgumentError, coerce_value
from .tool import Ask, InputCancelled, InputDeclined, InputExpired

__all__ = ["InputRequestedReport", "InputResolvedReport", "Questions", "RespondError"]


class InputRequestedReport(NamedTuple):
    """A question the call asks, for its stream."""

    request_id: str
    prompt: str
    schema: Optional[Dict[str, Any]]
    #: Seconds since the epoch; ``None``: no deadline or timeout applies.
    expire_time: Optional[float]


class InputResolvedReport(NamedTuple):
    """How a question was resolved, for its stream: ``outcome`` is ``answered``, ``declined``,
    ``expired`` or ``cancelled``; ``value`` the answer (as JSON) when answered."""

    request_id: str
    outcome: str
    value: Any


class RespondError(Exception):
    """An answer the call cannot take; ``code`` is the gRPC status code's name to refuse it
    with (``NOT_FOUND``, ``FAILED_PRECONDITION``, ``INVALID_ARGUMENT``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class _Question:
    def __init__(self, ask: Ask, request: InputRequestedReport) -> None:
        self.ask = ask
        self.request = request
        #: The converted answer, or the InputNotAnswered to raise at the ``yield``.
        self.outcome: "concurrent.futures.Future[Any]" = concurrent.futures.Future()


class Questions:
    """The questions of one call. ``report`` puts each event on the call's stream (thread-safe);
    ``loop`` runs the expiry timers. ``deadline`` (seconds since the epoch) and
    ``input_timeout`` (seconds) bound how long a question stays open."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        report: Callable[[Any], None],
        deadline: Optional[float],
        input_timeout: Optional[float],
    ) -> None:
        self._loop = loop
        self._report = report
        self._deadline = deadline
        self._input_timeout = input_timeout
        self._lock = threading.Lock()
        self._asked = 0
        self._open: Dict[str, _Question] = {}
        self._closed = False

    def ask(self, ask: Ask) -> "concurrent.futures.Future[Any]":
        """Asks ``ask``; the future completes with the answer or the InputNotAnswered to raise.
        Callable from any thread."""
        now = time.time()
        limits = [self._deadline] if self._deadline is not None else []
        if self._input_timeout is not None:
            limits.append(now + self._input_timeout)
        expire_time = min(limits) if limits else None
        with self._lock:
            if self._closed:
                cancelled: "concurrent.futures.Future[Any]" = concurrent.futures.Future()
                cancelled.set_exception(InputCancelled(ask.prompt))
                return cancelled
            self._asked += 1
            request_id = f"input-{self._asked}"
            request = InputRequestedReport(request_id, ask.prompt, ask.schema, expire_time)
            question = _Question(ask, request)
            self._open[request_id] = question
            self._report(request)
        if expire_time is not None:
            delay = max(expire_time - now, 0.0)

            def expire() -> None:
                self._resolve(request_id, "expired", None)

            try:
                self._loop.call_soon_threadsafe(self._loop.call_later, delay, expire)
            except RuntimeError:
                pass  # the loop is closed: the worker is gone, and so is the call
        return question.outcome

    def respond(self, request_id: str, value: Any, decline: bool) -> None:
        """Answers (or declines) the open question ``request_id``; raises :class:`RespondError`
        when there is none or the value does not fit its type (the question then stays open)."""
        with self._lock:
            question = self._open.get(request_id)
            if question is None:
                if self._made(request_id):
                    raise RespondError(
                        "FAILED_PRECONDITION",
                        f"input request {request_id!r} was already resolved; only the first "
                        "answer counts",
                    )
                raise RespondError("NOT_FOUND", f"the run has no input request {request_id!r}")
        if decline:
            self._resolve(request_id, "declined", None)
            return
        answer = value
        if question.ask.answer_type is not None:
            try:
                answer = coerce_value(value, question.ask.answer_type, "answer")
            except ArgumentError as error:
                raise RespondError(
                    "INVALID_ARGUMENT",
                    f"the answer to input request {request_id!r} does not fit its type: {error}",
                ) from None
        if not self._resolve(request_id, "answered", value, answer):
            raise RespondError(
                "FAILED_PRECONDITION",
                f"input request {request_id!r} was already resolved; only the first answer counts",
            )

    def open_requests(self) -> List[InputRequestedReport]:
        """The questions open now, oldest first."""
        with self._lock:
            return [question.request for question in self._open.values()]

    def close(self) -> None:
        """The call is ending: every open question is CANCELLED, and no more can be asked."""
        with self._lock:
            self._closed = True
            open_ids = list(self._open)
        for request_id in open_ids:
            self._resolve(request_id, "cancelled", None)

    def _made(self, request_id: str) -> bool:
        number = request_id[len("input-") :] if request_id.startswith("input-") else ""
        return number.isdigit() and 1 <= int(number) <= self._asked

    def _resolve(self, request_id: str, outcome: str, value: Any, answer: Any = None) -> bool:
        """Resolves ``request_id`` with ``outcome`` unless something resolved it first; returns
        whether this did."""
        with self._lock:
            question = self._open.pop(request_id, None)
            if question is None:
                return False
            self._report(InputResolvedReport(request_id, outcome, value))
        prompt = question.ask.prompt
        if outcome == "answered":
            question.outcome.set_result(answer)
        elif outcome == "declined":
            question.outcome.set_exception(InputDeclined(prompt))
        elif outcome == "expired":
            question.outcome.set_exception(InputExpired(prompt))
        else:
            question.outcome.set_exception(InputCancelled(prompt))
        return True
