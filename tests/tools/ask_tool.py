"""A command tool for tests/it/ask_python.rs, written with the toolstream.tool helper: it asks
for a confirmation with ``yield toolstream.ask(...)`` and says what it did; with ``catch`` false an
unanswered question fails the call (the InputNotAnswered raised at the yield is not caught)."""

import toolstream
from toolstream.tool import main, progress


@progress
def confirm(path: str, catch: bool = True) -> str:
    yield {"status": f"checking {path}"}
    try:
        overwrite = yield toolstream.ask(f"Overwrite {path}?", bool)
    except toolstream.InputNotAnswered as error:
        if not catch:
            raise
        return f"kept ({error.outcome})"
    return "overwritten" if overwrite else "kept"


if __name__ == "__main__":
    main(confirm)
