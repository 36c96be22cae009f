"""An MCP server written with the official Python SDK (FastMCP), for toolstream's MCP tests.

Started by toolstream over stdio. Usage: mcp_server.py MARKER_DIR (files written there tell the
test what the server saw).
"""

import asyncio
import os
import sys

from mcp.server.fastmcp import Context, FastMCP

MARKERS = sys.argv[1] if len(sys.argv) > 1 else "."
server = FastMCP("toolstream-test")


@server.tool()
async def count_words(text: str, ctx: Context) -> dict:
    """Counts the words of a text, reporting progress per word."""
    words = text.split()
    for i, _ in enumerate(words):
        await ctx.report_progress(i + 1, len(words), f"word {i + 1} of {len(words)}")
    return {"words": len(words)}


@server.tool()
async def steps(count: int, ctx: Context) -> str:
    """Reports progress without a total, so only a status is known."""
    for i in range(count):
        await ctx.report_progress(i + 1, None, f"step {i + 1}")
    return "done"


@server.tool()
async def shout(text: str) -> str:
    """Upper-cases a text."""
    return text.upper()


@server.tool()
async def fail(reason: str) -> str:
    """Always fails with the reason given."""
    raise ValueError(f"refused: {reason}")


@server.tool()
async def slow(ctx: Context) -> str:
    """Works for a minute unless cancelled; writes a marker file when cancelled."""
    try:
        for i in range(600):
            await ctx.report_progress(i, 600, "working")
            await asyncio.sleep(0.1)
    except asyncio.CancelledError:
        with open(os.path.join(MARKERS, "cancelled"), "w") as marker:
            marker.write("cancelled")
        raise
    return "finished"


@server.tool()
async def crash() -> str:
    """Kills the server process."""
    os._exit(3)


if __name__ == "__main__":
    server.run()
