"""A command tool for tests/it/command_tools.rs, written with the toolstream.tool helper.

`behaviour` chooses what it does, one promise of the protocol per behaviour; the tool's process id
(and that of a child it starts) travel in progress data so tests can check they are gone.
"""

import os
import signal
import subprocess
import sys
import time

from toolstream.tool import main, progress


def _raw(line: str) -> None:
    """Writes straight to the protocol pipe, bypassing the helper."""
    sys.__stdout__.write(line + "\n")
    sys.__stdout__.flush()


@progress
def scripted(behaviour: str, items: int = 3):
    if behaviour == "progress":
        print("a stray print goes to stderr, not into the protocol")
        for i in range(items):
            yield {
                "progress": (i + 1) / items,
                "status": f"item {i + 1} of {items}",
                "item": i + 1,
                "tags": ["a", "b"],
            }
        return {"processed": items}
    if behaviour == "raise":
        yield {"progress": 0.5, "status": "about to fail"}
        raise ValueError("disk full on /data")
    if behaviour == "garbage":
        child = subprocess.Popen(["sleep", "600"])
        yield {"status": "fine so far", "pid": os.getpid(), "child_pid": child.pid}
        _raw("this is not json")
        time.sleep(600)
    if behaviour == "crash":
        yield {"progress": 0.2, "status": "working"}
        sys.stderr.write("starting the widget\nfatal: the widget broke\n")
        sys.stderr.flush()
        os._exit(3)
    if behaviour == "no_result":
        yield {"progress": 0.3, "status": "leaving early"}
        os._exit(0)
    if behaviour == "stubborn":
        # Ignored signals stay ignored across exec, so the child ignores SIGTERM too.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        behaviour = "hang"
    if behaviour == "hang":
        child = subprocess.Popen(["sleep", "600"])
        yield {"status": "hanging", "pid": os.getpid(), "child_pid": child.pid}
        time.sleep(600)
    raise ValueError(f"unknown behaviour {behaviour!r}")


def plain(numbers: list):
    """Not a generator: just a result (and where it ran)."""
    return {"sum": sum(numbers), "cwd": os.getcwd()}


if __name__ == "__main__":
    main(plain if sys.argv[1:] == ["plain"] else scripted)
