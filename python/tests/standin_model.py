"""A stand-in for an OpenAI-compatible model server, speaking the real wire protocol (as
tests/it/common/model.rs does for the Rust tests): ``POST /v1/chat/completions`` answered with
``text/event-stream``, one JSON chunk per ``data:`` line, tool-call arguments split across chunks,
then ``data: [DONE]``.

Each test scripts its turns: ``StandInModel([tool_calls(("call_1", "slow_search", {...})),
text("Found it.")])``; ``requests`` holds what the agent sent.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Tuple, Union


def _chunk(delta: Dict[str, Any], finish_reason: Any = None) -> str:
    return json.dumps(
        {
            "id": "chatcmpl-standin",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "standin",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        }
    )


def text(*pieces: str) -> List[str]:
    """A turn that streams ``pieces`` of text, then stops."""
    events = [_chunk({"content": piece}) for piece in pieces]
    return events + [_chunk({}, "stop"), "[DONE]"]


def tool_calls(*calls: Tuple[str, str, Dict[str, Any]]) -> List[str]:
    """A turn asking for tool calls ``(id, name, arguments)``, arguments split in three chunks."""
    events = [_chunk({"role": "assistant", "content": None})]
    for index, (call_id, name, arguments) in enumerate(calls):
        events.append(
            _chunk(
                {
                    "tool_calls": [
                        {
                            "index": index,
                            "id": call_id,
                            "type": "function",
                            "function": {"name": name, "arguments": ""},
                        }
                    ]
                }
            )
        )
        encoded = json.dumps(arguments)
        third = max(1, -(-len(encoded) // 3))
        for start in range(0, len(encoded), third):
            piece = encoded[start : start + third]
            events.append(
                _chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
            )
    return events + [_chunk({}, "tool_calls"), "[DONE]"]


Turns = Union[List[List[str]], Callable[[Dict[str, Any]], List[str]]]


def calls_then_answers(arguments: Dict[str, Dict[str, Any]], answer: str) -> Callable[[Dict[str, Any]], List[str]]:
    """A model that calls the first tool it is offered with ``arguments[tool]``, then, once it
    has the tool's answer, answers ``answer``: usable by any number of runs."""

    def turn(request: Dict[str, Any]) -> List[str]:
        if request["messages"][-1]["role"] == "tool":
            return text(answer)
        tool = request["tools"][0]["function"]["name"]
        return tool_calls(("call_1", tool, arguments.get(tool, {})))

    return turn


class StandInModel:
    """Serves the scripted turns, one per request (or the turn a function makes of each request),
    on 127.0.0.1 and a free port."""

    def __init__(self, turns: Turns) -> None:
        self._policy = turns if callable(turns) else None
        self._turns = [] if callable(turns) else list(turns)
        self._lock = threading.Lock()
        self.requests: List[Dict[str, Any]] = []
        model = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                with model._lock:
                    model.requests.append(body)
                    if model._policy is not None:
                        turn = model._policy(body)
                    else:
                        turn = model._turns.pop(0) if model._turns else None
                if turn is None:
                    message = b"the test scripted no more turns"
                    self.send_response(500)
                    self.send_header("Content-Length", str(len(message)))
                    self.end_headers()
                    self.wfile.write(message)
                    return
                payload = "".join(f"data: {event}\n\n" for event in turn).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
