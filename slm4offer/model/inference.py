"""What a trained model does at inference: generate offers (greedy, beam search or sampling) and
score persona–offer pairs by the learned similarity, one pair, a catalogue, or beam candidates.

Training's validation criterion and the generation stage both use these, so the offers a model
is selected by are made as its test offers are.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from slm4offer.errors import InvalidValue
from slm4offer.model.offer_t5 import OfferT5, offer_labels


def _batches(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start:start + size]


@torch.inference_mode()
def generate_offers(model: OfferT5, tokenizer: PreTrainedTokenizerBase, personas: list[str],
                    max_new_tokens: int, num_beams: int = 1, num_return_sequences: int = 1,
                    batch_size: int = 64, max_persona_tokens: int = 512, progress: bool = False,
                    desc: str = "generate", sample_seed: int | None = None) -> list[list[str]]:
    """`num_return_sequences` offers per persona, best first, generated a batch at a time (`desc`
    labels the progress bar). With `sample_seed`, each offer is sampled from the model's full
    distribution (temperature 1, no top-k or top-p) instead, from that seed, leaving torch's global
    random state as it was."""
    model.eval()
    out: list[list[str]] = []
    chunks = list(_batches(personas, batch_size))
    sampling = {"do_sample": False, "num_beams": max(num_beams, num_return_sequences)} if sample_seed is None else {
        "do_sample": True, "num_beams": 1, "top_k": 0, "top_p": 1.0, "temperature": 1.0}
    with torch.random.fork_rng(devices=[]):
        if sample_seed is not None:
            torch.manual_seed(sample_seed)
        for chunk in tqdm(chunks, desc=desc, disable=not progress):
            enc = tokenizer(chunk, return_tensors="pt", padding=True, truncation=True,
                            max_length=max_persona_tokens).to(model.device)
            ids = model.generate(  # type: ignore[misc]  # OfferT5 is a generative model
                **enc, max_new_tokens=max_new_tokens, num_return_sequences=num_return_sequences, **sampling)
            texts = tokenizer.batch_decode(ids, skip_special_tokens=True)  # type: ignore[arg-type]  # token ids
            out.extend(texts[i:i + num_return_sequences] for i in range(0, len(texts), num_return_sequences))
    return out


@torch.inference_mode()
def pair_similarity(model: OfferT5, tokenizer: PreTrainedTokenizerBase, personas: list[str],
                    offers: list[str], batch_size: int = 64, max_persona_tokens: int = 512,
                    max_offer_tokens: int = 512, progress: bool = False, desc: str = "score pairs") -> np.ndarray:
    """Cosine similarity of each (persona, offer) pair in the model's embedding space.

    The offer is teacher-forced through the decoder while attending to its persona, exactly as
    the candidates of the contrastive loss are.
    """
    if len(personas) != len(offers):
        raise InvalidValue(f"{len(personas)} personas but {len(offers)} offers: pairs must align")
    model.eval()
    sims = []
    for start in tqdm(range(0, len(personas), batch_size), desc=desc, disable=not progress):
        enc = tokenizer(personas[start:start + batch_size], return_tensors="pt", padding=True,
                        truncation=True, max_length=max_persona_tokens).to(model.device)
        labels = offer_labels(tokenizer, offers[start:start + batch_size], max_offer_tokens).to(model.device)
        sims.append(model.similarity(enc["input_ids"], enc["attention_mask"], labels).cpu().numpy())
    return np.concatenate(sims) if sims else np.zeros(0)


@torch.inference_mode()
def catalogue_similarity(model: OfferT5, tokenizer: PreTrainedTokenizerBase, personas: list[str],
                         offers: list[str], pairs_per_batch: int = 2048, max_persona_tokens: int = 512,
                         max_offer_tokens: int = 512, progress: bool = False) -> np.ndarray:
    """(personas, offers): every persona's similarity with every offer of a catalogue, as
    `pair_similarity` scores one pair, with each persona encoded once per block of offers. At most
    `pairs_per_batch` pairs are decoded at once, however large the catalogue."""
    model.eval()
    blocks = [offer_labels(tokenizer, offers[start:start + pairs_per_batch], max_offer_tokens).to(model.device)
              for start in range(0, len(offers), pairs_per_batch)]
    step = max(1, pairs_per_batch // max(1, min(len(offers), pairs_per_batch)))
    rows = []
    for chunk in tqdm(list(_batches(personas, step)), desc="rank the catalogue", disable=not progress):
        enc = tokenizer(chunk, return_tensors="pt", padding=True, truncation=True,
                        max_length=max_persona_tokens).to(model.device)
        rows.append(np.concatenate([model.similarity_matrix(enc["input_ids"], enc["attention_mask"], labels)
                                    .cpu().numpy() for labels in blocks], axis=1))
    return np.concatenate(rows) if rows else np.zeros((0, len(offers)))


def rerank(model: OfferT5, tokenizer: PreTrainedTokenizerBase, personas: list[str],
           candidates: list[list[str]], **kwargs) -> tuple[list[str], list[list[float]]]:
    """For each persona, the candidate with the highest learned similarity (and all scores)."""
    pairs = [(p, c) for p, cands in zip(personas, candidates, strict=True) for c in cands]
    sims = pair_similarity(model, tokenizer, [p for p, _ in pairs], [c for _, c in pairs], **kwargs)
    chosen, scores, i = [], [], 0
    for cands in candidates:
        s = sims[i:i + len(cands)].tolist()
        i += len(cands)
        chosen.append(cands[int(np.argmax(s))])
        scores.append(s)
    return chosen, scores
