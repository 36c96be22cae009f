"""An MCP server written with the official Python SDK (FastMCP), for toolstream's MCP tests.

Started by toolstream over stdio. Usage: mcp_server.py MARKER_DIR [MODE] (files written there
tell the test what the server saw). MODE:

- `--stubborn`: ignores SIGTERM, starts a child (`sleep 1000`) that ignores it too, writes
  "<own pid> <child pid>" to MARKER_DIR/mcp.pids, and keeps running after stdin closes: only
  SIGKILL ends it. A SIGINT (Ctrl-C) writes MARKER_DIR/sigint.
- `--hang`: never answers `initialize` (it does not read stdin at all).
- `--hang-on-restart`: works the first time; started again (MARKER_DIR/started exists), it hangs
  like `--hang`.
"""

import asyncio
import os
import signal
import subprocess
import sys
import time

MARKERS = sys.argv[1] if len(sys.argv) > 1 else "."
MODE = sys.argv[2] if len(sys.argv) > 2 else ""


def hang():
    with open(os.path.join(MARKERS, "hung.pid"), "w") as out:
        out.write(str(os.getpid()))
    while True:
        time.sleep(1000)


# Decided before the SDK is imported (which takes a while), so the pid is written at once.
if MODE == "--hang":
    hang()
if MODE == "--hang-on-restart":
    started = os.path.join(MARKERS, "started")
    if os.path.exists(started):
        hang()
    open(started, "w").close()

from mcp.server.fastmcp import Context, FastMCP  # noqa: E402
from pydantic import BaseModel  # noqa: E402

server = FastMCP("toolstream-test")


@server.tool()
async def count_words(text: str, ctx: Context) -> dict:
    """Counts the words of a text, reporting progress per word."""
    words = text.split()
    for i, _ in enumerate(words):
        await ctx.report_progress(i + 1, len(words), f"word {i + 1} of {len(words)}")
    return {"words": len(words)}


class Copies(BaseModel):
    count: int


@server.tool()
async def ask_copies(ctx: Context) -> dict:
    """Asks how many copies to make (MCP elicitation) and says what it was told."""
    answer = await ctx.elicit(message="How many copies?", schema=Copies)
    if answer.action == "accept":
        return {"action": "accept", "count": answer.data.count}
    return {"action": answer.action}


@server.tool()
async def steps(count: int, ctx: Context) -> str:
    """Reports progress without a total, so only a status is known."""
    for i in range(count):
        await ctx.report_progress(i + 1, None, f"step {i + 1}")
    return "done"


@server.tool()
async def many_steps(count: int, ctx: Context) -> str:
    """Reports `count` progress steps as fast as it can, the last one `count of count`."""
    for i in range(count):
        await ctx.report_progress(i + 1, count, f"{i + 1} of {count}")
    return "done"


@server.tool()
async def stale_progress(ctx: Context) -> str:
    """Sends progress for the progress tokens 0 to 99 other than its own (calls that are over or
    not made yet), then answers. A client must not route them to later calls."""
    own = ctx.request_context.meta.progressToken
    for token in range(100):
        if token != own:
            await ctx.request_context.session.send_progress_notification(
                progress_token=token, progress=1, total=2, message="stale"
            )
    return "sent"


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
async def noisy() -> str:
    """Writes bytes that are not UTF-8 and a 1 MB line to stderr, then answers."""
    sys.stderr.buffer.write(b"not utf-8: \xff\xfe\xc3\x28 end\n")
    sys.stderr.buffer.write(b"x" * 1_000_000 + b"\n")
    sys.stderr.buffer.write(b"\xff" * 300_000 + b"\nafter the noise\n")
    sys.stderr.buffer.flush()
    return "still here"


@server.tool()
async def crash() -> str:
    """Kills the server process."""
    os._exit(3)


if __name__ == "__main__":
    if MODE == "--stubborn":

        def record_sigint(signum, frame):
            open(os.path.join(MARKERS, "sigint"), "w").close()

        signal.signal(signal.SIGINT, record_sigint)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        child = subprocess.Popen(["sleep", "1000"])
        pids = os.path.join(MARKERS, "mcp.pids")
        with open(pids + ".tmp", "w") as out:
            out.write(f"{os.getpid()} {child.pid}")
        os.rename(pids + ".tmp", pids)
    server.run()
    if MODE == "--stubborn":
        while True:
            time.sleep(1000)
