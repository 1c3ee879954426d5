"""The settings a tuning search chose (`slm4offer tune`, `make tune`), and how training uses them.

The search writes one record per profile, `results/<profile>/tuning.json` (the default
profile's: `results/tuning.json`, committed). With `tuning='auto'`, a kind's config takes the
chosen learning rate when the record holds a search run on that very setup: the same kind, the
same data (world settings, or your dataset's content) and the same training settings but for the
learning rate and the seed. Any other config (an ablation, a width that was not searched, another
world) keeps its own learning rate, and its training info says so.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from slm4offer.cache import STAGE_FIELDS, dataset_fingerprint
from slm4offer.config import Config, data_name

TUNED_FIELDS = ("learning_rate",)  # what a search chooses
# Not part of the setup a choice belongs to: the searched settings, the seed, and how often to log.
FREE_FIELDS = (*TUNED_FIELDS, "train_seed", "logs_per_epoch")
RECORD_FILE = "tuning.json"


def record_path(cfg: Config) -> Path:
    return cfg.results_dir / RECORD_FILE


def setup_key(cfg: Config) -> dict:
    """What a tuned choice belongs to: the data and every training setting but the free ones."""
    fields = [f for f in STAGE_FIELDS["train"] if f not in FREE_FIELDS]
    data = {"data_digest": dataset_fingerprint(cfg.dataset_dir)} if cfg.data else {}  # your data: its content
    return {"data": data_name(cfg), "profile": cfg.profile, **data, **{f: getattr(cfg, f) for f in fields}}


def read_record(cfg: Config) -> dict | None:
    path = record_path(cfg)
    return json.loads(path.read_text()) if path.is_file() else None


def choice(cfg: Config) -> dict | None:
    """The record's choice for exactly this setup ({field: value, ...}), or None."""
    record = read_record(cfg)
    if record is None:
        return None
    key = setup_key(cfg)
    return next((c["chosen"] for c in record["choices"] if c["setup"] == key), None)


def apply(cfg: Config) -> Config:
    """`cfg` with the tuned settings of its setup when `tuning='auto'` and a search chose them."""
    if cfg.tuning != "auto":
        return cfg
    chosen = choice(cfg)
    return dataclasses.replace(cfg, **chosen) if chosen else cfg
