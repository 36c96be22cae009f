"""A command tool that opens many sub-tasks, for tests/it/many_sub_tasks.rs.

Arguments: `count` sub-tasks; `pattern` "all" opens every one first and ends with them open (they
end with the tool), "each" opens, reports and finishes one after the other; `printed`, when given,
is a file written once every line is printed (the server may still be reading them).
"""

import json
import sys


def main() -> None:
    args = json.loads(sys.stdin.read())
    count = args["count"]
    each = args.get("pattern") == "each"
    out = sys.stdout
    chunk = []
    for i in range(1, count + 1):
        chunk.append(json.dumps({"task": {"id": f"t{i}", "label": f"item {i}"}}))
        if each:
            chunk.append(json.dumps({"task": {"id": f"t{i}"}, "progress": 0.5}))
            chunk.append(json.dumps({"task": {"id": f"t{i}", "done": True}}))
        if len(chunk) >= 3000:
            out.write("\n".join(chunk) + "\n")
            chunk = []
    out.write("\n".join(chunk + [json.dumps({"result": {"sub_tasks": count}})]) + "\n")
    out.flush()
    if args.get("printed"):
        with open(args["printed"], "w") as marker:
            marker.write("printed\n")


if __name__ == "__main__":
    main()
