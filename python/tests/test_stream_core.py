"""The stream core alone (toolstream._stream_core), with no server and no clock: which events are
delivered across a resume, when a broken stream is resumed and from where, when the client gives
up, and the bounds of the pauses between tries. Times are plain numbers given to the core."""

from __future__ import annotations

from typing import Iterator, List, Optional

import grpc
import pytest

from toolstream import Cancelled, RunNotFound, ToolCrashed, Unavailable
from toolstream._stream_core import (
    END,
    AskRun,
    Backoff,
    Rewatch,
    StreamCore,
    resume_window,
)
from toolstream.errors import PermissionDenied
from toolstream.v1 import toolstream_pb2 as pb

RUN = "run-1"


class Failure(grpc.RpcError):
    """A failed call as grpc reports it: a status code and its details."""

    def __init__(self, code: grpc.StatusCode, details: str = "") -> None:
        super().__init__(details)
        self._code = code
        self._details = details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


def progress(sequence: int) -> pb.RunEvent:
    message = pb.RunEvent(run_id=RUN, sequence=sequence)
    message.progress.progress = sequence / 10
    return message


def result(sequence: int, value: str) -> pb.RunEvent:
    message = pb.RunEvent(run_id=RUN, sequence=sequence)
    message.result.value.string_value = value
    return message


def started() -> pb.RunEvent:
    message = pb.RunEvent(run_id=RUN, sequence=1)
    message.started.tool = "ticks"
    return message


def core(
    resume: object = True, deadline: Optional[float] = None, watching: bool = False
) -> StreamCore:
    # draw: the middle of the jitter's range, so the pauses are known numbers.
    return StreamCore(
        RUN,
        pb.RunOptions(),
        resume=resume,  # type: ignore[arg-type]
        deadline=deadline,
        watching=watching,
        draw=lambda: 0.5,
    )


def running() -> pb.Run:
    return pb.Run(run_id=RUN, state=pb.RUN_STATE_RUNNING)


# Dedupe --------------------------------------------------------------------------------------


def test_events_at_or_below_the_last_delivered_are_dropped_after_a_resume() -> None:
    state = core()
    delivered = [state.receive(progress(n)) for n in (1, 2, 3)]
    assert [e.sequence for e in delivered if e] == [1, 2, 3]
    step = state.stream_failed(Failure(grpc.StatusCode.UNAVAILABLE, "connection reset"), 10.0)
    assert isinstance(step, AskRun)
    step = state.run_answered(running(), 10.1)
    assert isinstance(step, Rewatch)
    assert step.request.after_sequence == 3 and step.request.run_id == RUN
    # The server repeats from the sequence asked for; the core delivers each event once.
    again = [state.receive(progress(n)) for n in (3, 4, 5)]
    assert [e.sequence if e else None for e in again] == [None, 4, 5]
    assert state.last_sequence == 5


def test_a_watch_starts_after_the_sequence_it_asked_for() -> None:
    request = pb.WatchRunRequest(run_id=RUN, after_sequence=7)
    state = StreamCore.watch(request, resume=False, deadline=None)
    assert state.watching and state.receive(progress(7)) is None
    event = state.receive(progress(8))
    assert event is not None and event.sequence == 8


def test_the_first_event_is_delivered_first_and_a_result_ends_the_stream() -> None:
    state = StreamCore.started(started(), pb.RunOptions(), resume=False, deadline=None)
    first = state.take_pending()
    assert first is not None and first.type == "started" and state.take_pending() is None
    assert state.receive(started()) is None  # sequence 1 again
    assert not state.done
    end = state.receive(result(2, "done"))
    assert end is not None and end.type == "result"
    assert state.done and state.result == "done" and state.error is None


# The resume decision -------------------------------------------------------------------------


def test_without_resume_a_dropped_stream_ends_unavailable() -> None:
    state = core(resume=False)
    assert state.stream_ended(0.0) is END
    assert isinstance(state.error, Unavailable) and "connection was lost" in str(state.error)


def test_a_stream_that_ended_without_a_result_is_resumed() -> None:
    step = core().stream_ended(0.0)
    assert isinstance(step, AskRun)
    assert step.pause == 0.0 and step.request.run_id == RUN


@pytest.mark.parametrize(
    "code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN]
)
def test_a_connection_error_asks_for_the_run(code: grpc.StatusCode) -> None:
    assert isinstance(core().stream_failed(Failure(code, "reset"), 0.0), AskRun)


def test_an_error_no_connection_gives_ends_the_stream_with_it() -> None:
    state = core()
    assert state.stream_failed(Failure(grpc.StatusCode.PERMISSION_DENIED, "no"), 0.0) is END
    assert isinstance(state.error, PermissionDenied)


def test_a_terminal_event_seen_means_no_resume() -> None:
    state = core()
    state.receive(result(4, "answer"))
    assert state.stream_failed(Failure(grpc.StatusCode.UNAVAILABLE, "reset"), 0.0) is END
    assert state.stream_ended(0.0) is END
    assert state.result == "answer" and state.error is None


def test_a_closed_stream_is_not_resumed() -> None:
    state = core()
    assert state.close()
    assert state.stream_ended(0.0) is END
    assert isinstance(state.error, Cancelled)


def test_the_run_gone_ends_the_stream_with_run_not_found() -> None:
    state = core()
    state.stream_ended(0.0)
    assert state.ask_failed(Failure(grpc.StatusCode.NOT_FOUND, "unknown run"), 0.1) is END
    assert isinstance(state.error, RunNotFound)
    assert "the run is gone: unknown run" in str(state.error)


def test_the_runs_own_error_is_not_resumed() -> None:
    state = core()
    state.stream_failed(Failure(grpc.StatusCode.INTERNAL, "tool crashed"), 0.0)
    run = pb.Run(
        run_id=RUN,
        state=pb.RUN_STATE_FAILED,
        error_code=grpc.StatusCode.INTERNAL.value[0],
        error_message="tool crashed",
    )
    assert state.run_answered(run, 0.1) is END
    assert isinstance(state.error, ToolCrashed) and str(state.error) == "tool crashed"


def test_a_run_that_failed_otherwise_is_watched_again() -> None:
    # The run ended with another error than the stream's: its stream tells which.
    state = core()
    state.stream_failed(Failure(grpc.StatusCode.UNAVAILABLE, "reset"), 0.0)
    run = pb.Run(run_id=RUN, state=pb.RUN_STATE_FAILED, error_code=10, error_message="tool failed")
    assert isinstance(state.run_answered(run, 0.1), Rewatch)


def test_a_server_without_run_service_ends_the_stream_with_its_error() -> None:
    state = core()
    state.stream_ended(0.0)
    assert state.ask_failed(Failure(grpc.StatusCode.UNIMPLEMENTED, "no RunService"), 0.1) is END
    assert isinstance(state.error, Unavailable)


def test_an_unreachable_server_is_asked_again_after_growing_pauses_until_the_window_ends() -> None:
    state = core(resume=2.0)
    step = state.stream_ended(100.0)
    now = 100.0
    pauses: List[float] = []
    while isinstance(step, AskRun):
        assert 0 < step.timeout <= 5.0
        now += step.pause + 0.01  # the pause, then a GetRun that failed at once
        pauses.append(step.pause)
        step = state.ask_failed(Failure(grpc.StatusCode.DEADLINE_EXCEEDED), now)
    assert step is END and isinstance(state.error, Unavailable)
    assert now <= 102.0 + 1e-9  # never past the resume window
    assert pauses[:3] == [0.0, pytest.approx(0.0375), pytest.approx(0.075)]


def test_resuming_never_runs_past_the_runs_deadline() -> None:
    state = core(resume=30.0, deadline=5.0)
    step = state.stream_ended(1.0)
    assert isinstance(step, AskRun) and step.timeout == pytest.approx(4.0)
    rewatch = state.run_answered(running(), 2.0)
    assert isinstance(rewatch, Rewatch) and rewatch.timeout == pytest.approx(3.0)
    # Past the deadline: nothing to resume.
    assert state.stream_ended(6.0) is END
    assert isinstance(state.error, Unavailable)


def test_a_long_window_asks_at_most_five_seconds_at_a_time() -> None:
    step = core(resume=60.0).stream_ended(0.0)
    assert isinstance(step, AskRun) and step.timeout == 5.0


def test_resume_window() -> None:
    assert resume_window(True) == 30.0
    assert resume_window(False) is None and resume_window(None) is None
    assert resume_window(2) == 2.0
    with pytest.raises(ValueError):
        resume_window(0)


# Back-off ------------------------------------------------------------------------------------


def draws() -> Iterator[float]:
    """Numbers spread over [0, 1), as random.random gives, but the same each run."""
    for n in range(1000):
        yield (n * 0.6180339887) % 1.0


@pytest.mark.parametrize("draw", [0.0, 0.5, 0.999999])
def test_backoff_doubles_within_its_bounds(draw: float) -> None:
    backoff = Backoff(first=0.05, longest=1.0)
    delays = [backoff.delay(attempt, lambda: draw) for attempt in range(12)]
    steps = [min(0.05 * 2**attempt, 1.0) for attempt in range(12)]
    for delay, step in zip(delays, steps):
        assert step / 2 <= delay <= step
    assert delays == sorted(delays)


def test_backoff_jitter_spreads_the_pauses_and_stays_bounded() -> None:
    backoff = Backoff()
    numbers = draws()
    spread = {backoff.delay(3, numbers.__next__) for _ in range(1000)}
    assert len(spread) > 100
    assert min(spread) >= 0.2 and max(spread) <= 0.4
    assert all(0.5 <= backoff.delay(attempt, lambda: 0.7) <= 1.0 for attempt in range(5, 2000))


def test_a_pause_never_runs_past_the_window() -> None:
    state = StreamCore(RUN, pb.RunOptions(), resume=0.3, draw=lambda: 0.999)
    step = state.stream_ended(0.0)
    now = 0.0
    while isinstance(step, AskRun):
        now += step.pause
        assert now < 0.3
        step = state.ask_failed(Failure(grpc.StatusCode.UNAVAILABLE), now + 0.01)
        now += 0.01
    assert step is END
