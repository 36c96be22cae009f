"""Every JSON payload toolstream writes parses with protobuf's own JSON parser into the contract's
messages (json_format.Parse, strict: unknown fields are errors), and what protobuf's own printer
writes is accepted by the server. Also the CLI's JSON lines.

Usage: json_mapping.py http://127.0.0.1:PORT PATH_TO_TOOLSTREAM_BINARY
"""

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

from google.protobuf import json_format

from toolstream_stubs import pb

BASE = sys.argv[1]
BINARY = sys.argv[2]

SSE_NAMES = {
    "started", "progress", "result", "tool_call_started", "tool_call_finished", "message",
    "gap", "heartbeat",
}


def request(method, path, body=None, accept="application/json"):
    data = None if body is None else body.encode()
    req = urllib.request.Request(BASE + path, data=data, method=method)
    req.add_header("accept", accept)
    if data is not None:
        req.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=60) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


def sse_events(text):
    """(id, event, data) of each SSE event block; comments skipped."""
    events = []
    for block in text.split("\n\n"):
        if not block or all(line.startswith(":") for line in block.split("\n")):
            continue
        fields = {}
        for line in block.split("\n"):
            key, _, value = line.partition(": ")
            assert key not in fields, block
            fields[key] = value
        events.append((fields.get("id"), fields["event"], fields["data"]))
    return events


def check_run_event(event_id, name, data):
    event = json_format.Parse(data, pb.RunEvent())
    assert event.WhichOneof("event") == name, (name, data)
    assert name in SSE_NAMES
    if event_id is not None:
        assert str(event.sequence) == event_id, (event_id, data)
    # What protobuf prints is what the server wrote (same canonical mapping).
    assert json.loads(json_format.MessageToJson(event, indent=None)) == json.loads(data), data
    return event


# ListTools.
status, _, text = request("GET", "/v1/tools")
assert status == 200, (status, text)
tools = json_format.Parse(text, pb.ListToolsResponse())
assert any(tool.name == "ticks" for tool in tools.tools)

# A run as SSE: every event parses into a RunEvent. The body is what protobuf prints for a
# RunToolRequest (the server reads protobuf's own JSON).
run_request = pb.RunToolRequest()
run_request.arguments.update({"count": 4, "interval_ms": 1})
run_request.options.min_progress_interval_ms = 0
body = json_format.MessageToJson(run_request)
status, headers, text = request("POST", "/v1/tools/ticks/runs", body, accept="text/event-stream")
assert status == 200, (status, text)
events = [check_run_event(*e) for e in sse_events(text)]
assert [e.WhichOneof("event") for e in events] == ["started"] + ["progress"] * 4 + ["result"]
assert events[-1].result.value.struct_value["count"] == 4
run_id = events[0].run_id

# A run that fails after it started: `event: error` with {code, message}.
status, _, text = request(
    "POST", "/v1/tools/checksum/runs", json.dumps({"arguments": {"paths": ["/etc/passwd"]}}),
    accept="text/event-stream",
)
assert status == 200, (status, text)
blocks = sse_events(text)
assert blocks[-1][1] == "error", blocks
error = json.loads(blocks[-1][2])
assert error["code"] == "PERMISSION_DENIED" and set(error) == {"code", "message"}, error
for block in blocks[:-1]:
    check_run_event(*block)

# Run, ListRunsResponse, a detached start, a cancel.
status, _, text = request("GET", "/v1/runs/" + run_id)
assert status == 200, (status, text)
run = json_format.Parse(text, pb.Run())
assert run.state == pb.RUN_STATE_SUCCEEDED and run.last_sequence == 6, text

status, _, text = request("GET", "/v1/runs?pageSize=5&state=RUN_STATE_SUCCEEDED")
assert status == 200, (status, text)
page = json_format.Parse(text, pb.ListRunsResponse())
assert any(r.run_id == run_id for r in page.runs)

status, headers, text = request(
    "POST", "/v1/tools/ticks/runs", json.dumps({"arguments": {"count": 1000, "interval_ms": 50}}),
)
assert status == 202, (status, text)
detached = json_format.Parse(text, pb.Run())
assert detached.state == pb.RUN_STATE_RUNNING
status, _, text = request("POST", "/v1/runs/%s/cancel" % detached.run_id, "")
cancelled = json_format.Parse(text, pb.Run())
assert cancelled.state == pb.RUN_STATE_CANCELLED, text

# Errors before streaming: {code, message} with the status.
status, _, text = request("GET", "/v1/runs/nope")
assert status == 404 and json.loads(text)["code"] == "NOT_FOUND", (status, text)

# The CLI's JSON lines are the same mapping.
env = dict(os.environ, TOOLSTREAM_ADDR=BASE)
output = subprocess.run(
    [BINARY, "run", "ticks", "--arg", "count=3", "--arg", "interval_ms=1"],
    env=env, capture_output=True, text=True, timeout=60,
)
assert output.returncode == 0, output.stderr
lines = [line for line in output.stdout.splitlines() if line]
cli_events = [json_format.Parse(line, pb.RunEvent()) for line in lines]
assert [e.WhichOneof("event") for e in cli_events] == ["started"] + ["progress"] * 3 + ["result"]

print("json mapping: all checks passed")
