"""The cost of a tool call over MCP against the same call over gRPC, from a Python client.

    python3 scripts/mcp_overhead.py HOST:PORT [CALLS] [TICKS]

Against a running `toolstream serve` (a release build for figures worth keeping), makes CALLS
sequential calls of the built-in `ticks` tool (TICKS progress reports each, no pause) three ways,
each on one connection made beforehand: gRPC RunTool (grpcio, stubs generated from proto/ as the
tests do), MCP tools/call over /mcp with a progress token with plain HTTP (httpx: the server's
share) and with the official Python SDK, and MCP
through `toolstream mcp-stdio` (the bridge to gRPC; `TOOLSTREAM_BIN` names the binary, default
target/release/toolstream). Both RunTool and /mcp ask for at most one
progress event per 100 ms per call, /mcp's default, so each reads the same events. Prints one
JSON line per way: calls/s and the mean milliseconds per call, with the progress messages each
received. docs/benchmark.md has figures.
"""

import asyncio
import json
import os
import sys
import time

import grpc
import httpx
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "python"))
from toolstream_stubs import pb, pb_grpc  # noqa: E402


def report(way, calls, seconds, progress):
    print(
        json.dumps(
            {
                "way": way,
                "calls": calls,
                "calls_per_s": round(calls / seconds, 1),
                "ms_per_call": round(seconds * 1000 / calls, 3),
                "progress_received": progress,
            }
        )
    )


def grpc_calls(addr, calls, ticks):
    channel = grpc.insecure_channel(addr)
    tools = pb_grpc.ToolServiceStub(channel)
    tools.ListTools(pb.ListToolsRequest(), timeout=10)
    progress = 0
    start = time.perf_counter()
    for _ in range(calls):
        request = pb.RunToolRequest(tool="ticks")
        request.arguments.update({"count": ticks, "interval_ms": 0})
        request.options.min_progress_interval_ms = 100
        for event in tools.RunTool(request, timeout=60):
            if event.WhichOneof("event") == "progress":
                progress += 1
    report("grpc RunTool", calls, time.perf_counter() - start, progress)


def raw_http_calls(addr, calls, ticks):
    """tools/call over /mcp with plain HTTP (httpx, one session): the server's share of the cost
    without the SDK's."""
    url = f"http://{addr}/mcp"
    accept = {"accept": "application/json, text/event-stream"}
    with httpx.Client(timeout=60) as http:
        opened = http.post(
            url,
            headers=accept,
            json={
                "jsonrpc": "2.0",
                "id": 0,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-11-25",
                    "capabilities": {},
                    "clientInfo": {"name": "overhead", "version": "1"},
                },
            },
        )
        headers = dict(accept)
        headers["mcp-session-id"] = opened.headers["mcp-session-id"]
        headers["mcp-protocol-version"] = "2025-11-25"
        http.post(url, headers=headers, json={"jsonrpc": "2.0", "method": "notifications/initialized"})
        progress = 0
        start = time.perf_counter()
        for call in range(1, calls + 1):
            body = {
                "jsonrpc": "2.0",
                "id": call,
                "method": "tools/call",
                "params": {
                    "name": "ticks",
                    "arguments": {"count": ticks, "interval_ms": 0},
                    "_meta": {"progressToken": call},
                },
            }
            with http.stream("POST", url, headers=headers, json=body) as response:
                for line in response.iter_lines():
                    if not line.startswith("data:") or len(line) < 7:
                        continue
                    message = json.loads(line[5:])
                    if message.get("method") == "notifications/progress":
                        progress += 1
                    elif message.get("id") == call:
                        break
        report("raw HTTP /mcp", calls, time.perf_counter() - start, progress)


async def mcp_calls(way, session, calls, ticks):
    progress = 0

    async def on_progress(_value, _total, _message):
        nonlocal progress
        progress += 1

    start = time.perf_counter()
    for _ in range(calls):
        result = await session.call_tool(
            "ticks", {"count": ticks, "interval_ms": 0}, progress_callback=on_progress
        )
        if result.isError:
            raise SystemExit(f"ticks failed: {result.content}")
    report(way, calls, time.perf_counter() - start, progress)


async def mcp_http(addr, calls, ticks):
    async with httpx.AsyncClient(timeout=60) as http:
        async with streamable_http_client(f"http://{addr}/mcp", http_client=http) as (r, w, _):
            async with ClientSession(r, w) as session:
                await session.initialize()
                await mcp_calls("mcp /mcp", session, calls, ticks)


async def mcp_stdio(addr, calls, ticks):
    binary = os.environ.get("TOOLSTREAM_BIN") or os.path.join(
        os.path.dirname(__file__), "..", "target", "release", "toolstream"
    )
    params = StdioServerParameters(command=binary, args=["mcp-stdio", "--addr", f"http://{addr}"])
    async with stdio_client(params) as (r, w):
        async with ClientSession(r, w) as session:
            await session.initialize()
            await mcp_calls("mcp mcp-stdio", session, calls, ticks)


def main(argv):
    addr = argv[0]
    calls = int(argv[1]) if len(argv) > 1 else 500
    ticks = int(argv[2]) if len(argv) > 2 else 20
    grpc_calls(addr, calls, ticks)
    raw_http_calls(addr, calls, ticks)
    asyncio.run(mcp_http(addr, calls, ticks))
    asyncio.run(mcp_stdio(addr, calls, ticks))


if __name__ == "__main__":
    main(sys.argv[1:])
