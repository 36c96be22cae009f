"""What a client knows while it follows a run's event stream, without any I/O (sans-IO, in the
manner of h11): which events to deliver, how the stream ended, whether a broken stream is resumed
and from where, and how long to wait between tries.

Nothing here reads a socket, a clock or sleeps. The sync client (:mod:`toolstream.client`) and
the asyncio one (:mod:`toolstream.aio`) each drive a :class:`StreamCore`: they read the stream
and hand each message to :meth:`StreamCore.receive`; when the stream breaks they tell the core
(:meth:`StreamCore.stream_ended`, :meth:`StreamCore.stream_failed`) and carry out the step it
answers with, the way their world does it (``time.sleep`` or ``asyncio.sleep``, a blocking call or
an awaited one), feeding the outcome back, until the step is :class:`Rewatch` (a new stream
replaces the broken one) or :data:`END` (the stream has ended: :attr:`StreamCore.result` or
:attr:`StreamCore.error` holds how). Times are the caller's ``time.monotonic()`` readings.
"""

from __future__ import annotations

import collections
import random
from dataclasses import dataclass
from typing import Any, Callable, Deque, Optional, Tuple, Union

import grpc

from . import _convert as convert
from .errors import Cancelled, RunNotFound, ToolstreamError, Unavailable, from_rpc_error
from .events import PartialOutputs, ProgressEvent
from .v1 import toolstream_pb2 as pb

#: How long ``resume=True`` keeps trying to reach the server again after a dropped connection.
DEFAULT_RESUME_SECONDS = 30.0

# Codes a dropped connection can end a stream with. Whether it was the connection or the run's
# own error is decided by asking the server for the run (GetRun) before resuming.
RESUMABLE: Tuple[grpc.StatusCode, ...] = (
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
)

# Answers to GetRun that mean the server is not reachable yet: ask again after a pause.
_NOT_YET = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)

# The longest one GetRun may wait for the server while resuming, so that a server that comes
# back is noticed soon even within a long resume window.
_LONGEST_ASK = 5.0

# A stream that ends with neither a result nor an error lost its connection (the server always
# ends a run's stream with one of them).
_ENDED_DETAILS = "the stream ended without a result"
_ENDED_MESSAGE = "the stream ended without a result or an error: the connection was lost"


def resume_window(resume: Union[bool, float, None]) -> Optional[float]:
    """``resume=`` as seconds to keep trying, or ``None`` for no resuming."""
    if resume is True:
        return DEFAULT_RESUME_SECONDS
    if resume is False or resume is None:
        return None
    if resume <= 0:
        raise ValueError("resume must be True, False or a positive number of seconds")
    return float(resume)


def deadline_after(timeout: Optional[float], now: float) -> Optional[float]:
    """The clock reading ``timeout`` seconds after ``now`` (``None``: no deadline)."""
    return None if timeout is None else now + timeout


def not_started() -> Unavailable:
    """The error when a run's stream ends before its first event (``started``)."""
    return Unavailable("the stream ended before the run started")


@dataclass(frozen=True)
class Backoff:
    """The pauses between tries to reach the server: doubling from ``first`` up to ``longest``
    seconds, each drawn at random from the upper half of its step (jitter), so that clients
    that lost the same server do not all come back at the same instant."""

    first: float = 0.05
    longest: float = 1.0

    def delay(self, attempt: int, draw: Callable[[], float]) -> float:
        """The pause before try ``attempt + 1`` (``attempt`` 0 is the first pause); ``draw``
        gives a number in [0, 1), as :func:`random.random` does."""
        step = min(self.first * 2.0 ** min(attempt, 32), self.longest)
        return step * (0.5 + 0.5 * draw())


@dataclass(frozen=True)
class AskRun:
    """Pause ``pause`` seconds, then ask the server for the run (GetRun with ``request``,
    waiting for the server to be reachable, for at most ``timeout`` seconds); tell the core the
    answer (:meth:`StreamCore.run_answered`) or the error (:meth:`StreamCore.ask_failed`)."""

    request: pb.GetRunRequest
    pause: float
    timeout: float


@dataclass(frozen=True)
class Rewatch:
    """Replace the broken stream: WatchRun with ``request`` (from the last event delivered), its
    deadline ``timeout`` seconds away (``None``: none)."""

    request: pb.WatchRunRequest
    timeout: Optional[float]


class _Ended:
    """The stream has ended; :attr:`StreamCore.error` or :attr:`StreamCore.result` says how."""

    def __repr__(self) -> str:
        return "END"


END = _Ended()

#: What the caller does next after the stream broke.
Step = Union[AskRun, Rewatch, _Ended]


@dataclass
class _Attempt:
    """One try at resuming: what broke the stream, and until when to try."""

    code: grpc.StatusCode
    details: str
    error: ToolstreamError
    until: float
    pauses: int = 0


class StreamCore:
    """The state of following one run's stream: the last sequence delivered (events at or below it
    are dropped, as a resumed stream repeats them), the outcome once the stream ended, and a
    resume in progress. Not thread-safe: a caller sharing it between threads holds a lock."""

    def __init__(
        self,
        run_id: str,
        options: pb.RunOptions,
        *,
        after: int = 0,
        resume: Union[bool, float] = False,
        deadline: Optional[float] = None,
        watching: bool = False,
        backoff: Backoff = Backoff(),
        draw: Callable[[], float] = random.random,
    ) -> None:
        self.run_id = run_id
        self.options = options
        #: The sequence of the last event delivered (or the ``after`` the watch started from).
        self.last_sequence = after
        self.window = resume_window(resume)
        self.deadline = deadline
        self.watching = watching
        self.backoff = backoff
        self.draw = draw
        self.seen_any = False
        self.done = False
        self.result: Any = None
        self.error: Optional[ToolstreamError] = None
        self._pending: Deque[ProgressEvent] = collections.deque()
        #: The outputs assembled from the partial results delivered so far.
        self.partials = PartialOutputs()
        self._attempt: Optional[_Attempt] = None

    @classmethod
    def started(
        cls,
        first: pb.RunEvent,
        options: pb.RunOptions,
        *,
        resume: Union[bool, float],
        deadline: Optional[float],
        draw: Callable[[], float] = random.random,
    ) -> "StreamCore":
        """The core of a run this client started, from the run's first event (``started``, or
        ``result`` for a run that ended at once), which it delivers first."""
        core = cls(
            first.run_id, options, after=first.sequence, resume=resume, deadline=deadline, draw=draw
        )
        core.seen_any = True
        event = convert.event(first)
        core.partials.see(event)
        core._pending.append(event)
        if event.type == "result":
            core.finish(result=event.result)
        return core

    @classmethod
    def watch(
        cls, request: pb.WatchRunRequest, *, resume: Union[bool, float], deadline: Optional[float]
    ) -> "StreamCore":
        """The core of a watch (WatchRun with ``request``)."""
        return cls(
            request.run_id,
            request.options,
            after=request.after_sequence,
            resume=resume,
            deadline=deadline,
            watching=True,
        )

    # Delivering ---------------------------------------------------------------------------

    def take_pending(self) -> Optional[ProgressEvent]:
        """An event known before reading the stream (the run's first), once."""
        return self._pending.popleft() if self._pending else None

    def receive(self, message: pb.RunEvent) -> Optional[ProgressEvent]:
        """The event to deliver for a message read from the stream, or ``None`` for one delivered
        already (a resumed stream starts again at the last sequence). A ``result`` ends the
        stream."""
        if message.sequence and message.sequence <= self.last_sequence:
            return None
        self.seen_any = True
        self.last_sequence = max(self.last_sequence, message.sequence)
        event = convert.event(message)
        self.partials.see(event)
        if event.type == "result":
            self.finish(result=event.result)
        return event

    def finish(self, *, result: Any = None, error: Optional[ToolstreamError] = None) -> bool:
        """Ends the stream with ``result`` or ``error``; the first end stays. Whether this ended
        it."""
        if self.done:
            return False
        self.done = True
        self.result = result
        self.error = error
        self._attempt = None
        return True

    def close(self) -> bool:
        """Ends the stream because the reader left before the run ended."""
        return self.finish(
            error=Cancelled("the stream was closed before the run ended", run_id=self.run_id)
        )

    # Resuming -----------------------------------------------------------------------------

    def stream_ended(self, now: float) -> Step:
        """The stream ended with neither a result nor an error: the connection was lost."""
        lost = Unavailable(_ENDED_MESSAGE, run_id=self.run_id)
        return self._broke(grpc.StatusCode.UNAVAILABLE, _ENDED_DETAILS, lost, now)

    def stream_failed(self, error: grpc.RpcError, now: float) -> Step:
        """The stream ended with ``error``: the run's own, or a lost connection's."""
        code = error.code()
        details = error.details() or ""
        # NOT_FOUND from a watch that delivered nothing is the run's (the call named a run).
        about_runs = self.watching and not self.seen_any
        failure = from_rpc_error(error, run_id=self.run_id, about_runs=about_runs)
        return self._broke(code, details, failure, now)

    def _broke(
        self, code: grpc.StatusCode, details: str, error: ToolstreamError, now: float
    ) -> Step:
        if self.done:
            return END
        if self.window is None or code not in RESUMABLE:
            self.finish(error=error)
            return END
        until = now + self.window
        if self.deadline is not None:
            until = min(until, self.deadline)
        self._attempt = _Attempt(code, details, error, until)
        return self._ask(0.0, now)

    def _ask(self, pause: float, now: float) -> Step:
        attempt = self._attempt
        if attempt is None:
            return END
        left = attempt.until - now - pause
        if left <= 0:
            return self._give_up()
        request = pb.GetRunRequest(run_id=self.run_id)
        return AskRun(request, pause=pause, timeout=min(left, _LONGEST_ASK))

    def _give_up(self) -> Step:
        if self._attempt is not None:
            self.finish(error=self._attempt.error)
        return END

    def ask_failed(self, error: grpc.RpcError, now: float) -> Step:
        """GetRun failed while resuming: the run is gone (NOT_FOUND: the stream ends with
        :class:`RunNotFound`), the server is not reachable yet (ask again after a pause), or the
        server cannot answer (no RunService, not allowed: the stream ends with its own error)."""
        attempt = self._attempt
        if attempt is None or self.done:
            return END
        code = error.code()
        if code == grpc.StatusCode.NOT_FOUND:
            self.finish(
                error=RunNotFound(
                    f"the connection was lost and the run is gone: {error.details()}",
                    run_id=self.run_id,
                )
            )
            return END
        if code not in _NOT_YET:
            return self._give_up()
        pause = min(self.backoff.delay(attempt.pauses, self.draw), max(attempt.until - now, 0.0))
        attempt.pauses += 1
        return self._ask(pause, now)

    def run_answered(self, run: pb.Run, now: float) -> Step:
        """GetRun answered while resuming: unless the run itself ended with the error the stream
        broke with, watch it again from the last event delivered."""
        attempt = self._attempt
        if attempt is None or self.done:
            return END
        ended = run.state in (pb.RUN_STATE_FAILED, pb.RUN_STATE_CANCELLED)
        same = run.error_code == attempt.code.value[0] and run.error_message == attempt.details
        if ended and same:
            return self._give_up()  # the run's own error, not the connection's
        self._attempt = None
        timeout = None if self.deadline is None else max(self.deadline - now, 0.001)
        request = pb.WatchRunRequest(
            run_id=self.run_id, after_sequence=self.last_sequence, options=self.options
        )
        return Rewatch(request, timeout)
