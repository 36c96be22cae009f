"""A command tool that emits partial results, for tests/partial_results.rs: through the helper's
``partial`` and as a protocol line spelled out by hand."""

from toolstream import partial, progress
from toolstream.tool import main


@progress
def search(count: int = 3, big: int = 0):
    for i in range(count):
        yield {"progress": (i + 1) / count}
        yield partial(i, key="hits", append=True)
    yield partial("best so far")
    # The protocol's line as a tool in any language writes it.
    yield {"partial": {"value": {"n": count}, "key": "raw"}}
    if big:
        yield partial("b" * big)
    return count


if __name__ == "__main__":
    main(search)
