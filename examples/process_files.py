"""The seed's Quick Start tool, run by toolstream as a command tool.

    toolstream serve --config examples/toolstream.toml
    toolstream run process_files --json '{"files": ["a", "b"]}'

`process_files` is written exactly as in the Quick Start; the last two lines make it a tool.
"""

import hashlib
import os
import sys
import time

from toolstream.tool import main, progress


def do_processing(file: str) -> None:
    """Summarises one file (lines, bytes, SHA-256) on stderr, which toolstream logs; a name that
    is not a file is noted as missing. Sleeps a little so the progress can be watched."""
    time.sleep(0.3)
    if not os.path.isfile(file):
        print(f"{file}: no such file, skipped", file=sys.stderr)
        return
    digest = hashlib.sha256()
    lines = size = 0
    with open(file, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 16), b""):
            digest.update(chunk)
            lines += chunk.count(b"\n")
            size += len(chunk)
    print(f"{file}: {lines} lines, {size} bytes, sha256 {digest.hexdigest()}", file=sys.stderr)


@progress
def process_files(files: list[str]) -> str:
    """Process multiple files with progress updates."""
    for i, file in enumerate(files):
        yield {"progress": (i + 1) / len(files), "status": f"Processing {file}"}
        do_processing(file)
    return "All files processed"


if __name__ == "__main__":
    main(process_files)
