"""Drives toolstream's MCP server with the official Python MCP SDK client and prints what it saw
as one JSON object (tests/it/mcp_server.rs reads it).

    mcp_client.py http URL SCENARIO [ARGS...]
    mcp_client.py stdio TOOLSTREAM_BINARY ADDR SCENARIO [ARGS...]

With MCP_TEST_TOKEN set, its value is the bearer token (HTTP) or `--token` (stdio).

Scenarios:
- list: the tools (name, inputSchema, outputSchema).
- call TOOL ARGS_JSON [META_JSON]: one tools/call (with META_JSON as its _meta) with a progress
  callback: the progress notifications, the result's content, structuredContent, isError and
  _meta.
- error TOOL ARGS_JSON [META_JSON]: one tools/call expected to fail with a JSON-RPC error: its code and
  message.
- elicit TOOL ARGS_JSON ACTION [CONTENT_JSON]: a session that declares the elicitation
  capability; one tools/call whose elicitations are answered with ACTION (accept, decline,
  cancel) and CONTENT_JSON, under a 30 s deadline: what `call` prints, and each elicitation's message and
  requestedSchema.
- cancel TOOL ARGS_JSON SERVER_URL: starts the call, waits for its first progress
  notification, sends notifications/cancelled for it, then waits until the server's JSON
  routes (SERVER_URL/v1/runs) list a cancelled run of TOOL, and prints its id.
"""

import asyncio
import json
import os
import sys
from contextlib import asynccontextmanager

import anyio
import httpx
from mcp import ClientSession, StdioServerParameters, types
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import McpError


# What the elicitation callback answers, and what it was asked (the `elicit` scenario sets the
# answer before the session starts: the callback is given when the session is made).
ELICITATION = {"answer": None, "asked": []}


async def on_elicitation(_context, params):
    ELICITATION["asked"].append(
        {"message": params.message, "requestedSchema": params.requestedSchema}
    )
    action, content = ELICITATION["answer"]
    return types.ElicitResult(action=action, content=content)


@asynccontextmanager
async def http_session(url, token):
    headers = {"authorization": f"Bearer {token}"} if token else {}
    # The capability is declared only when a callback is given.
    elicitation = on_elicitation if ELICITATION["answer"] else None
    async with httpx.AsyncClient(headers=headers, timeout=30) as http:
        async with streamable_http_client(url, http_client=http) as (read, write, _):
            async with ClientSession(read, write, elicitation_callback=elicitation) as session:
                await session.initialize()
                yield session


@asynccontextmanager
async def stdio_session(binary, addr, token):
    args = ["mcp-stdio", "--addr", addr]
    if token:
        args += ["--token", token]
    params = StdioServerParameters(command=binary, args=args)
    elicitation = on_elicitation if ELICITATION["answer"] else None
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write, elicitation_callback=elicitation) as session:
            await session.initialize()
            yield session


async def list_tools(session, _args):
    tools = await session.list_tools()
    return {
        "tools": [
            {
                "name": tool.name,
                "description": tool.description,
                "inputSchema": tool.inputSchema,
                "outputSchema": tool.outputSchema,
            }
            for tool in tools.tools
        ]
    }


async def call(session, args):
    tool, arguments = args[0], json.loads(args[1])
    progress = []

    async def on_progress(value, total, message):
        progress.append({"progress": value, "total": total, "message": message})

    meta = json.loads(args[2]) if len(args) > 2 else None
    result = await session.call_tool(tool, arguments, progress_callback=on_progress, meta=meta)
    return {
        "progress": progress,
        "isError": result.isError,
        "content": [block.model_dump(mode="json") for block in result.content],
        "structuredContent": result.structuredContent,
        "meta": result.meta,
    }


async def error(session, args):
    tool, arguments = args[0], json.loads(args[1])
    meta = json.loads(args[2]) if len(args) > 2 else None
    try:
        result = await session.call_tool(tool, arguments, meta=meta)
    except McpError as failure:
        return {"code": failure.error.code, "message": failure.error.message}
    return {"unexpected_result": result.model_dump(mode="json")}


async def cancel(session, args):
    tool, arguments, server = args[0], json.loads(args[1]), args[2]
    first_progress = anyio.Event()

    async def on_progress(_value, _total, _message):
        first_progress.set()

    token = os.environ.get("MCP_TEST_TOKEN")
    headers = {"authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(headers=headers, timeout=10) as http:
        listed = (await http.get(f"{server}/v1/runs")).json().get("runs", [])
        before = {run["runId"] for run in listed}
    # The session numbers requests in order: the call takes the next id.
    request_id = session._request_id
    outcome = {"cancelled": request_id}
    async with anyio.create_task_group() as group:

        async def run_call():
            # A cancelled request gets no answer: this waits until the group is cancelled.
            await session.call_tool(tool, arguments, progress_callback=on_progress)
            outcome["unexpected"] = "the cancelled call answered"

        group.start_soon(run_call)
        with anyio.fail_after(30):
            await first_progress.wait()
        await session.send_notification(
            types.ClientNotification(
                types.CancelledNotification(
                    params=types.CancelledNotificationParams(
                        requestId=request_id, reason="the test cancels"
                    )
                )
            )
        )
        # The notification is sent in the background: wait until the server's JSON routes show
        # the run cancelled, with the session still open.
        async with httpx.AsyncClient(headers=headers, timeout=10) as http:
            with anyio.fail_after(30):
                while "run_id" not in outcome:
                    runs = (await http.get(f"{server}/v1/runs")).json().get("runs", [])
                    for run in runs:
                        if (
                            run["runId"] not in before
                            and run.get("tool") == tool
                            and run.get("state") == "RUN_STATE_CANCELLED"
                        ):
                            outcome["run_id"] = run["runId"]
                    await anyio.sleep(0.02)
        group.cancel_scope.cancel()
    return outcome


async def elicit(session, args):
    # A deadline, so a question nobody answers ends the call instead of hanging it.
    outcome = await call(session, [args[0], args[1], json.dumps({"toolstream/timeoutMs": 30000})])
    outcome["elicitations"] = ELICITATION["asked"]
    return outcome


SCENARIOS = {
    "list": list_tools,
    "call": call,
    "error": error,
    "cancel": cancel,
    "elicit": elicit,
}


async def main(argv):
    token = os.environ.get("MCP_TEST_TOKEN") or None
    if argv[0] == "http":
        url, scenario, rest = argv[1], argv[2], argv[3:]
        session = http_session
        where = (url,)
    else:
        binary, addr, scenario, rest = argv[1], argv[2], argv[3], argv[4:]
        session = stdio_session
        where = (binary, addr)
    if scenario == "elicit":
        content = json.loads(rest[3]) if len(rest) > 3 else None
        ELICITATION["answer"] = (rest[2], content)
    session = session(*where, token)
    async with session as connected:
        print(json.dumps(await SCENARIOS[scenario](connected, rest)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
