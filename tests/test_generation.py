import json

import numpy as np
import pytest
from conftest import copy_smoke_artifacts

from slm4offer.config import load_config
from slm4offer.data.dataset import build_dataset
from slm4offer.model import generation
from slm4offer.model.generation import generate
from slm4offer.model.inference import generate_offers, pair_similarity, rerank
from slm4offer.model.training import train


@pytest.fixture(scope="module")
def trained(tmp_path_factory, smoke_template):
    root = tmp_path_factory.mktemp("root")
    copy_smoke_artifacts(smoke_template, root)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SLM4OFFER_ROOT", str(root))
        cfg = load_config("smoke")
        result = train(cfg, "contrastive", progress=False)
        personas = list(build_dataset(cfg, progress=False)["test"]["persona"])[:8]
    return result, personas


def test_batched_generation_equals_one_at_a_time(trained):
    result, personas = trained
    batched = generate_offers(result.model, result.tokenizer, personas, max_new_tokens=40, batch_size=8)
    single = [generate_offers(result.model, result.tokenizer, [p], max_new_tokens=40)[0] for p in personas]
    assert batched == single
    assert all(len(offers) == 1 and offers[0] for offers in batched)


def test_beam_search_returns_distinct_candidates_best_first(trained):
    result, personas = trained
    beams = generate_offers(result.model, result.tokenizer, personas[:2], max_new_tokens=40,
                            num_beams=4, num_return_sequences=3)
    assert [len(c) for c in beams] == [3, 3] and all(len(set(c)) == 3 for c in beams)


def test_similarity_is_a_cosine_per_pair(trained):
    result, personas = trained
    offers = ["Open a savings account with no monthly fees, available by email."] * len(personas)
    sims = pair_similarity(result.model, result.tokenizer, personas, offers, batch_size=3)
    assert sims.shape == (len(personas),) and np.all(np.abs(sims) <= 1 + 1e-6)
    alone = pair_similarity(result.model, result.tokenizer, personas[:1], offers[:1])
    assert alone[0] == pytest.approx(sims[0], abs=1e-5)  # batching does not change a pair's score
    with pytest.raises(ValueError, match="pairs must align"):
        pair_similarity(result.model, result.tokenizer, personas, offers[:2])


def test_rerank_keeps_the_most_similar_candidate(trained):
    result, personas = trained
    candidates = generate_offers(result.model, result.tokenizer, personas[:3], max_new_tokens=40,
                                 num_beams=4, num_return_sequences=4)
    chosen, scores = rerank(result.model, result.tokenizer, personas[:3], candidates)
    for pick, cands, s in zip(chosen, candidates, scores, strict=True):
        assert pick == cands[int(np.argmax(s))]


def test_generate_stage_saves_with_provenance_and_reads_back(smoke_models, monkeypatch):
    cfg = load_config("smoke", rerank_candidates=3, num_beams=3)
    rows = generate(cfg, "contrastive", progress=False)
    test = build_dataset(cfg, progress=False)["test"]
    assert [r["persona_id"] for r in rows] == list(test["persona_id"])
    for r in rows:
        assert len(r["candidates"]) == 3 and r["offer"] == r["candidates"][int(np.argmax(r["similarities"]))]
    path = next(smoke_models.glob("artifacts/smoke/model-*-contrastive-*/generations-test-*.jsonl"))
    header = json.loads(path.read_text().splitlines()[0])["provenance"]
    assert header["model"] == "contrastive" and header["model_source"] == "scratch"
    assert header["config"]["rerank_candidates"] == 3

    def fail(*args, **kwargs):
        raise AssertionError("generation ran again instead of reading the cache")

    monkeypatch.setattr(generation, "generate_offers", fail)
    assert generate(cfg, "contrastive", progress=False) == rows


def test_separation_reports_auc_of_accepted_over_rejected():
    import pandas as pd

    from slm4offer.model.generation import separation

    perfect = pd.DataFrame({"accepted": [True, True, False, False], "similarity": [0.9, 0.8, 0.1, 0.2]})
    flipped = perfect.assign(similarity=-perfect["similarity"])
    table = separation({"perfect": perfect, "flipped": flipped})
    assert table.loc["AUC accepted vs rejected"].tolist() == [1.0, 0.0]
    assert table.loc["mean similarity, accepted", "perfect"] == pytest.approx(0.85)
    assert table.loc["pairs"].tolist() == [4, 4]
