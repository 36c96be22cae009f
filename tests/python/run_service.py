"""RunService through a Python client generated from proto/ by grpcio-tools, against a running
toolstream server.

Usage: run_service.py HOST:PORT. Checks that a run started with on_disconnect CONTINUE outlives its
caller and one with the default does not; that WatchRun resumes a run from a cursor without losing
or repeating events, starts from the latest state, and refuses an unknown id; that ListRuns filters
and pages; that CancelRun ends every stream of a run with CANCELLED and is idempotent; and that
health reports the service. Prints one line per check and exits non-zero on the first failure.
"""

import sys
import threading
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from google.protobuf import json_format

from toolstream_stubs import pb, pb_grpc

# A bound on waiting for something that should happen promptly; only a failing check waits it out.
LIMIT = 30


def check(condition, what):
    if not condition:
        raise SystemExit(f"FAILED: {what}")
    print(f"ok: {what}")


def wait_for(what, probe):
    """Polls `probe` every 10 ms until it returns something other than None, and returns it."""
    deadline = time.monotonic() + LIMIT
    while True:
        answer = probe()
        if answer is not None:
            return answer
        if time.monotonic() > deadline:
            raise SystemExit(f"FAILED: timed out waiting for {what}")
        time.sleep(0.01)


def state_name(state):
    return pb.RunState.Name(state)


def start_ticks(tools, count, interval_ms, on_disconnect=pb.ON_DISCONNECT_UNSPECIFIED):
    """Starts `ticks`; returns the streaming call and its run id (from x-run-id)."""
    request = pb.RunToolRequest(tool="ticks")
    request.arguments.update({"count": count, "interval_ms": interval_ms})
    request.options.on_disconnect = on_disconnect
    call = tools.RunTool(request, timeout=LIMIT * 4)
    run_id = dict(call.initial_metadata()).get("x-run-id")
    if not run_id:
        raise SystemExit("FAILED: RunTool sent no x-run-id")
    return call, run_id


def read(call, n):
    return [next(call) for _ in range(n)]


def end_state(runs, run_id):
    """GetRun until the run has ended; returns the Run."""

    def ended():
        run = runs.GetRun(pb.GetRunRequest(run_id=run_id), timeout=10)
        return None if run.state == pb.RUN_STATE_RUNNING else run

    return wait_for(f"run {run_id} to end", ended)


def watch(runs, run_id, **fields):
    """Reads a whole WatchRun: (events, the closing RpcError or None)."""
    events = []
    try:
        for event in runs.WatchRun(pb.WatchRunRequest(run_id=run_id, **fields), timeout=LIMIT):
            events.append(event)
        return events, None
    except grpc.RpcError as error:
        return events, error


def check_history(first, resumed, what):
    """The caller's events and a watcher's from its cursor make one history: strictly
    increasing sequences, one `started` first, one `result` last."""
    union = first + resumed
    sequences = [e.sequence for e in union]
    kinds = [e.WhichOneof("event") for e in union]
    check(
        all(a < b for a, b in zip(sequences, sequences[1:])),
        f"{what}: {len(sequences)} sequences ({sequences[0]}..{sequences[-1]}) strictly "
        "increasing, no duplicates",
    )
    check(kinds.count("started") == 1 and kinds[0] == "started", f"{what}: one started, first")
    check(kinds.count("result") == 1 and kinds[-1] == "result", f"{what}: one result, last")
    return union


def expect_code(code, what, call):
    try:
        call()
    except grpc.RpcError as error:
        check(error.code() == code, f"{what}: {error.code()} ({error.details()})")
        return error
    raise SystemExit(f"FAILED: {what} should fail with {code}")


def main(addr):
    channel = grpc.insecure_channel(addr)
    tools = pb_grpc.ToolServiceStub(channel)
    runs = pb_grpc.RunServiceStub(channel)

    # A run started to continue outlives its caller.
    call, continued = start_ticks(tools, 40, 10, pb.ON_DISCONNECT_CONTINUE)
    first = read(call, 3)
    check(
        first[0].started.options.on_disconnect == pb.ON_DISCONNECT_CONTINUE,
        "the started event shows on_disconnect CONTINUE",
    )
    call.cancel()
    run = end_state(runs, continued)
    check(
        run.state == pb.RUN_STATE_SUCCEEDED,
        f"CONTINUE: the caller left and the run still succeeded ({state_name(run.state)})",
    )
    check(json_format.MessageToDict(run.result) == {"count": 40.0}, "GetRun has the result")
    check(run.last_sequence == 42 and run.progress[0].progress == 1.0, "and the last progress")
    check(run.HasField("end_time") and run.tool == "ticks" and not run.agent, "end_time, tool")

    # Resuming from the cursor completes the history, without a hole or a repeat.
    resumed, error = watch(runs, continued, after_sequence=first[-1].sequence)
    check(error is None, "WatchRun of a finished run ends with its result")
    check_history(first, resumed, "replay after a cursor")

    # The same while the run is still going.
    call, live = start_ticks(tools, 100, 10, pb.ON_DISCONNECT_CONTINUE)
    first = read(call, 5)
    call.cancel()
    resumed, error = watch(runs, live, after_sequence=first[-1].sequence)
    check(error is None, "WatchRun of a live run follows it to its result")
    check_history(first, resumed, "live resume after a cursor")

    # From the latest state: started, the latest progress, then the end.
    latest, error = watch(runs, continued, from_latest=True)
    kinds = [e.WhichOneof("event") for e in latest]
    check(error is None and kinds == ["started", "progress", "result"], f"from_latest: {kinds}")
    check(latest[1].progress.status == "tick 40/40", "from_latest shows the latest progress")

    # A run started with the default ends when its caller leaves.
    call, left = start_ticks(tools, 100000, 10)
    read(call, 1)
    call.cancel()
    run = end_state(runs, left)
    check(
        run.state == pb.RUN_STATE_CANCELLED,
        f"default on_disconnect: the caller left and the run was cancelled "
        f"({state_name(run.state)})",
    )
    check(
        run.error_code == grpc.StatusCode.CANCELLED.value[0] and run.error_message != "",
        f"its error: {run.error_code} {run.error_message!r}",
    )

    # Unknown ids.
    for name, rpc in [
        ("WatchRun", lambda: list(runs.WatchRun(pb.WatchRunRequest(run_id="no-such-run"), timeout=10))),
        ("GetRun", lambda: runs.GetRun(pb.GetRunRequest(run_id="no-such-run"), timeout=10)),
        ("CancelRun", lambda: runs.CancelRun(pb.CancelRunRequest(run_id="no-such-run"), timeout=10)),
    ]:
        error = expect_code(grpc.StatusCode.NOT_FOUND, f"{name} of an unknown id", rpc)
        check("no-such-run" in error.details(), f"{name}: the message names the id")

    # ListRuns: by tool, by state, page by page.
    request = pb.RunToolRequest(tool="checksum")
    request.arguments.update({"paths": ["Cargo.toml"]})
    checksum_events = list(tools.RunTool(request, timeout=LIMIT))
    checksum = checksum_events[0].run_id
    listed = runs.ListRuns(pb.ListRunsRequest(tool="checksum"), timeout=10)
    check(
        [r.run_id for r in listed.runs] == [checksum] and listed.next_page_token == "",
        "ListRuns(tool=checksum) lists only the checksum run",
    )
    ticks = runs.ListRuns(pb.ListRunsRequest(tool="ticks"), timeout=10)
    ticks_ids = [r.run_id for r in ticks.runs]
    check(ticks_ids == [left, live, continued], f"ListRuns(tool=ticks), newest first: {ticks_ids}")
    times = [r.create_time.ToNanoseconds() for r in ticks.runs]
    check(times == sorted(times, reverse=True), "create_time decreases down the list")
    cancelled = runs.ListRuns(pb.ListRunsRequest(state=pb.RUN_STATE_CANCELLED), timeout=10)
    check([r.run_id for r in cancelled.runs] == [left], "ListRuns(state=CANCELLED)")
    paged, token, pages = [], "", 0
    while True:
        page = runs.ListRuns(pb.ListRunsRequest(page_size=1, page_token=token), timeout=10)
        check(len(page.runs) == 1, f"page {pages + 1} holds one run")
        paged.extend(r.run_id for r in page.runs)
        pages += 1
        token = page.next_page_token
        if not token:
            break
    check(
        paged == [checksum, left, live, continued],
        f"page_size=1 and next_page_token walk every run once, newest first ({pages} pages)",
    )
    expect_code(
        grpc.StatusCode.INVALID_ARGUMENT,
        "ListRuns with a page_token the server never issued",
        lambda: runs.ListRuns(pb.ListRunsRequest(page_token="bogus"), timeout=10),
    )

    # CancelRun ends the caller's stream and every watcher's with CANCELLED.
    caller, target = start_ticks(tools, 100000, 10)
    outcomes = {}
    ready = threading.Barrier(5, timeout=LIMIT)

    def follow(name, stream):
        try:
            for index, _ in enumerate(stream):
                if index == 0:
                    ready.wait()
            outcomes[name] = ("ended without an error", "")
        except grpc.RpcError as error:
            outcomes[name] = (error.code(), error.details())
        except threading.BrokenBarrierError:
            outcomes[name] = ("never got its first event", "")

    streams = {"caller": caller}
    for n in range(3):
        streams[f"watcher {n + 1}"] = runs.WatchRun(
            pb.WatchRunRequest(run_id=target), timeout=LIMIT * 4
        )
    threads = [
        threading.Thread(target=follow, args=(name, stream), daemon=True)
        for name, stream in streams.items()
    ]
    for thread in threads:
        thread.start()
    ready.wait()  # every stream has seen an event: all are open before the cancel
    run = runs.CancelRun(pb.CancelRunRequest(run_id=target), timeout=10)
    check(run.state == pb.RUN_STATE_CANCELLED, "CancelRun returns the run CANCELLED")
    check(run.HasField("end_time"), "with its end_time")
    for thread in threads:
        thread.join(LIMIT)
    for name in streams:
        code, details = outcomes.get(name, ("still open", ""))
        check(code == grpc.StatusCode.CANCELLED, f"{name} ended with {code}")
        check(details == run.error_message, f"{name}: the run's message ({details!r})")

    again = runs.CancelRun(pb.CancelRunRequest(run_id=target), timeout=10)
    check(
        again.state == pb.RUN_STATE_CANCELLED and again.end_time == run.end_time,
        "CancelRun again: the run unchanged",
    )
    done = runs.CancelRun(pb.CancelRunRequest(run_id=continued), timeout=10)
    check(
        done.state == pb.RUN_STATE_SUCCEEDED
        and json_format.MessageToDict(done.result) == {"count": 40.0},
        "CancelRun of a run that succeeded: still SUCCEEDED, with its result",
    )

    health = health_pb2_grpc.HealthStub(channel)
    status = health.Check(
        health_pb2.HealthCheckRequest(service="toolstream.v1.RunService"), timeout=10
    ).status
    check(status == health_pb2.HealthCheckResponse.SERVING, "health 'toolstream.v1.RunService' SERVING")
    print("python run service: all checks passed")


if __name__ == "__main__":
    main(sys.argv[1])
