"""Cache keys: which settings, data and code decide each stage's output, hashed into a short name.

Cached artifacts live under `artifacts/<profile>/` and are named by `stage_hash`, so a stage
reruns only when its own inputs change. A stage's key covers the config fields it reads
(`STAGE_FIELDS`, its upstream stages' included), the domain file or your own dataset's content,
and its source code (`STAGE_CODE`). Code is hashed by meaning: the syntax tree with comments and
docstrings left out, so editing an explanation retrains nothing while editing a statement does.
`tests/test_cache.py` checks that every module a stage imports and every field its code reads is
in its key or on an allow-list that says why it cannot change the output.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

from slm4offer.domains import domain_digest
from slm4offer.errors import InvalidValue

if TYPE_CHECKING:
    from slm4offer.config import Config

PACKAGE = Path(__file__).parent
# The files of a cached dataset folder (`datasets.save_to_disk` writes the rest).
CATALOG_FILE, CARD_FILE, PROVENANCE_FILE = "catalog.jsonl", "data_card.json", "provenance.json"

# Fields each stage reads; a stage's key covers these plus its upstream stages' fields.
STAGE_FIELDS: dict[str, tuple[str, ...]] = {
    "dataset": ("domain", "seed", "generator", "n_personas", "catalog_size", "offers_per_round",
                "max_rounds", "val_fraction", "test_fraction"),
}
STAGE_FIELDS["train"] = STAGE_FIELDS["dataset"] + (
    "init", "pretrained_model", "vocab_size", "d_model", "d_ff", "num_layers", "num_heads", "d_kv",
    "dropout", "max_persona_tokens", "max_offer_tokens", "lam", "tau", "hard_negatives", "negatives",
    "in_batch_negatives",
    "pooling", "projection_dim", "train_seed", "epochs", "batch_size", "grad_accum", "learning_rate",
    "weight_decay", "warmup_ratio", "early_stopping_patience", "logs_per_epoch", "bf16")
STAGE_FIELDS["generate"] = STAGE_FIELDS["train"] + ("num_beams", "rerank_candidates")
STAGE_FIELDS["judge"] = STAGE_FIELDS["dataset"]  # the learned judge; the threshold applies later
LLM_GENERATOR_FIELDS = ("llm_model", "llm_temperature")  # where the dataset came from an LLM

# Modules (paths inside the package) whose code decides a stage's output. The LLM client counts
# only where the dataset came from it (generator='openai').
STAGE_CODE: dict[str, tuple[str, ...]] = {
    "dataset": ("domains/__init__.py", "data/world.py", "data/dataset.py"),
}
LLM_GENERATOR_CODE = ("llm.py", "data/llm_generator.py")
STAGE_CODE["judge"] = STAGE_CODE["dataset"] + ("data/userdata.py", "judges/base.py", "judges/learned.py")
# Training keeps the epoch its validation criterion (the learned judge on generated offers) picks.
STAGE_CODE["train"] = STAGE_CODE["judge"] + (
    "judges/__init__.py", "model/offer_t5.py", "model/modeling.py", "model/losses.py", "model/distributed.py",
    "model/inference.py", "model/selection.py", "model/training.py")
STAGE_CODE["generate"] = STAGE_CODE["train"] + ("model/generation.py",)


def stage_hash(cfg: Config, stage: str, **extra) -> str:
    """Short hash of the fields (and domain file or dataset, code, `extra`) that decide `stage`'s output."""
    if stage not in STAGE_FIELDS:
        raise InvalidValue(f"unknown stage {stage!r} (known: {', '.join(STAGE_FIELDS)})")
    names = list(STAGE_FIELDS[stage])
    if cfg.generator == "openai":
        names += LLM_GENERATOR_FIELDS
    payload = {n: getattr(cfg, n) for n in names} | extra
    if cfg.data:  # your own dataset: its content decides, not the synthetic world's settings
        payload = {n: v for n, v in payload.items() if n not in STAGE_FIELDS["dataset"]}
        payload["data_digest"] = dataset_fingerprint(cfg.dataset_dir)
    else:
        payload["domain_digest"] = domain_digest(cfg.domain)
    payload["code_digest"] = code_digest(STAGE_CODE[stage] + (LLM_GENERATOR_CODE if cfg.generator == "openai" else ()))
    blob = json.dumps(payload, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def code_digest(files: tuple[str, ...]) -> str:
    """SHA-256 of the modules' syntax trees without docstrings (comments are not in a tree)."""
    return hashlib.sha256("\n".join(_meaning(PACKAGE / f) for f in files).encode()).hexdigest()


def _meaning(path: Path) -> str:
    return _source_meaning(path.read_text(), str(path))


@functools.lru_cache(maxsize=64)
def _source_meaning(source: str, filename: str) -> str:
    """The syntax tree of `source` without docstrings, dumped; memoised on the text, because every
    cache lookup hashes a stage's modules and parsing them costs a tenth of a second."""
    tree = ast.parse(source, filename=filename)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, annotate_fields=False, include_attributes=False)


def dataset_fingerprint(dataset_dir: str | Path) -> str:
    """SHA-256 of a saved dataset's rows (every split) and catalog: equal data, equal hash, any machine."""
    path = Path(dataset_dir)
    return _fingerprint(str(path.resolve()), (path / "dataset_dict.json").stat().st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _fingerprint(path: str, _mtime_ns: int) -> str:
    import datasets  # pyarrow and friends: loaded only when a dataset is hashed

    dd = datasets.load_from_disk(path)
    digest = hashlib.sha256()
    for split in sorted(dd):
        digest.update(split.encode())
        for row in dd[split].to_list():
            digest.update(json.dumps(row, sort_keys=True, ensure_ascii=False).encode() + b"\n")
    digest.update((Path(path) / CATALOG_FILE).read_bytes())
    return digest.hexdigest()
