"""RunAgent from a Python client generated from proto/ by grpcio-tools.

Usage: agent_client.py HOST:PORT. The server's model is a stand-in scripted to call `ticks` once
and then answer "Done ticking.".
"""

import sys

import grpc
from google.protobuf import json_format

from toolstream_stubs import pb, pb_grpc


def check(condition, what):
    if not condition:
        raise SystemExit(f"FAILED: {what}")
    print(f"ok: {what}")


def main(addr):
    stub = pb_grpc.ToolServiceStub(grpc.insecure_channel(addr))
    events = list(stub.RunAgent(pb.RunAgentRequest(prompt="tick twice"), timeout=30))
    kinds = [e.WhichOneof("event") for e in events]
    check(kinds[0] == "started" and kinds[-1] == "result", f"started first, result last: {kinds}")
    check(kinds[1] == "tool_call_started", "the tool call starts before anything else")
    started = events[1].tool_call_started
    check(started.tool == "ticks" and started.call_id == "call_1", "call id and tool")
    args = json_format.MessageToDict(started.arguments)
    check(args == {"count": 2.0, "interval_ms": 1.0}, f"arguments: {args}")
    done = kinds.index("tool_call_finished")
    tool_progress = [e for e in events if e.WhichOneof("event") == "progress" and e.progress.call_id]
    check(tool_progress, "the tool's progress is streamed")
    check(all(events.index(e) < done for e in tool_progress), "progress before the call ends")
    result = json_format.MessageToDict(events[done].tool_call_finished.result)
    check(result == {"count": 2.0}, f"the call's result: {result}")
    text = "".join(e.message.text for e in events if e.WhichOneof("event") == "message")
    check(text == "Done ticking.", f"streamed text: {text!r}")
    check(events[-1].result.value.string_value == "Done ticking.", "the answer is the result")
    sequences = [e.sequence for e in events]
    check(sequences == sorted(set(sequences)), "sequence increases")

    try:
        list(stub.RunAgent(pb.RunAgentRequest(prompt="x", tools=["nope"]), timeout=10))
        check(False, "an unknown tool must fail")
    except grpc.RpcError as error:
        check(error.code() == grpc.StatusCode.NOT_FOUND, f"unknown tool: {error.code()}")
    print("python agent client: all checks passed")


if __name__ == "__main__":
    main(sys.argv[1])
