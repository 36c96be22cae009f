"""The seed's "Nested Progress" example as command tools, for tests/it/command_tools.rs.

`helper` is the seed's example rewritten with the toolstream.tool helper's sub-tasks (no
arithmetic); `raw` writes the same protocol lines by hand, without the helper. Both must give the
client the same tree, and the same overall fractions as the seed's original.
"""

import json
import sys

from toolstream.tool import main, progress


@progress
def outer_task(items: list) -> str:
    for i, item in enumerate(items):
        with progress.child(f"item {i + 1}", weight=1 / len(items)) as sub:
            for j in range(3):
                yield sub.report((j + 1) / 3, f"Item {i + 1}, step {j + 1}")
    return "All done"


def raw() -> None:
    """The same tool speaking the protocol by hand."""
    items = json.loads(sys.stdin.read())["items"]

    def line(obj):
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    for i, _ in enumerate(items):
        task = f"item-{i}"
        line({"task": {"id": task, "label": f"item {i + 1}", "weight": 1 / len(items)}})
        for j in range(3):
            line({"task": {"id": task}, "progress": (j + 1) / 3, "status": f"Item {i + 1}, step {j + 1}"})
        line({"task": {"id": task, "done": True}})
    line({"result": "All done"})


if __name__ == "__main__":
    if sys.argv[1:] == ["raw"]:
        raw()
    else:
        main(outer_task)
