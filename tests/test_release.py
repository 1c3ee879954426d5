"""The shipped model: its card is written from the committed results, with the Hub's YAML header;
it loads and generates the same offers through slm4offer and plain transformers, and transformers
alone (no slm4offer, in a fresh process) loads its projection head and scores as slm4offer does."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from huggingface_hub import ModelCard
from transformers import AutoTokenizer, T5ForConditionalGeneration

from slm4offer.config import load_config
from slm4offer.model.inference import generate_offers, pair_similarity
from slm4offer.model.modeling import load_trained
from slm4offer.model.offers import max_offer_tokens
from slm4offer.report.release import AUTO_MAP, CODE_FILE, MODEL_FILES, model_card, release_dir, seed_rates

ROOT = Path(__file__).parents[1]
MODEL = ROOT / "models" / "slm4offer-finance-contrastive-default"


def test_the_model_card_is_the_one_the_committed_results_give(monkeypatch, project_root):
    cfg = load_config("default")  # its dataset is built under the test's own root
    monkeypatch.setattr("slm4offer.report.release.repo_root", lambda: ROOT)
    assert release_dir(cfg) == MODEL and all((MODEL / name).is_file() for name in (*MODEL_FILES, CODE_FILE))
    info = json.loads((MODEL / "training_info.json").read_text())
    assert info["provenance"]["config"]["train_seed"] == cfg.train_seed and info["kind"] == "contrastive"
    assert (MODEL / "README.md").read_text() == model_card(cfg, info, ROOT / "results", MODEL.name), \
        "slm4offer release rewrites it"
    meta = ModelCard.load(MODEL / "README.md").data
    assert (meta.license, meta.library_name, meta.pipeline_tag) == ("mit", "transformers", "text2text-generation")
    assert meta.model_name == MODEL.name
    rates = seed_rates(ROOT / "results", cfg.train_seed).set_index(["system", "judge"])
    for judge in ("simulated", "learned"):
        got = {r.metric_type: r.metric_value for r in meta.eval_results if r.metric_name.endswith(f"{judge} judge")}
        row = rates.loc[("contrastive", judge)]
        assert got == {"acceptance": round(row["thresholded rate"], 4), "acceptance_ci_low": round(row["ci_low"], 4),
                       "acceptance_ci_high": round(row["ci_high"], 4),
                       "expected_acceptance": round(row["expected acceptance"], 4)}
    assert json.loads((MODEL / "config.json").read_text())["auto_map"] == AUTO_MAP


def personas(n: int = 8) -> list[str]:
    path = ROOT / "examples" / "user_data" / "interactions.csv"
    return pd.read_csv(path)["persona"].drop_duplicates().head(n).tolist()


def test_it_generates_the_same_offers_through_slm4offer_and_plain_transformers():
    texts = personas()
    ours, tokenizer = load_trained(MODEL)
    plain = T5ForConditionalGeneration.from_pretrained(MODEL)
    plain_tokenizer = AutoTokenizer.from_pretrained(MODEL)
    n = max_offer_tokens(MODEL)
    expected = [o[0] for o in generate_offers(ours, tokenizer, texts, n)]
    with torch.inference_mode():
        ids = plain.generate(**plain_tokenizer(texts, return_tensors="pt", padding=True), max_new_tokens=n)
    assert plain_tokenizer.batch_decode(ids, skip_special_tokens=True) == expected
    assert all(expected)


def test_transformers_alone_loads_the_projection_and_scores_as_slm4offer(tmp_path):
    persona = personas(1)[0]
    catalogue = [json.loads(line)["offer"] for line in (MODEL / "catalog.jsonl").read_text().splitlines()]
    script = f"""
import json, sys
sys.modules["slm4offer"] = None  # any import of the package fails: the folder must be enough
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer
model = AutoModelForSeq2SeqLM.from_pretrained({str(MODEL)!r}, trust_remote_code=True)
tokenizer = AutoTokenizer.from_pretrained({str(MODEL)!r})
assert type(model).__name__ == "OfferT5" and model.projection is not None
print(json.dumps(model.score_offers(tokenizer, {persona!r}, {catalogue!r})))
"""
    env = {"HF_HOME": str(tmp_path / "hf"), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    scores = np.array(json.loads(done.stdout.strip().splitlines()[-1]))
    model, tokenizer = load_trained(MODEL)
    expected = pair_similarity(model, tokenizer, [persona] * len(catalogue), catalogue)
    assert np.allclose(scores, expected, atol=1e-5) and np.argmax(scores) == np.argmax(expected)
