"""The command-tool helper (toolstream.tool): the protocol on stdout, --describe, and that it
needs nothing but the standard library."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import List

from conftest import REPO, python_env

TOOL = '''
import dataclasses, sys
from toolstream.tool import main, progress

@dataclasses.dataclass
class Options:
    times: int = 1

@progress
def shout(text: str, options: Options = Options()) -> str:
    """Shouts."""
    print("to stderr, not the protocol")
    yield {"progress": 0.5, "status": "shouting", "extra": 1}
    yield 0.75
    yield "almost"
    if text == "fail":
        raise ValueError("cannot shout that")
    return (text.upper() + "!") * options.times

if __name__ == "__main__":
    main(shout)
'''


def run_tool(tmp_path: Path, stdin: str, *args: str) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
    path = tmp_path / "shout.py"
    path.write_text(TOOL)
    # Only the helper's source on the path: no grpc, no protobuf needed.
    return subprocess.run(
        [sys.executable, "-S", str(path), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=python_env(PYTHONPATH=str(REPO / "python")),
        timeout=60,
    )


def lines(out: str) -> List[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in out.splitlines()]


def test_progress_then_result_lines(tmp_path: Path) -> None:
    done = run_tool(tmp_path, json.dumps({"text": "hi", "options": {"times": 2.0}}))
    assert done.returncode == 0, done.stderr
    assert lines(done.stdout) == [
        {"progress": 0.5, "status": "shouting", "extra": 1},
        {"progress": 0.75},
        {"status": "almost"},
        {"result": "HI!HI!"},
    ]
    assert "to stderr, not the protocol" in done.stderr


def test_an_exception_is_an_error_line(tmp_path: Path) -> None:
    done = run_tool(tmp_path, json.dumps({"text": "fail"}))
    assert done.returncode == 1
    assert lines(done.stdout)[-1] == {"error": "ValueError: cannot shout that"}
    assert "Traceback" in done.stderr


def test_describe_prints_the_description_and_schemas(tmp_path: Path) -> None:
    done = run_tool(tmp_path, "", "--describe")
    assert done.returncode == 0, done.stderr
    described = json.loads(done.stdout)
    assert described["name"] == "shout"
    assert described["description"] == "Shouts."
    assert described["input_schema"]["required"] == ["text"]
    assert described["input_schema"]["properties"]["options"]["$ref"] == "#/$defs/Options"
    assert described["output_schema"] == {"type": "string"}
