"""The generation stage, and the analyses of a model's similarities on a dataset split.

`generate(cfg, kind)` is the stage: offers for the test personas from the trained model, saved
beside it as JSON lines named by the generation settings, so a rerun reads them back.
With `rerank_candidates = N`, beam search returns N candidates and the one closest to the
persona in the learned embedding space is kept (the contrastive objective's use at inference).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from transformers import PreTrainedTokenizerBase

from slm4offer import provenance
from slm4offer.cache import stage_hash
from slm4offer.config import Config
from slm4offer.data.dataset import build_dataset
from slm4offer.data.world import parse_offer
from slm4offer.domains import Domain
from slm4offer.files import write_text
from slm4offer.model.inference import generate_offers, pair_similarity, rerank
from slm4offer.model.modeling import resolve_source
from slm4offer.model.offer_t5 import OfferT5
from slm4offer.model.training import kind_config, model_dir, train


def generations_path(cfg: Config, split: str) -> Path:
    """Where `generate` keeps the offers of a kind's config for `split`: beside its model, named by
    the generation settings; known without loading (or training) the model."""
    source = resolve_source(cfg)
    digest = stage_hash(cfg, "generate", source=source.location or "scratch")
    return model_dir(cfg, source) / f"generations-{split}-{digest}.jsonl"


def generate(cfg: Config, kind: str, split: str = "test", progress: bool = True) -> list[dict]:
    """Offers generated for every persona of `split` by the `kind` model, cached beside it.

    Rows: persona_id, persona, offer (the kept generation), and with reranking the candidates
    and their similarities.
    """
    cfg = kind_config(cfg, kind)
    path = generations_path(cfg, split)
    if path.is_file():  # cached: the model need not be loaded
        return [json.loads(line) for line in path.read_text().splitlines()[1:]]
    trained = train(cfg, kind, progress=progress)
    rows = build_dataset(cfg, progress=progress)[split]
    personas = list(rows["persona"])
    n = max(cfg.rerank_candidates, 1)
    settings = dict(max_new_tokens=cfg.max_offer_tokens, num_beams=cfg.num_beams,
                    batch_size=cfg.generation_batch_size, max_persona_tokens=cfg.max_persona_tokens)
    candidates = generate_offers(trained.model, trained.tokenizer, personas, num_return_sequences=n,
                                 progress=progress, desc=f"generate: {kind} seed {cfg.train_seed}, {split}",
                                 **settings)
    records = [{"persona_id": pid, "persona": p} for pid, p in zip(rows["persona_id"], personas, strict=True)]
    if cfg.rerank_candidates:
        chosen, scores = rerank(trained.model, trained.tokenizer, personas, candidates,
                                batch_size=cfg.generation_batch_size,
                                max_persona_tokens=cfg.max_persona_tokens, max_offer_tokens=cfg.max_offer_tokens)
        for r, offer, cands, s in zip(records, chosen, candidates, scores, strict=True):
            r.update(offer=offer, candidates=cands, similarities=s)
    else:
        for r, cands in zip(records, candidates, strict=True):
            r["offer"] = cands[0]
    header = {"provenance": provenance.collect(cfg, stage="generate", model=trained.label,
                                               model_source=trained.info["source_kind"],
                                               model_dir=trained.path.parent.name, split=split,
                                               generations_file=path.name)}
    write_text(path, "".join(json.dumps(x) + "\n" for x in [header, *records]))
    return records


def score_split(model: OfferT5, tokenizer: PreTrainedTokenizerBase, split, batch_size: int = 64,
                max_persona_tokens: int = 512, max_offer_tokens: int = 512) -> pd.DataFrame:
    """Similarity of every (persona, shown offer) pair of a dataset split, labelled accepted or not."""
    pairs = [(row["persona_id"], row["persona"], oid, text, accepted)
             for row in split
             for accepted, ids, texts in ((True, row["accepted_offer_ids"], row["accepted_offers"]),
                                          (False, row["rejected_offer_ids"], row["rejected_offers"]))
             for oid, text in zip(ids, texts, strict=True)]
    df = pd.DataFrame(pairs, columns=["persona_id", "persona", "offer_id", "offer", "accepted"])
    df["similarity"] = pair_similarity(model, tokenizer, df["persona"].tolist(), df["offer"].tolist(),
                                       batch_size, max_persona_tokens, max_offer_tokens)
    return df


def separation(scores: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per model state: mean similarity of accepted and of rejected pairs, and the AUC of telling
    them apart by similarity (0.5 = no signal), from `score_split` frames."""
    from sklearn.metrics import roc_auc_score

    return pd.DataFrame({name: {"mean similarity, accepted": df.loc[df["accepted"], "similarity"].mean(),
                                "mean similarity, rejected": df.loc[~df["accepted"], "similarity"].mean(),
                                "AUC accepted vs rejected": roc_auc_score(df["accepted"], df["similarity"]),
                                "pairs": len(df)} for name, df in scores.items()})


def generation_summary(rows: list[dict], domain: Domain, catalog_ids: set[str]) -> dict:
    """How well-formed and how varied the generations are (acceptance is the judges' job)."""
    parsed = [parse_offer(domain, r["offer"]) for r in rows]
    valid = [p.offer_id for p in parsed if p.offer_id]
    return {"personas": len(rows),
            "names_a_valid_offer": len(valid) / len(rows) if rows else float("nan"),
            "offer_in_catalog": sum(o in catalog_ids for o in valid) / len(rows) if rows else float("nan"),
            "distinct_offers": len(set(valid)),
            "catalog_size": len(catalog_ids),
            "most_common_share": (max(valid.count(o) for o in set(valid)) / len(rows)) if valid else 0.0}


def sample_generations(rows: list[dict], split, n: int = 5) -> pd.DataFrame:
    """A few personas with the generated offer beside what they accepted and rejected."""
    by_id = {r["persona_id"]: r for r in split}
    return pd.DataFrame([{"persona": r["persona"], "generated offer": r["offer"],
                          "accepted (history)": " | ".join(by_id[r["persona_id"]]["accepted_offers"]),
                          "rejected (history)": " | ".join(by_id[r["persona_id"]]["rejected_offers"])}
                         for r in rows[:n]])
