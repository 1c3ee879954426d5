"""A loopback OpenAI-compatible chat server that injects faults, for the LLM client's tests.

`answer(body) -> (key, content)` gives each request an item key and the right reply;
`faults[key]` lists what attempts 1, 2, ... of that item get instead: "429", "500", "slow"
(1 s before replying), "malformed" (cut-off JSON), "no_choices", "truncated"
(finish_reason "length"), or "content:<text>" (that text as the reply). Later attempts get "ok".
"""

import json
import threading
import time
from collections import Counter
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FaultyServer(ThreadingHTTPServer):
    def __init__(self, answer, faults=None):
        super().__init__(("127.0.0.1", 0), Handler)
        self.answer, self.faults = answer, faults if faults is not None else {}
        self.requests, self.lock = Counter(), threading.Lock()
        self.authorizations: set[str] = set()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        key, content = self.server.answer(body)
        with self.server.lock:
            self.server.authorizations.add(self.headers.get("Authorization", ""))
            self.server.requests[key] += 1
            attempt = self.server.requests[key]
        plan = self.server.faults.get(key, [])
        fault = plan[attempt - 1] if attempt <= len(plan) else "ok"
        if fault == "slow":
            time.sleep(1.0)
        status, headers = 200, {}
        reply = {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                 "choices": [{"index": 0, "finish_reason": "stop",
                              "message": {"role": "assistant", "content": content}}]}
        if fault == "429":
            status, headers, reply = 429, {"Retry-After": "0"}, {"error": {"message": "slow down"}}
        elif fault == "500":
            status, reply = 500, {"error": {"message": "boom"}}
        elif fault == "malformed":
            reply["choices"][0]["message"]["content"] = content[: len(content) // 2]
        elif fault == "no_choices":
            reply["choices"] = []
        elif fault == "truncated":
            reply["choices"][0]["finish_reason"] = "length"
        elif fault.startswith("content:"):
            reply["choices"][0]["message"]["content"] = fault.removeprefix("content:")
        data = json.dumps(reply).encode()
        self.send_response(status)
        for k, v in {"Content-Type": "application/json", **headers}.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@contextmanager
def serving(answer, faults=None):
    """Run a FaultyServer on 127.0.0.1 (a free port) for the duration of the block."""
    srv = FaultyServer(answer, faults)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
