"""Every example of python/README.md (the seed's examples, translated) runs as written, against a
real server federating a worker built from the README's own tool code.

A block preceded by ``<!-- test: NAME -->`` is an example; the plain block right after a client
example is its expected output. The ``tools`` blocks together make ``tools.py`` (the first one
alone is the Quick Start worker, run as ``python tools.py``; all of them are served with ``python
-m toolstream.worker tools.py``); the ``config`` block is the server's config, its endpoint
replaced by the worker's address; the ``web`` blocks make a FastAPI app driven through its test
client; the others run as scripts with ``TOOLSTREAM_ADDR`` set and print what the README says.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest
from conftest import REPO, Server, Worker, _serving, _worker_serving, python_env, toolstream_bin
from standin_model import StandInModel, calls_then_answers

README = REPO / "python" / "README.md"
README_ENDPOINT = "127.0.0.1:50052"

_BLOCK = re.compile(
    r"<!-- test: (\w+) -->\n```(\w+)\n(.*?)\n```\n(?:\s*```\n(.*?)\n```\n)?", re.DOTALL
)


def examples() -> List[Tuple[str, str, Optional[str]]]:
    """(name, code, expected output) for each example, in README order."""
    return [(m.group(1), m.group(3), m.group(4)) for m in _BLOCK.finditer(README.read_text())]


def example(name: str) -> Tuple[str, Optional[str]]:
    found = [(code, out) for n, code, out in examples() if n == name]
    assert len(found) == 1, f"README has {len(found)} examples named {name}"
    return found[0]


def tools_source() -> str:
    blocks = [code for name, code, _ in examples() if name == "tools"]
    first, rest = blocks[0], blocks[1:]
    head, main = first.split('\nif __name__ == "__main__":')
    return head + "\n\n" + "\n\n".join(rest) + '\n\nif __name__ == "__main__":' + main + "\n"


AGENT_ARGUMENTS: Dict[str, Dict[str, Any]] = {
    "slow_search": {"query": "information"},
    "analyze_data": {"data": "numbers"},
    "process_files": {"files": ["a", "b"]},
}


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dict[str, Any]]:
    """The README's worker (all its tools), the README's config, a server with a stand-in model."""
    workdir = tmp_path_factory.mktemp("readme")
    (workdir / "tools.py").write_text(tools_source())
    worker = Worker(
        [sys.executable, "-m", "toolstream.worker", "tools.py", "--listen", "127.0.0.1:0"],
        python_env(PYTHONUNBUFFERED="1"),
        str(workdir),
    )
    worker.addr = worker.wait_for(_worker_serving)
    config, _ = example("config")
    assert README_ENDPOINT in config
    (workdir / "toolstream.toml").write_text(config.replace(README_ENDPOINT, worker.addr))
    model = StandInModel(calls_then_answers(AGENT_ARGUMENTS, "Here is what I found."))
    server = Server(
        [
            toolstream_bin(),
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--config",
            "toolstream.toml",
            "--model-url",
            model.url,
            "--model",
            "standin",
        ],
        python_env(TOOLSTREAM_LOG_FORMAT="json"),
        str(workdir),
    )
    server.addr = server.wait_for(_serving)
    yield {"dir": workdir, "server": server, "worker": worker, "model": model}
    server.stop()
    worker.stop()
    model.close()


def run_script(deployment: Dict[str, Any], name: str) -> str:
    code, _ = example(name)
    path = deployment["dir"] / f"{name}.py"
    path.write_text(code)
    done = subprocess.run(
        [sys.executable, str(path)],
        cwd=deployment["dir"],
        env=python_env(TOOLSTREAM_ADDR=deployment["server"].addr),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"{name} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def expected(deployment: Dict[str, Any], name: str) -> str:
    _, output = example(name)
    assert output is not None, f"README shows no output for {name}"
    return output.replace(README_ENDPOINT, deployment["worker"].addr) + "\n"


def test_quick_start_worker_as_written(tmp_path: Path) -> None:
    """The first tools block alone is a complete worker; `python tools.py` serves it."""
    code = [c for n, c, _ in examples() if n == "tools"][0]
    (tmp_path / "tools.py").write_text(code)
    worker = Worker(
        [sys.executable, "tools.py"],
        python_env(TOOLSTREAM_WORKER_LISTEN="127.0.0.1:0", PYTHONUNBUFFERED="1"),
        str(tmp_path),
    )
    worker.addr = worker.wait_for(_worker_serving)
    config, _ = example("config")
    (tmp_path / "toolstream.toml").write_text(config.replace(README_ENDPOINT, worker.addr))
    server = Server(
        [toolstream_bin(), "serve", "--listen", "127.0.0.1:0", "--config", "toolstream.toml"],
        python_env(TOOLSTREAM_LOG_FORMAT="json"),
        str(tmp_path),
    )
    server.addr = server.wait_for(_serving)
    try:
        deployment = {"dir": tmp_path, "server": server, "worker": worker}
        assert run_script(deployment, "quick_start") == expected(deployment, "quick_start")
    finally:
        server.stop()
        worker.stop()


def test_quick_start_tool_unchanged_as_a_command_tool(tmp_path: Path) -> None:
    """examples/process_files.py: the Quick Start function as written, plus main()."""
    source = (REPO / "examples" / "process_files.py").read_text()
    quick_start = [c for n, c, _ in examples() if n == "tools"][0]
    function = quick_start[quick_start.index("@progress") : quick_start.index("\n\n\nif __name__")]
    assert function in source, "examples/process_files.py must hold the Quick Start tool unchanged"
    server = Server(
        [
            toolstream_bin(),
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--config",
            str(REPO / "examples" / "toolstream.toml"),
        ],
        python_env(TOOLSTREAM_LOG_FORMAT="json"),
        str(tmp_path),
    )
    server.addr = server.wait_for(_serving)
    try:
        deployment = {"dir": tmp_path, "server": server, "worker": None}
        assert run_script(deployment, "quick_start") == (
            "50% Processing a.txt\n100% Processing b.txt\nAll files processed\n"
        )
        from toolstream import Client

        with Client(server.addr) as client:
            tool = next(t for t in client.tools() if t.name == "process_files")
        assert tool.kind == "command"
        assert tool.description == "Process multiple files with progress updates."
        assert tool.input_schema["properties"] == {
            "files": {"type": "array", "items": {"type": "string"}}
        }
    finally:
        server.stop()


@pytest.mark.parametrize(
    "name", ["progress_events", "direct_streaming", "nested", "error_handling", "runs", "partials"]
)
def test_client_examples_print_what_the_readme_says(deployment: Dict[str, Any], name: str) -> None:
    assert run_script(deployment, name) == expected(deployment, name)


def test_with_agent(deployment: Dict[str, Any]) -> None:
    lines = run_script(deployment, "with_agent").splitlines()
    assert lines[-1] == "Here is what I found."
    assert "20% - Searching page 1" in lines
    assert "100% - Searching page 5" in lines
    assert any("tool calls done" in line for line in lines), lines


def test_progress_event_fields(deployment: Dict[str, Any]) -> None:
    lines = run_script(deployment, "progress_event").splitlines()
    assert lines[0:3] == ["0.5", "Processing item 1 of 2", "{'current_item': 1}"]
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+\+00:00$", lines[3])
    assert lines[4].startswith("progress 2 ") and lines[4].endswith(" None None")
    as_json = eval(lines[5])  # the printed dict
    assert json.loads(json.dumps(as_json))["status"] == "Processing item 1 of 2"


def test_async_client(deployment: Dict[str, Any]) -> None:
    assert run_script(deployment, "async_client") == "Progress: 50%\nProgress: 100%\n[1, 2]\n"


@pytest.fixture
def web_app(deployment: Dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Any:
    pytest.importorskip("fastapi")
    monkeypatch.setenv("TOOLSTREAM_ADDR", deployment["server"].addr)
    code = "\n\n".join(c for n, c, _ in examples() if n == "web")
    namespace: Dict[str, Any] = {}
    exec(compile(code, "README.md (web examples)", "exec"), namespace)
    from fastapi.testclient import TestClient

    return TestClient(namespace["app"])


def test_fastapi_sse(web_app: Any) -> None:
    response = web_app.post("/analyze", params={"data": "numbers"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    frames = [json.loads(line[len("data: ") :]) for line in response.text.split("\n\n") if line]
    assert frames[-1] == {"done": True, "result": "Here is what I found."}
    steps = [f["data"]["step"] for f in frames[:-1] if f.get("tool") == "analyze_data"]
    assert steps == [f"Step {i}" for i in range(1, 11)]
    assert all(f["type"] == "progress" for f in frames[:-1])


def test_fastapi_websocket(web_app: Any) -> None:
    messages = []
    with web_app.websocket_connect("/ws/process") as socket:
        while True:
            try:
                messages.append(socket.receive_json())
            except Exception:  # the server closed the socket after the last event
                break
    statuses = [m["status"] for m in messages]
    assert "Processing a" in statuses and "Processing b" in statuses
    assert messages[-1] == {"progress": None, "status": None}  # the result event


def test_the_top_readme_python_example(server_addr: str, tmp_path: Path) -> None:
    """README.md's Python example (its first Python block, in the tour) runs as written against a
    server with the built-in tools."""
    text = (REPO / "README.md").read_text()
    code = re.search(r"```python\n(.*?)\n```", text, re.DOTALL)
    assert code is not None
    script = tmp_path / "example.py"
    script.write_text(code.group(1).replace('"127.0.0.1:50051"', repr(server_addr)))
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "10% tick 1/10" and lines[9] == "100% tick 10/10"
    assert lines[10] == "{'count': 10}"
