"""A Python client generated from proto/ by grpcio-tools, against a running toolstream server.

Usage: client_basic.py HOST:PORT. Checks ListTools, a RunTool happy path, two error codes and
grpc.health.v1; prints one line per check and exits non-zero on the first failure.
"""

import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from google.protobuf import json_format

from toolstream_stubs import pb, pb_grpc


def check(condition, what):
    if not condition:
        raise SystemExit(f"FAILED: {what}")
    print(f"ok: {what}")


def main(addr):
    channel = grpc.insecure_channel(addr)
    tools = pb_grpc.ToolServiceStub(channel)

    listed = tools.ListTools(pb.ListToolsRequest(), timeout=10)
    names = [t.name for t in listed.tools]
    check("ticks" in names and "checksum" in names, f"ListTools lists the built-ins: {names}")

    request = pb.RunToolRequest(tool="ticks")
    request.arguments.update({"count": 5, "interval_ms": 1})
    call = tools.RunTool(request, timeout=30)
    events = list(call)
    run_id = dict(call.initial_metadata()).get("x-run-id")
    kinds = [e.WhichOneof("event") for e in events]
    check(kinds == ["started"] + ["progress"] * 5 + ["result"], f"event order: {kinds}")
    check([e.sequence for e in events] == list(range(1, 8)), "sequence 1..7")
    check(all(e.run_id == run_id for e in events), "run id in metadata and events")
    check(events[-2].progress.progress == 1.0, "last progress is 1.0")
    check(events[-2].progress.status == "tick 5/5", "status line")
    result = json_format.MessageToDict(events[-1].result.value)
    check(result == {"count": 5.0}, f"result: {result}")

    for tool, arguments, code in [
        ("no_such_tool", {}, grpc.StatusCode.NOT_FOUND),
        ("ticks", {"count": "lots"}, grpc.StatusCode.INVALID_ARGUMENT),
    ]:
        request = pb.RunToolRequest(tool=tool)
        request.arguments.update(arguments)
        try:
            list(tools.RunTool(request, timeout=10))
            check(False, f"{tool} should fail with {code}")
        except grpc.RpcError as error:
            check(error.code() == code, f"{tool}: {error.code()} ({error.details()})")
            check(error.details() != "", "the error has a message")

    health = health_pb2_grpc.HealthStub(channel)
    for service in ["", "toolstream.v1.ToolService"]:
        status = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status
        check(status == health_pb2.HealthCheckResponse.SERVING, f"health {service!r} SERVING")
    print("python client: all checks passed")


if __name__ == "__main__":
    main(sys.argv[1])
