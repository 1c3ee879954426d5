"""Offers for new personas from a trained model: `slm4offer offers` and `offers_for` in notebooks.

The personas file is CSV or JSONL with `persona_id` and `persona` (the text the model reads), or
attribute columns and a persona template (as `validate-data --persona-template`); every other
column is kept and written back beside the offer. The output format follows the output file's
suffix (.csv or .jsonl).

Two ways to choose offers:
- generate (`offers_for`): greedy, or with `rerank = N` the beam candidate closest to the persona
  in the model's learned embedding space. Each offer gets `offer_id` and `in_catalogue` from the
  catalogue the model was trained on (or the one given), matched by text with spacing and case
  aside, as the acceptance table matches your own data's offers: empty / False for text the
  catalogue does not contain, which a customer cannot be sent as it is.
- rank the catalogue (`rank_catalogue`): every catalogue offer scored by the same similarity, the
  `top_k` best kept per persona; the acceptance table's "catalog by similarity" system.
Both rely on the similarity only when a contrastive term trained it: an SFT model is refused.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
from transformers import PreTrainedTokenizerBase

from slm4offer.cache import CATALOG_FILE
from slm4offer.data.dataset import load_catalog
from slm4offer.data.userdata import (
    DataValidationError,
    load_offers,
    offer_key,
    persona_text,
    read_records,
    template_fields,
)
from slm4offer.data.world import Offer
from slm4offer.errors import CannotRun, InvalidValue, MissingFile
from slm4offer.files import write_text
from slm4offer.model.inference import catalogue_similarity, generate_offers, rerank
from slm4offer.model.modeling import load_trained
from slm4offer.model.offer_t5 import OfferT5
from slm4offer.model.training import INFO_FILE
from slm4offer.runtime import resolve_device

PERSONA_COLUMNS = ("persona_id", "persona")
DEFAULT_MAX_OFFER_TOKENS = 64


def read_personas(path: str | Path, persona_template: str | None = None) -> list[dict]:
    """The rows of a personas file; one `DataValidationError` names the file, row and field."""
    path = Path(path)
    template = persona_template or ""
    fields = template_fields(template) if template else ()
    rows: list[dict] = []
    first_row: dict[str, int] = {}
    for number, row in read_records(path, ("persona_id", *fields) if fields else PERSONA_COLUMNS):
        if fields:
            row = {**row, "persona": persona_text(path, number, template, row)}
        for field in PERSONA_COLUMNS:
            if not str(row[field] or "").strip():
                raise DataValidationError(path, number, field, "is empty")
        pid = str(row["persona_id"]).strip()
        if pid in first_row:
            raise DataValidationError(path, number, "persona_id", f"duplicate persona_id {pid!r} (first at line "
                                                                  f"{first_row[pid]})")
        first_row[pid] = number
        rows.append({**row, "persona_id": pid, "persona": str(row["persona"]).strip()})
    return rows


def model_folder(path: str | Path) -> Path:
    """The folder holding the weights: `path` itself, or its `final/` (a cached model's folder)."""
    path = Path(path)
    for candidate in (path, path / "final"):
        if (candidate / "config.json").is_file():
            return candidate
    raise MissingFile(f"{path}: no trained model here (expected config.json in it or in {path / 'final'})")


def max_offer_tokens(folder: Path) -> int:
    """The offer length the model was trained with (its training_info), else the default."""
    info = folder / INFO_FILE
    if info.is_file():
        config = json.loads(info.read_text()).get("provenance", {}).get("config", {})
        return int(config.get("max_offer_tokens", DEFAULT_MAX_OFFER_TOKENS))
    return DEFAULT_MAX_OFFER_TOKENS


def model_catalogue(folder: Path, catalog: str | Path | None = None) -> list[Offer] | None:
    """The catalogue offers are matched against: the file given, else the one the model was trained
    on (saved beside its weights), else None."""
    if catalog is not None:
        return load_offers(catalog)
    return load_catalog(folder) if (folder / CATALOG_FILE).is_file() else None


def check_similarity_trained(model: OfferT5, folder: Path, use: str) -> None:
    """Refuse to rank with an embedding space no contrastive term trained (an SFT model)."""
    info = folder / INFO_FILE
    label = json.loads(info.read_text()).get("label") if info.is_file() else None
    if not model.similarity_trained or label == "sft":
        raise CannotRun(f"{folder}: {use} needs a model trained with a contrastive term (lam > 0); this one is "
                        "the SFT baseline, whose similarity comes from an untrained projection. Use a "
                        "contrastive model, or generate without --rerank.")


def _load(model_dir: str | Path, device: str) -> tuple[Path, OfferT5, PreTrainedTokenizerBase]:
    folder = model_folder(model_dir)
    model, tokenizer = load_trained(folder)
    model.to(resolve_device(device))  # type: ignore[arg-type]  # transformers types `to` for models only
    return folder, model, tokenizer


def offers_for(model_dir: str | Path, personas: list[dict], rerank_candidates: int = 0, batch_size: int = 64,
               device: str = "auto", progress: bool = True, catalog: str | Path | None = None) -> list[dict]:
    """Each persona row with the model's `offer`, its `offer_id` and `in_catalogue` (when a catalogue
    is known), and with reranking its `similarity` and the `candidates`."""
    if rerank_candidates == 1 or rerank_candidates < 0:
        raise InvalidValue(f"rerank={rerank_candidates}: use 0 (greedy) or >= 2 candidates")
    folder, model, tokenizer = _load(model_dir, device)
    if rerank_candidates:
        check_similarity_trained(model, folder, "--rerank")
    offers = model_catalogue(folder, catalog)
    ids = {offer_key(o.text): o.offer_id for o in offers} if offers is not None else None
    texts = [row["persona"] for row in personas]
    n = max(rerank_candidates, 1)
    candidates = generate_offers(model, tokenizer, texts, max_offer_tokens(folder), num_beams=n,
                                 num_return_sequences=n, batch_size=batch_size, progress=progress)
    if rerank_candidates:
        chosen, scores = rerank(model, tokenizer, texts, candidates, batch_size=batch_size)
        extra = [{"similarity": max(s), "candidates": c} for s, c in zip(scores, candidates, strict=True)]
    else:
        chosen, extra = [c[0] for c in candidates], [{} for _ in candidates]
    keys = [offer_key(offer) for offer in chosen]
    catalogue = ({} if ids is None else {"offer_id": ids.get(k, ""), "in_catalogue": k in ids} for k in keys)
    return [{**row, "offer": offer, **cat, **more}
            for row, offer, cat, more in zip(personas, chosen, catalogue, extra, strict=True)]


def rank_catalogue(model_dir: str | Path, personas: list[dict], catalog: str | Path | None = None, top_k: int = 1,
                   device: str = "auto", progress: bool = True) -> list[dict]:
    """The `top_k` catalogue offers closest to each persona in the model's embedding space: one row
    per (persona, rank), best first, with `offer_id`, `offer` and `similarity`."""
    if top_k < 1:
        raise InvalidValue(f"top_k={top_k}: must be >= 1")
    folder, model, tokenizer = _load(model_dir, device)
    check_similarity_trained(model, folder, "ranking the catalogue")
    offers = model_catalogue(folder, catalog)
    if offers is None:
        raise MissingFile(f"{folder}: no catalogue saved with this model; give one with --catalog")
    sims = catalogue_similarity(model, tokenizer, [row["persona"] for row in personas], [o.text for o in offers],
                                max_offer_tokens=max_offer_tokens(folder), progress=progress)
    k = min(top_k, len(offers))
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return [{**row, "rank": r + 1, "offer_id": offers[j].offer_id, "offer": offers[j].text,
             "similarity": float(sims[i, j])}
            for i, row in enumerate(personas) for r, j in enumerate(order[i])]


def write_offers(rows: list[dict], path: str | Path) -> Path:
    """CSV (candidates joined by ' | ') or JSONL, by the suffix of `path`."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    if suffix != ".csv":
        raise InvalidValue(f"{path}: the output must end in .csv or .jsonl")
    out = io.StringIO()
    columns = list(dict.fromkeys(k for r in rows for k in r))
    writer = csv.DictWriter(out, columns, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: " | ".join(v) if isinstance(v, list) else v for k, v in r.items()})
    return write_text(path, out.getvalue())
