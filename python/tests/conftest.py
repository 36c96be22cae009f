"""Shared by the Python tests: start the real ``toolstream serve`` binary on an ephemeral port,
start Python workers as processes of their own, a stand-in model, and poll for effects.

The binary is ``TOOLSTREAM_BIN``, or ``target/debug/toolstream`` of this repository
(``scripts/test`` builds it first). The server's port is read from its JSON log line
"toolstream serving", the worker's from its log line "toolstream worker serving on ADDR": no
waiting on a clock either way.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

import pytest

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def toolstream_bin() -> str:
    path = os.environ.get("TOOLSTREAM_BIN") or str(REPO / "target" / "debug" / "toolstream")
    if not os.path.exists(path):
        pytest.fail(f"{path} does not exist: run `cargo build` first (scripts/test does)")
    return path


def wait_until(condition: Callable[[], Any], what: str, limit: float = 30.0) -> Any:
    """Polls ``condition`` until it returns something true, failing the test after ``limit``
    seconds. For effects that happen in the background, never for timing."""
    end = time.monotonic() + limit
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for: {what}")
        time.sleep(0.02)


class _Process:
    """A child process whose stderr is read line by line on a thread (kept for failures)."""

    def __init__(self, args: Sequence[str], env: Dict[str, str], cwd: Optional[str]) -> None:
        self.args = list(args)
        self.process = subprocess.Popen(
            self.args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
        self.lines: List[str] = []
        self._ready = threading.Event()
        self._match: Optional[str] = None

    def wait_for(self, parse: Callable[[str], Optional[str]], limit: float = 60.0) -> str:
        """Reads stderr until ``parse`` finds what it looks for in a line; fails if the process
        exits first. Keeps reading afterwards, so the process never blocks on a full pipe."""

        def read() -> None:
            assert self.process.stderr is not None
            for line in self.process.stderr:
                self.lines.append(line.rstrip("\n"))
                if self._match is None:
                    found = parse(line)
                    if found:
                        self._match = found
                        self._ready.set()
            self._ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not self._ready.wait(limit) or self._match is None:
            self.stop()
            pytest.fail(f"{self.args} did not start:\n" + "\n".join(self.lines))
        return self._match

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


class Server(_Process):
    """``toolstream serve`` listening on ``addr``."""

    addr: str


class Worker(_Process):
    """A Python worker listening on ``addr``."""

    addr: str


def _serving(line: str) -> Optional[str]:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    fields = record.get("fields", {})
    if fields.get("message") == "toolstream serving":
        return str(fields["listen"])
    return None


_WORKER_LINE = re.compile(r"toolstream worker serving on (\S+) with tools")


def _worker_serving(line: str) -> Optional[str]:
    match = _WORKER_LINE.search(line)
    return match.group(1) if match else None


def python_env(**extra: str) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOOLSTREAM_")}
    env.update(extra)
    return env


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Starts ``toolstream serve`` with an optional config (TOML text) and flags; stopped at the
    end of the test."""
    started: List[Server] = []

    def start(
        config: Optional[str] = None,
        *args: str,
        listen: str = "127.0.0.1:0",
        cwd: Optional[Path] = None,
    ) -> Server:
        argv = [toolstream_bin(), "serve", "--listen", listen]
        if config is not None:
            path = tempfile.NamedTemporaryFile(
                "w", suffix=".toml", dir=tmp_path, delete=False
            )
            path.write(config)
            path.close()
            argv += ["--config", path.name]
        argv += list(args)
        server = Server(
            argv,
            python_env(TOOLSTREAM_LOG_FORMAT="json", RUST_LOG="info"),
            str(cwd or tmp_path),
        )
        server.addr = server.wait_for(_serving)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    """Starts ``python -m toolstream.worker TARGET...`` (or ``python FILE``); stopped at the end."""
    started: List[Worker] = []

    def start(
        *targets: str,
        listen: str = "127.0.0.1:0",
        script: Optional[str] = None,
        env: Optional[Dict[str, str]] = None,
    ) -> Worker:
        if script is not None:
            argv = [sys.executable, script]
        else:
            argv = [sys.executable, "-m", "toolstream.worker", *targets, "--listen", listen]
        worker = Worker(
            argv,
            python_env(
                TOOLSTREAM_WORKER_LISTEN=listen,
                PYTHONUNBUFFERED="1",
                PYTHONPATH=str(HERE),
                **(env or {}),
            ),
            str(tmp_path),
        )
        worker.addr = worker.wait_for(_worker_serving)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture(scope="module")
def server_addr() -> Iterator[str]:
    """One plain server (built-in tools, root = the repository) shared by a module's tests."""
    server = Server(
        [toolstream_bin(), "serve", "--listen", "127.0.0.1:0", "--root", str(REPO)],
        python_env(TOOLSTREAM_LOG_FORMAT="json"),
        str(REPO),
    )
    server.addr = server.wait_for(_serving)
    yield server.addr
    server.stop()


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def grpc_entry(addr: str, prefix: str = "", relist_secs: int = 1) -> str:
    """A ``[[tools]] kind = "grpc"`` entry federating the worker or server at ``addr``."""
    prefix_line = f'prefix = "{prefix}"\n' if prefix else ""
    return (
        f'[[tools]]\nkind = "grpc"\nendpoint = "http://{addr}"\n{prefix_line}'
        f"relist_secs = {relist_secs}\n"
    )
