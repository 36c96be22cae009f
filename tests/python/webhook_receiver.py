"""A webhook receiver for tests/it/webhooks.rs: verifies every request with the Standard Webhooks
reference library (`standardwebhooks`) and prints one JSON line per request to stdout.

    python3 webhook_receiver.py SECRET [--fail-first N] [--hang] [--fail-while PATH]

The first line printed is the port it listens on (127.0.0.1). Each request then prints
{"valid": true, "id", "type", "runId", "state", "labels", "pendingInputs", "attempt"} (or {"valid": false, "error"}).
--fail-first N answers 500 to the first N requests; --fail-while PATH answers 500 while PATH
exists; --hang never answers.
"""

import argparse
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("secret")
    parser.add_argument("--fail-first", type=int, default=0)
    parser.add_argument("--fail-while", default="")
    parser.add_argument("--hang", action="store_true")
    args = parser.parse_args()
    webhook = Webhook(args.secret)
    lock = threading.Lock()
    seen = {"requests": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            with lock:
                seen["requests"] += 1
                attempt = seen["requests"]
            try:
                payload = webhook.verify(body, dict(self.headers.items()))
                line = {
                    "valid": True,
                    "id": self.headers.get("webhook-id"),
                    "type": payload["type"],
                    "runId": payload["data"]["runId"],
                    "state": payload["data"]["state"],
                    "labels": payload["data"].get("labels", {}),
                    "pendingInputs": payload["data"].get("pendingInputs", []),
                    "attempt": attempt,
                }
                status = 200
            except Exception as error:  # every verification failure is reported, not raised
                line = {"valid": False, "error": repr(error), "attempt": attempt}
                status = 400
            if args.hang:
                print(json.dumps({**line, "hanging": True}), flush=True)
                while True:
                    time.sleep(3600)
            if attempt <= args.fail_first or (args.fail_while and os.path.exists(args.fail_while)):
                status = 500
            line["answered"] = status
            print(json.dumps(line), flush=True)
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
