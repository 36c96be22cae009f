"""A small MCP server (official Python SDK, FastMCP) whose tools report progress.

toolstream starts it over stdio: `toolstream serve --config examples/mcp.toml`.
"""

import asyncio

from mcp.server.fastmcp import Context, FastMCP

server = FastMCP("examples")


@server.tool()
async def slow_search(query: str, ctx: Context) -> dict:
    """Searches five pages for a query, slowly, reporting progress per page."""
    for page in range(1, 6):
        await ctx.report_progress(page, 5, f"Searching page {page}")
        await asyncio.sleep(0.3)
    return {"query": query, "pages": 5, "hits": len(query) * 3}


if __name__ == "__main__":
    server.run()
