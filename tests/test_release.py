"""The shipped model: its card is written from the committed results, and it loads and generates
the same offers through slm4offer and through plain transformers."""

import json
from pathlib import Path

import pandas as pd
import torch
from transformers import AutoTokenizer, T5ForConditionalGeneration

from slm4offer.config import load_config
from slm4offer.model.generation import generate_offers
from slm4offer.model.modeling import load_trained
from slm4offer.model.offers import max_offer_tokens
from slm4offer.report.release import MODEL_FILES, model_card, release_dir

ROOT = Path(__file__).parents[1]
MODEL = ROOT / "models" / "slm4offer-finance-contrastive-default"


def test_the_model_card_is_the_one_the_committed_results_give(monkeypatch):
    monkeypatch.setenv("SLM4OFFER_ROOT", str(ROOT))
    cfg = load_config("default")
    assert release_dir(cfg) == MODEL and all((MODEL / name).is_file() for name in MODEL_FILES)
    info = json.loads((MODEL / "training_info.json").read_text())
    assert info["provenance"]["config"]["train_seed"] == cfg.train_seed and info["kind"] == "contrastive"
    assert (MODEL / "README.md").read_text() == model_card(cfg, info, ROOT / "results"), \
        "slm4offer release rewrites it"


def test_it_generates_the_same_offers_through_slm4offer_and_plain_transformers():
    personas = pd.read_csv(ROOT / "examples" / "user_data" / "interactions.csv")["persona"].drop_duplicates()
    personas = personas.head(8).tolist()
    ours, tokenizer = load_trained(MODEL)
    plain = T5ForConditionalGeneration.from_pretrained(MODEL)
    plain_tokenizer = AutoTokenizer.from_pretrained(MODEL)
    n = max_offer_tokens(MODEL)
    expected = [o[0] for o in generate_offers(ours, tokenizer, personas, n)]
    with torch.inference_mode():
        ids = plain.generate(**plain_tokenizer(personas, return_tensors="pt", padding=True), max_new_tokens=n)
    assert plain_tokenizer.batch_decode(ids, skip_special_tokens=True) == expected
    assert all(expected)
