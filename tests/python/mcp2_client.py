"""Drives toolstream's /mcp with the official Python MCP SDK 2.x (its high-level `Client`, which
negotiates the 2026-07-28 revision) and prints what it saw as one JSON object
(tests/it/mcp_server.rs reads it). Runs in the virtual environment scripts/test makes for it
(target/mcp2-venv): the rest of the tests use the 1.x SDK.

    mcp2_client.py URL TOOL ARGS_JSON
"""

import asyncio
import json
import sys

from mcp import Client


async def main(url, tool, arguments):
    progress = []

    async def on_progress(value, total, message):
        progress.append({"progress": value, "total": total, "message": message})

    async with Client(url) as client:
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
                }
            )
        )


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
