"""The LLM generator against a loopback OpenAI-compatible server that injects faults."""

import json
import re
import shutil

import pytest
from fault_server import serving

from slm4offer.config import load_config
from slm4offer.data.dataset import build_dataset, load_data_card
from slm4offer.domains import load_domain

FINANCE = load_domain("finance")
OCCUPATIONS = list(FINANCE.attributes["occupation"].values)
INTERESTS = list(FINANCE.attributes["interests"].values)


def persona_reply(i):
    return {"attributes": {"age": 20 + i % 60, "occupation": OCCUPATIONS[i % len(OCCUPATIONS)],
                           "income": 30000 + 1000 * i, "credit_score": 600 + i % 250,
                           "interests": [INTERESTS[i % len(INTERESTS)]],
                           "spending": "big spender" if i % 2 else "careful saver"},
            "description": f"Persona {i}: a realistic customer."}


def generator_answer(body):
    """The reply a well-behaved LLM gives the generator's persona and offer requests."""
    prompt = body["messages"][1]["content"]
    if m := re.search(r"persona number (\d+)", prompt):
        return ("persona", int(m.group(1))), json.dumps(persona_reply(int(m.group(1))))
    parts = re.search(r"wording: (.*)\. Mention", prompt).group(1)
    return ("offer", parts), json.dumps({"offer": "Try " + ", ".join(p.split(": ", 1)[1] for p in parts.split("; "))})


@pytest.fixture
def server():
    with serving(generator_answer) as srv:
        yield srv


def llm_config(server, **kw):
    return load_config("smoke", generator="openai", n_personas=12, catalog_size=12,
                       offers_per_round=2, max_rounds=3,
                       llm_base_url=server.base_url,
                       llm_backoff_s=0.01, llm_timeout_s=0.5, llm_concurrency=3, **kw)


def test_faults_are_retried_and_every_item_ends_once(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret")
    server.faults.update({("persona", 1): ["429", "500", "ok"], ("persona", 2): ["malformed", "ok"],
                          ("persona", 3): ["slow", "ok"], ("persona", 4): ["no_choices", "truncated"],
                          ("persona", 5): ["500"] * 9})  # never recovers within 4 attempts
    cfg = llm_config(server)
    dd = build_dataset(cfg, progress=False)
    card = load_data_card(cfg.dataset_dir)
    errors = card["generator_errors"]
    ids = [pid for s in dd for pid in dd[s]["persona_id"]]
    assert len(ids) == len(set(ids)), "no duplicate rows"
    assert errors["personas_failed"] == 1 and "persona 5" in errors["first_errors"][0]
    assert "p000005" not in ids
    assert len(ids) + card["personas"]["dropped_no_acceptance"] == 11, "all others kept"
    assert server.requests[("persona", 1)] == 3 and server.requests[("persona", 5)] == 4
    texts = {t for s in dd for t in dd[s]["persona"]}
    assert "Persona 4: a realistic customer." in texts  # re-asked after two unusable replies
    cache_files = list(cfg.llm_cache_dir.rglob("*.json"))
    assert len(cache_files) == 11 + 12
    assert not any("sk-test-secret" in f.read_text() for f in cache_files)


def test_rerun_resumes_from_the_cache(server, monkeypatch):
    server.faults[("persona", 0)] = ["500"] * 4  # the first run loses persona 0
    cfg = llm_config(server)
    first = build_dataset(cfg, progress=False)
    assert "p000000" not in {p for s in first for p in first[s]["persona_id"]}
    sent = sum(server.requests.values())
    shutil.rmtree(cfg.dataset_dir)  # as if interrupted before the dataset was written
    second = build_dataset(cfg, progress=False)
    assert sum(server.requests.values()) == sent + 1, "only the failed item is asked again"
    ids = [p for s in second for p in second[s]["persona_id"]]
    card = load_data_card(cfg.dataset_dir)
    assert card["personas"]["synthesised"] == 12, "persona 0 was generated on the rerun"
    assert card["generator_errors"]["personas_failed"] == 0
    assert len(ids) == len(set(ids))


def test_offer_texts_must_parse_back_to_their_own_offer(server):
    import numpy as np

    from slm4offer.data.world import sample_catalog

    cfg = llm_config(server)
    offers = sample_catalog(FINANCE, 12, np.random.default_rng(np.random.SeedSequence(0).spawn(3)[1]))
    parts = "; ".join(f"{s}: {FINANCE.slots[s][v].text}" for s, v in offers[0].slots.items())
    server.faults[("offer", parts)] = ["content:" + json.dumps({"offer": "A mortgage."})] * 4
    build_dataset(cfg, progress=False)
    errors = load_data_card(cfg.dataset_dir)["generator_errors"]
    assert errors["offers_failed"] == 1 and offers[0].offer_id in " ".join(errors["first_errors"])
    assert "it reads as mortgage" not in errors["first_errors"][0]  # "A mortgage." names no full offer
    assert "no benefit named" in errors["first_errors"][0]
