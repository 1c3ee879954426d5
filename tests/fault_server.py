"""A loopback OpenAI-compatible chat server that injects faults, for the LLM client's tests.

`answer(body) -> (key, content)` gives each request an item key and the right reply. Faults come
from a plan, a random mix, or both:

- `faults[key]` lists what attempts 1, 2, ... of that item get; later attempts get "ok".
- `rate` (with `seed`): every request not covered by a plan gets a fault drawn from `kinds` with
  that probability, so the soak tests hit every kind in every position (first item included).

Fault kinds: "429", "500", "503", "slow" (`slow_s` before a good reply), "hang" (`hang_s`
before a good reply: longer than the client's timeout), "cut" (the body stops half-way and the
connection closes), "malformed" (cut-off JSON content), "garbage" (prose instead of JSON),
"no_choices", "truncated" (finish_reason "length"), "401", "404" and "content:<text>" (that text
as the reply). Every request is logged as (key, authorization, fault) in `log`.

Run it by hand (`python tests/fault_server.py --rate 0.4`) to point `slm4offer evaluate --judge
llm` at a hostile endpoint; it then judges any persona/offer pair with a fixed rule.
"""

import argparse
import hashlib
import json
import random
import re
import threading
import time
from collections import Counter
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MIXED = ("429", "500", "503", "slow", "hang", "cut", "malformed", "garbage", "no_choices", "truncated")


class FaultyServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a hung handler must not hold up shutdown

    def __init__(self, answer, faults=None, rate=0.0, seed=0, kinds=MIXED, slow_s=0.05, hang_s=1.0, port=0):
        super().__init__(("127.0.0.1", port), Handler)
        self.answer, self.faults = answer, faults if faults is not None else {}
        self.rate, self.rng, self.kinds = rate, random.Random(seed), kinds
        self.slow_s, self.hang_s = slow_s, hang_s
        self.requests, self.lock = Counter(), threading.Lock()
        self.authorizations: set[str] = set()
        self.log: list[tuple] = []

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def handle_error(self, request, client_address):
        pass  # a client that timed out and left is expected here

    def fault_for(self, key, attempt: int) -> str:
        plan = self.faults.get(key)
        if plan is not None:
            return plan[attempt - 1] if attempt <= len(plan) else "ok"
        if self.rate and self.rng.random() < self.rate:
            return self.rng.choice(self.kinds)
        return "ok"


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        srv = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        key, content = srv.answer(body)
        with srv.lock:
            auth = self.headers.get("Authorization", "")
            srv.authorizations.add(auth)
            srv.requests[key] += 1
            fault = srv.fault_for(key, srv.requests[key])
            srv.log.append((key, auth, fault))
        if fault in ("slow", "hang"):
            time.sleep(srv.slow_s if fault == "slow" else srv.hang_s)
        status, headers = 200, {}
        reply = {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                 "choices": [{"index": 0, "finish_reason": "stop",
                              "message": {"role": "assistant", "content": content}}]}
        if fault == "429":
            status, headers, reply = 429, {"Retry-After": "0"}, {"error": {"message": "slow down"}}
        elif fault in ("500", "503", "401", "404"):
            status, reply = int(fault), {"error": {"message": f"injected {fault}"}}
        elif fault == "malformed":
            reply["choices"][0]["message"]["content"] = content[: len(content) // 2]
        elif fault == "garbage":
            reply["choices"][0]["message"]["content"] = "Sure! I think they would probably like it."
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
        if fault == "cut":
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(data)


@contextmanager
def serving(answer, faults=None, **kw):
    """Run a FaultyServer on 127.0.0.1 (a free port) for the duration of the block."""
    srv = FaultyServer(answer, faults, **kw)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


def judge_answer(body):
    """A deterministic 'LLM': accepts offers that mention savings; the key is the persona number."""
    prompt = body["messages"][1]["content"]
    key = int(re.search(r"Customer: customer (\d+)\.", prompt).group(1))
    accept = "savings" in prompt.split("Offer:")[1]
    return key, json.dumps({"decision": "accept" if accept else "reject", "reason": f"rule for {key}",
                            "probability": 0.8 if accept else 0.2})


def items(n):
    """`n` (persona, offer) pairs for `judge_answer`: odd ones get a savings offer (accepted)."""
    personas = [{"persona_id": f"p{i}", "persona": f"customer {i}."} for i in range(n)]
    offers = ["Open a savings account." if i % 2 else "Get a credit card." for i in range(n)]
    return personas, offers


def llm_judge(base_url, cache_dir, api_key="sk-test-secret", **kw):
    """An `LLMJudge` on `base_url` with test-sized retries and timeouts (any JSONChat setting overridable)."""
    from slm4offer.judges.llm_judge import LLMJudge
    from slm4offer.llm import JSONChat

    kw = {"concurrency": 3, "max_attempts": 4, "timeout_s": 0.5, "backoff_s": 0.01, "max_error_share": 1.0} | kw
    return LLMJudge(JSONChat("judge-model", cache_dir, base_url=base_url, api_key=api_key, **kw), progress=False)


def rule_judge(body):
    """Any judge prompt: accept when a stable hash of the prompt is even; the key is the prompt."""
    prompt = body["messages"][1]["content"]  # the original question, also when re-asked
    digest = int(hashlib.sha256(prompt.encode()).hexdigest(), 16)
    accept = digest % 2 == 0
    return prompt, json.dumps({"decision": "accept" if accept else "reject", "reason": "fixed rule",
                               "probability": 0.7 if accept else 0.3})


def rule_judge_without_probability(body):
    """`rule_judge`'s verdicts with no "probability" field, which the judge's reply schema allows."""
    key, content = rule_judge(body)
    verdict = json.loads(content)
    del verdict["probability"]
    return key, json.dumps(verdict)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--rate", type=float, default=0.4, help="share of requests given a fault")
    parser.add_argument("--hang-s", type=float, default=5.0, help="how long a 'hang' lasts")
    args = parser.parse_args()
    server = FaultyServer(rule_judge, rate=args.rate, hang_s=args.hang_s, port=args.port)
    print(f"serving {server.base_url} with {args.rate:.0%} faults ({', '.join(MIXED)}); Ctrl-C stops", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        faults = Counter(f for _, _, f in server.log)
        print(f"{len(server.log)} requests; faults: {dict(faults)}")
