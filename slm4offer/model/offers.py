"""Offers for new personas from a trained model: `slm4offer offers` and `offers_for` in notebooks.

The personas file is CSV or JSONL with `persona_id` and `persona` (the text the model reads);
every other column is kept and written back beside the offer. The output format follows the
output file's suffix (.csv or .jsonl). With `rerank = N`, beam search proposes N offers and the
one closest to the persona in the model's learned embedding space is kept (its similarity is
written too), as in the acceptance table's reranked systems.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from slm4offer.data.userdata import DataValidationError, read_records
from slm4offer.errors import InvalidValue, MissingFile
from slm4offer.files import write_text
from slm4offer.model.generation import generate_offers, rerank
from slm4offer.model.modeling import load_trained
from slm4offer.model.training import INFO_FILE
from slm4offer.runtime import resolve_device

PERSONA_COLUMNS = ("persona_id", "persona")
DEFAULT_MAX_OFFER_TOKENS = 64


def read_personas(path: str | Path) -> list[dict]:
    """The rows of a personas file; one `DataValidationError` names the file, row and field."""
    path = Path(path)
    rows: list[dict] = []
    first_row: dict[str, int] = {}
    for number, row in read_records(path, PERSONA_COLUMNS):
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


def offers_for(model_dir: str | Path, personas: list[dict], rerank_candidates: int = 0, batch_size: int = 64,
               device: str = "auto", progress: bool = True) -> list[dict]:
    """Each persona row with the model's `offer` (and with reranking, `candidates` and `similarity`)."""
    if rerank_candidates == 1 or rerank_candidates < 0:
        raise InvalidValue(f"rerank={rerank_candidates}: use 0 (greedy) or >= 2 candidates")
    folder = model_folder(model_dir)
    model, tokenizer = load_trained(folder)
    model.to(resolve_device(device))  # type: ignore[arg-type]  # transformers types `to` for models only
    texts = [row["persona"] for row in personas]
    n = max(rerank_candidates, 1)
    candidates = generate_offers(model, tokenizer, texts, max_offer_tokens(folder), num_beams=n,
                                 num_return_sequences=n, batch_size=batch_size, progress=progress)
    if not rerank_candidates:
        return [{**row, "offer": c[0]} for row, c in zip(personas, candidates, strict=True)]
    chosen, scores = rerank(model, tokenizer, texts, candidates, batch_size=batch_size)
    return [{**row, "offer": offer, "similarity": max(s), "candidates": c}
            for row, offer, s, c in zip(personas, chosen, scores, candidates, strict=True)]


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
