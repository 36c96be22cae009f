"""A tool that asks before it works and hands over its output as it goes, run by toolstream as a
command tool (examples/toolstream.toml declares it with `asks = true`).

    toolstream serve --config examples/toolstream.toml
    toolstream run word_counts --json '{"files": ["README.md", "CHANGELOG.md"]}'

Given more than `ask_above` files it asks whether to go on: the CLI asks inline on a terminal,
the page shows a form, and anyone may answer with `toolstream respond`, RespondToRun or
`POST /v1/runs/{id}/inputs/{request_id}`. Each file's count is a partial result the moment it is
known; the totals are the result.
"""

import toolstream
from toolstream.tool import main, progress


@progress
def word_counts(files: list[str], ask_above: int = 1) -> dict:
    """Counts the words of each file, asking first when there are many."""
    if len(files) > ask_above:
        go_on = yield toolstream.ask(f"Count the words of {len(files)} files?", bool)
        if not go_on:
            return {"files": 0, "words": 0}
    total = 0
    for done, name in enumerate(files, start=1):
        with open(name, encoding="utf-8", errors="replace") as handle:
            words = len(handle.read().split())
        total += words
        yield toolstream.partial({"file": name, "words": words}, key="counts", append=True)
        yield {"progress": done / len(files), "status": f"Counted {name}"}
    return {"files": len(files), "words": total}


if __name__ == "__main__":
    main(word_counts)
