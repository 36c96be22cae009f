"""Drives toolstream's /mcp with the official Python MCP SDK 2.x (its high-level `Client`, which
negotiates the 2026-07-28 revision) and prints what it saw as one JSON object
(tests/it/mcp_server.rs and mcp_elicitation.rs read it). Runs in the virtual environment
scripts/test makes for it (target/mcp2-venv): the rest of the tests use the 1.x SDK.

    mcp2_client.py URL TOOL ARGS_JSON [ANSWERS_JSON]

ANSWERS_JSON, a list of [ACTION, CONTENT] pairs, declares the elicitation capability: the
n-th elicitation is answered with the n-th pair (the SDK drives the 2026-07-28 revision's
input-required rounds itself), and what each asked is printed as `elicitations`.
"""

import asyncio
import json
import sys

from mcp import Client
from mcp import types


async def main(url, tool, arguments, answers=None):
    progress = []
    asked = []

    async def on_progress(value, total, message):
        progress.append({"progress": value, "total": total, "message": message})

    async def on_elicitation(_context, params):
        asked.append({"message": params.message, "requestedSchema": params.requested_schema})
        action, content = answers[min(len(asked), len(answers)) - 1]
        return types.ElicitResult(action=action, content=content)

    if answers is not None:
        answers = json.loads(answers)
        client = Client(url, elicitation_callback=on_elicitation)
    else:
        client = Client(url)
    async with client:
        tools = await client.list_tools()
        result = await client.call_tool(tool, json.loads(arguments), progress_callback=on_progress)
        print(
            json.dumps(
                {
                    "protocolVersion": client.protocol_version,
                    "tools": [t.name for t in tools.tools],
                    "progress": progress,
                    "isError": result.is_error,
                    "structuredContent": result.structured_content,
                    "meta": result.meta,
                    "elicitations": asked,
                }
            )
        )


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
