"""The LLM client against a hostile endpoint, end to end: soak, permanent failures, kill -9, two processes.

Loopback only, bounded: short timeouts (0.3 s), hangs of 0.6 s, backoff of a millisecond.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fault_server import MIXED, items, judge_answer, llm_judge, serving
from test_llm import generator_answer

from slm4offer.config import load_config
from slm4offer.data.dataset import build_dataset, load_data_card
from slm4offer.llm import EndpointError, TooManyErrors

HERE = Path(__file__).parent
SOAK = {"concurrency": 8, "timeout_s": 0.3, "backoff_s": 0.001, "max_error_share": 0.2}


def judge(base_url, cache_dir, **kw):
    return llm_judge(base_url, cache_dir, **(SOAK | kw))


def expected(i: int) -> bool:
    return i % 2 == 1  # judge_answer accepts the savings offers, given to odd personas


def test_soak_1000_judge_items_every_fault_kind_mixed(tmp_path, capsys):
    n = 1000
    with serving(judge_answer, rate=0.5, seed=1, hang_s=0.6) as server:
        j = judge(server.base_url, tmp_path, concurrency=16)
        decisions = j(*items(n))
        faults = [f for _, _, f in server.log]
    assert set(MIXED) <= set(faults), "every fault kind was injected"
    assert faults.count("ok") / len(faults) < 0.6, "about half the requests were faulty"
    assert len(decisions) == n
    for i, d in enumerate(decisions):
        assert (d.accept is None) == (d.error is not None), f"item {i}: exactly one of verdict and error"
        if d.error is None:
            assert d.accept == expected(i) and d.reason == f"rule for {i}"
    errors = sum(d.error is not None for d in decisions)
    assert 0 < errors < 0.2 * n, "retries save most items; four faults in a row still happen"
    cached = [json.loads(p.read_text()) for p in tmp_path.rglob("*.json")]
    keys = [int(re.search(r"customer (\d+)\.", c["messages"][1]["content"]).group(1)) for c in cached]
    assert len(keys) == len(set(keys)) == n - errors, "one cache entry per verdict, none for errors"
    stats = j.chat.last_run
    assert (stats.items, stats.errors) == (n, errors)
    assert stats.requests >= len(faults), "tries include those lost on a connection the server had closed"
    assert f"llm judge: {errors} of {n} items ended in an error ({errors / n:.1%}" in capsys.readouterr().err


def test_soak_300_generator_items(project_root, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with serving(generator_answer, rate=0.5, seed=2, hang_s=0.6) as server:
        cfg = load_config("smoke", generator="openai", n_personas=250, catalog_size=60, offers_per_round=2,
                          max_rounds=3, llm_base_url=server.base_url, llm_concurrency=16,
                          llm_timeout_s=0.3, llm_backoff_s=0.001)
        dd = build_dataset(cfg, progress=False)
        faults = [f for _, _, f in server.log]
    assert set(MIXED) <= set(faults)
    card = load_data_card(cfg.dataset_dir)
    errors = card["generator_errors"]
    ids = [p for s in dd for p in dd[s]["persona_id"]]
    assert len(ids) == len(set(ids)), "no duplicate rows"
    kept = card["personas"]["synthesised"]
    assert kept + errors["personas_failed"] + errors["duplicate_persona_texts"] == 250, "every persona ends once"
    assert len(ids) + card["personas"]["dropped_no_acceptance"] == kept
    assert card["catalog"]["offers"] + errors["offers_failed"] == 60, "every offer ends once"
    assert errors["personas_failed"] + errors["offers_failed"] > 0, "some items failed for good"


def test_a_transient_failure_of_the_first_item_is_an_error_not_the_end(tmp_path):
    for fault in ("500", "hang", "cut", "429"):
        with serving(judge_answer, {0: [fault] * 9}, hang_s=1.5) as server:
            decisions = judge(server.base_url, tmp_path / fault, timeout_s=1.0, max_error_share=1.0)(*items(30))
        assert decisions[0].accept is None and decisions[0].error, fault
        assert [d.accept for d in decisions[1:]] == [expected(i) for i in range(1, 30)], fault
        # 4 tries; a try on a connection the server had just cut may never reach it
        assert 2 <= server.requests[0] <= 4, "the first item was retried, then recorded"


@pytest.mark.parametrize("status, says", [("401", "key was refused"), ("404", "no such path or model")])
def test_a_refused_key_or_unknown_model_stops_at_once(tmp_path, status, says):
    with serving(judge_answer, rate=1.0, kinds=(status,)) as server:
        with pytest.raises(EndpointError, match=f"HTTP {status}.*{says}"):
            judge(server.base_url, tmp_path, concurrency=4)(*items(200))
        assert len(server.log) <= 4 + 4, "nothing retried; at most one more request per worker after the first failure"


def test_nothing_listening_stops_at_once(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again before use: connections are refused
    start = time.monotonic()
    with pytest.raises(EndpointError, match="cannot connect to http://127.0.0.1"):
        judge(f"http://127.0.0.1:{port}/v1", tmp_path, backoff_s=1.0)(*items(100))
    assert time.monotonic() - start < 2, "no backoff spent on a server that is not there"


def test_too_many_errors_stop_the_run_and_keep_what_was_received(tmp_path):
    faults = {i: ["500"] * 9 for i in range(1000) if i % 10 < 4}  # 40% of the items never succeed
    with serving(judge_answer, faults) as server:
        with pytest.raises(TooManyErrors, match=r"more than the 20% allowed \(llm_max_error_share\).*cached"):
            judge(server.base_url, tmp_path, concurrency=4)(*items(1000))
        finished = {k for k, _, f in server.log if f == "ok"}
    assert 0 < len(finished) < 100, "stopped early, not after a thousand items"
    assert len(list(tmp_path.rglob("*.json"))) == len(finished), "every answer received is cached"


def run_proc(server, cache, n, out, key):
    env = os.environ | {"OPENAI_API_KEY": key, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
    return subprocess.Popen([sys.executable, str(HERE / "llm_judge_proc.py"), server.base_url, str(cache), str(n),
                             str(out)], env=env)


def cached_keys(cache: Path) -> set[int]:
    """Items whose answer is in the cache; every entry must parse (writes are atomic)."""
    keys = set()
    for path in cache.rglob("*.json"):
        entry = json.loads(path.read_text())
        assert entry["value"]["decision"] in ("accept", "reject")
        keys.add(int(re.search(r"customer (\d+)\.", entry["messages"][1]["content"]).group(1)))
    return keys


def wait_for_cache(cache: Path, count: int, proc, timeout_s: float = 60):
    deadline = time.monotonic() + timeout_s
    while sum(1 for _ in cache.rglob("*.json")) < count:
        assert proc.poll() is None, "the judge process ended before it was interrupted"
        assert time.monotonic() < deadline, "the judge process made no progress"
        time.sleep(0.01)


def requests_by(server, key: str) -> list[int]:
    return [item for item, auth, _ in server.log if auth == f"Bearer {key}"]


def test_a_run_killed_part_way_resumes_without_asking_again(tmp_path):
    n, cache = 600, tmp_path / "cache"
    with serving(judge_answer, rate=0.3, seed=3, kinds=("slow", "500", "cut", "malformed", "429"),
                 slow_s=0.02) as server:
        first = run_proc(server, cache, n, tmp_path / "first.json", "sk-first")
        wait_for_cache(cache, 150, first)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        done_before = cached_keys(cache)
        assert 150 <= len(done_before) < n and not (tmp_path / "first.json").exists()
        second = run_proc(server, cache, n, tmp_path / "second.json", "sk-second")
        assert second.wait(timeout=120) == 0
        asked_again = set(requests_by(server, "sk-second"))
    assert not asked_again & done_before, "no request for an answer that was already cached"
    assert len(asked_again) <= n - len(done_before)
    decisions = json.loads((tmp_path / "second.json").read_text())
    assert len(decisions) == n
    assert all((d["accept"] is None) != (d["error"] is None) for d in decisions)
    assert all(d["accept"] == expected(i) for i, d in enumerate(decisions) if d["error"] is None)
    assert cached_keys(cache) == {i for i, d in enumerate(decisions) if d["error"] is None}


def test_two_processes_share_one_cache(tmp_path):
    n, cache = 600, tmp_path / "cache"
    with serving(judge_answer, rate=0.2, seed=4, kinds=("slow", "500", "malformed"), slow_s=0.01) as server:
        a = run_proc(server, cache, n, tmp_path / "a.json", "sk-a")
        wait_for_cache(cache, 100, a)
        cached_when_b_started = cached_keys(cache)
        b = run_proc(server, cache, n, tmp_path / "b.json", "sk-b")
        assert a.wait(timeout=120) == 0 and b.wait(timeout=120) == 0
        asked_by_b = set(requests_by(server, "sk-b"))
    assert not asked_by_b & cached_when_b_started, "B reused every answer A had cached when it started"
    assert len(asked_by_b) < n - 100
    results = [json.loads((tmp_path / f"{name}.json").read_text()) for name in ("a", "b")]
    for decisions in results:
        assert len(decisions) == n
        assert all(d["accept"] == expected(i) for i, d in enumerate(decisions) if d["error"] is None)
    assert cached_keys(cache) >= {i for i, d in enumerate(results[1]) if d["error"] is None}
    assert not list(cache.rglob("*.tmp")), "no temp file left behind"


def test_the_stop_message_counts_every_failed_attempt_by_kind(tmp_path):
    """Items that failed the schema three times and then got a 429 were once reported as '429' only."""
    bad = "content:" + json.dumps({"verdict": "yes"})  # valid JSON, no 'decision': a schema mismatch
    faults = {i: [bad, bad, bad, "429"] for i in range(0, 100, 2)}
    with serving(judge_answer, faults) as server:
        with pytest.raises(TooManyErrors) as info:
            judge(server.base_url, tmp_path, concurrency=2, max_attempts=4)(*items(100))
    message = str(info.value)
    kinds = {k.strip(): int(n) for k, n in re.findall(r"([\w ]+?) x(\d+) \(e\.g\.", message.split("by kind: ")[1])}
    assert set(kinds) == {"schema mismatch", "HTTP 429"}, message
    assert kinds["schema mismatch"] >= 3 * kinds["HTTP 429"] > 0, "three schema failures before each 429"
    assert "'decision' must be" in message, "the schema example names the missing field"


def test_the_error_share_is_judged_over_the_whole_run_not_each_batch(tmp_path):
    """A judge asked system by system: a burst of errors in one batch is 9 of 90 over the run."""
    faults = {i: ["500"] * 9 for i in range(60, 69)}  # 9 of the third batch of 30 never succeed
    personas, offers = items(90)
    with serving(judge_answer, faults) as server:
        chat_judge = judge(server.base_url, tmp_path)
        decisions = [d for start in range(0, 90, 30)
                     for d in chat_judge(personas[start:start + 30], offers[start:start + 30])]
    assert sum(d.error is not None for d in decisions) == 9, "30% of one batch, 10% of the run: no stop"
    assert (chat_judge.chat.finished, chat_judge.chat.failed) == (90, 9)


def test_a_dead_judge_endpoint_stops_evaluate_before_any_training(project_root, capsys):
    from slm4offer.cli import main

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    assert main(["evaluate", "--profile", "smoke", "--judge", "llm", "--judge-base-url",
                 f"http://127.0.0.1:{port}/v1"]) == 2
    assert "cannot connect to http://127.0.0.1" in capsys.readouterr().err
    assert time.monotonic() - start < 10 and not (project_root / "artifacts").exists(), "nothing built or trained"
