"""The judges' contract: one decision per pair, reasons for rejects, errors never counted as verdicts."""

import json

import numpy as np
import pytest
from fault_server import items, judge_answer, llm_judge, serving

from slm4offer.config import load_config
from slm4offer.data.dataset import build_dataset, load_catalog
from slm4offer.data.world import SimulatedCustomer, offer_id, render_offer
from slm4offer.domains import load_domain
from slm4offer.judges import make_judge
from slm4offer.judges.base import Decision
from slm4offer.judges.llm_judge import LLMJudge, validate_verdict
from slm4offer.judges.simulated import SimulatedJudge

FINANCE = load_domain("finance")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SLM4OFFER_ROOT", str(tmp_path_factory.mktemp("root")))
        cfg = load_config("smoke")
        dd = build_dataset(cfg, progress=False)
        catalog = load_catalog(cfg.dataset_dir)
    return cfg, list(dd["test"]), catalog


def test_simulated_judge_thresholds_the_customers_probability(world):
    cfg, personas, catalog = world
    judge = SimulatedJudge(FINANCE, cfg.seed, {o.offer_id for o in catalog}, threshold=0.5)
    offers = [catalog[i % len(catalog)] for i in range(len(personas))]
    decisions = judge(personas, [o.text for o in offers])
    expected = SimulatedCustomer(FINANCE, cfg.seed).probability(personas, [o.slots for o in offers]).diagonal()
    assert [d.probability for d in decisions] == pytest.approx(expected.tolist(), abs=1e-12)
    assert [d.accept for d in decisions] == [bool(p >= 0.5) for p in expected]
    assert 0 < sum(d.accept for d in decisions) < len(decisions), "both verdicts occur"
    assert all(d.error is None and d.reason.startswith("P(accept) = ") for d in decisions)


def test_simulated_judge_rejects_unparseable_and_off_catalog_text_with_the_reason(world):
    cfg, personas, catalog = world
    ids = {o.offer_id for o in catalog}
    judge = SimulatedJudge(FINANCE, cfg.seed, ids)
    outside = next(s for s in _all_slots() if offer_id(s) not in ids)
    decisions = judge(personas[:3], ["", "Buy a boat.", render_offer(FINANCE, outside, 0)])
    assert [d.accept for d in decisions] == [False, False, False]
    assert [d.probability for d in decisions] == [None, None, None]
    assert "unparseable offer: empty text" == decisions[0].reason
    assert decisions[1].reason.startswith("unparseable offer: names no finance offer")
    assert decisions[2].reason == f"off-catalog offer {offer_id(outside)}"
    with pytest.raises(ValueError, match="pairs must align"):
        judge(personas[:2], ["x"])


def _all_slots():
    from slm4offer.data.world import all_offer_slots

    return all_offer_slots(FINANCE)


@pytest.mark.parametrize("reply, ok", [
    ({"decision": "accept", "reason": "fits", "probability": 0.9}, True),
    ({"decision": " Reject ", "reason": "too pricey"}, True),
    ({"decision": "maybe", "reason": "unsure"}, False),
    ({"decision": "accept", "reason": ""}, False),
    ({"decision": "accept", "reason": "x", "probability": 1.5}, False),
    ({"decision": "accept", "reason": "x", "probability": True}, False),
])
def test_verdicts_are_validated(reply, ok):
    if ok:
        assert validate_verdict(reply)["decision"] in ("accept", "reject")
    else:
        with pytest.raises(ValueError):
            validate_verdict(reply)


def test_llm_judge_ends_every_item_with_one_verdict_or_one_error(tmp_path):
    faults = {1: ["429", "500", "ok"], 2: ["malformed", "ok"], 3: ["slow", "ok"],
              4: ["no_choices", "truncated"], 5: ["content:" + json.dumps({"decision": "yes"})] * 9,
              6: ["500"] * 9, 7: ["hang"] * 9}
    personas, offers = items(10)
    with serving(judge_answer, faults) as server:
        decisions = llm_judge(server.base_url, tmp_path)(personas, offers)
        assert len(decisions) == 10
        for i, d in enumerate(decisions):
            assert (d.accept is None) == (d.error is not None), "exactly one of verdict and error"
            if i in (5, 6, 7):
                assert d.accept is None and d.error
            else:
                assert d.accept == (i % 2 == 1) and d.reason == f"rule for {i}"
        assert "malformed reply" in decisions[5].error and "decision" in decisions[5].error
        assert "500" in decisions[6].error
        assert "Timeout" in decisions[7].error
        assert server.requests[1] == 3 and server.requests[6] == 4 and server.requests[0] == 1
    cached = list(tmp_path.rglob("*.json"))
    assert len(cached) == 7, "verdicts are cached, errors are not"
    assert not any("sk-test-secret" in f.read_text() for f in cached)


def test_llm_judge_resumes_from_its_cache(tmp_path):
    personas, offers = items(6)
    with serving(judge_answer, {2: ["500"] * 4}) as server:
        first = llm_judge(server.base_url, tmp_path)(personas, offers)
        assert first[2].error and sum(d.error is None for d in first) == 5
        sent = sum(server.requests.values())
        second = llm_judge(server.base_url, tmp_path)(personas, offers)  # e.g. after an interrupted run
        assert sum(server.requests.values()) == sent + 1, "only the failed item is asked again"
        assert [d.accept for d in second] == [i % 2 == 1 for i in range(6)]


def test_the_cache_key_includes_the_prompt(tmp_path):
    personas, offers = items(2)
    with serving(judge_answer) as server:
        llm_judge(server.base_url, tmp_path)(personas, offers)
        other = LLMJudge(llm_judge(server.base_url, tmp_path).chat,
                         prompt="Strict judge.\nCustomer: {persona}\nOffer: {offer}\nJSON verdict please.",
                         progress=False)
        other(personas, offers)
        assert sum(server.requests.values()) == 4
    with pytest.raises(ValueError, match=r"\{offer\}"):
        LLMJudge(other.chat, prompt="Customer: {persona}")


def test_llm_judge_from_config_sends_the_key_from_the_environment_only(project_root, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret")
    personas, offers = items(4)
    with serving(judge_answer) as server:
        cfg = load_config("smoke", judge_base_url=server.base_url, judge_model="judge-model", llm_backoff_s=0.01)
        judge = make_judge(cfg, "llm", progress=False)
        assert [d.accept for d in judge(personas, offers)] == [False, True, False, True]
        assert server.authorizations == {"Bearer sk-test-secret"}
    cached = list(cfg.llm_cache_dir.rglob("*.json"))
    assert len(cached) == 4 and not any("sk-test-secret" in f.read_text() for f in cached)
    assert "sk-test-secret" not in repr(cfg) and "sk-test-secret" not in str(cfg.to_dict())


def test_llm_judge_without_an_endpoint_fails_at_once(project_root, monkeypatch):
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match="llm judge needs an endpoint"):
        make_judge(load_config("smoke"), "llm")


def test_make_judge_by_name(world, monkeypatch, project_root):
    cfg = load_config("smoke")
    assert isinstance(make_judge(cfg, "simulated"), SimulatedJudge)
    with pytest.raises(ValueError, match="judge='oracle'"):
        make_judge(cfg, "oracle")
    with pytest.raises(FileNotFoundError, match="prompt file"):
        make_judge(load_config("smoke", judge_prompt="missing.txt", judge_base_url="http://127.0.0.1:9/v1"), "llm")
    from slm4offer.experiments.acceptance import evaluate

    with pytest.raises(ValueError, match="judge='psychic': must be one of simulated, learned, llm"):
        evaluate(load_config("smoke", judges="simulated,psychic"))  # refused before any training
    assert not list(project_root.glob("artifacts/smoke/model-*"))


def test_learned_judge_is_fit_on_training_personas_and_cached(world, project_root):
    from slm4offer.judges import learned as learned_judge

    cfg = load_config("smoke")
    judge = make_judge(cfg, "learned", progress=False)
    dd = build_dataset(cfg, progress=False)
    assert judge.info["train_personas"] == len(dd["train"])
    assert judge.info["train_pairs"] == sum(len(r["accepted_offers"]) + len(r["rejected_offers"]) for r in dd["train"])
    assert 0.5 < judge.info["validation_auc"] <= 1, "better than chance on unseen personas"
    test = list(dd["test"])
    offers = [r["accepted_offers"][0] for r in test]
    decisions = judge(test, offers)
    assert all(isinstance(d, Decision) and d.error is None and 0 <= d.probability <= 1 for d in decisions)
    assert [d.accept for d in decisions] == [d.probability >= cfg.accept_threshold for d in decisions]
    again = learned_judge.load_or_train(cfg, progress=False)  # from the cache
    assert np.allclose([d.probability for d in again(test, offers)], [d.probability for d in decisions])
    assert again.info == judge.info
