"""Equal-budget tuning: one grid, one epoch cap, one seed and one criterion for both methods.

Every point of `GRID` trains SFT and contrastive at each width asked, on `TUNING_SEED` (never an
evaluation seed: the acceptance table's seeds are train_seed, train_seed + 1, ...), with the
profile's epoch cap and schedule, and keeps its best epoch on the validation criterion
(`model.selection`). Per kind and width the point with the highest criterion is chosen (the
first in grid order among equals) and written to the tuning record (`model.tuned`), from which
`make all` trains. Test personas are never read.

An equal-compute SFT control trains SFT for as many epochs as cost what the contrastive cap
costs, over the same grid: whether SFT given contrastive's compute catches up, on the same
criterion. Cost is counted in training FLOPs (forward and backward of a training batch, counted
by torch's FlopCounterMode at that width), which no other load on the machine can move, rather
than in seconds.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import pandas as pd
from torch.utils.flop_counter import FlopCounterMode

from slm4offer import provenance
from slm4offer.config import Config
from slm4offer.data.dataset import build_dataset
from slm4offer.errors import InvalidValue
from slm4offer.experiments.size_study import width_shape
from slm4offer.model import tuned
from slm4offer.model.losses import dual_loss, loss_weights
from slm4offer.model.modeling import build_model, resolve_source
from slm4offer.model.selection import ABOUT
from slm4offer.model.training import (
    KINDS,
    OfferCollator,
    kind_config,
    make_examples,
    offer_keys,
    tokenizer_corpus,
    train,
)

GRID: dict[str, tuple] = {"learning_rate": (3e-4, 1e-3, 3e-3)}
TUNING_SEED = 1000
EQUAL_COMPUTE = "sft, equal compute"


def points() -> list[dict]:
    return [dict(zip(GRID, values, strict=True)) for values in itertools.product(*GRID.values())]


def search_config(cfg: Config, width: int, point: dict) -> Config:
    """The config of one grid point: the tuning seed, the width's shape, the point's settings."""
    if cfg.train_seed <= TUNING_SEED < cfg.train_seed + cfg.eval_seeds:
        raise InvalidValue(f"train_seed={cfg.train_seed}, eval_seeds={cfg.eval_seeds}: the evaluation seeds include "
                           f"the tuning seed {TUNING_SEED}")
    return dataclasses.replace(cfg, tuning="off", train_seed=TUNING_SEED, **width_shape(cfg, width), **point)


def flop_ratio(cfg: Config, batches: int = 4) -> float:
    """Training FLOPs of the contrastive loss per SFT FLOP, on the first `batches` training batches
    of `cfg` (forward and backward)."""
    dd = build_dataset(cfg, progress=False)
    model, tokenizer = build_model(cfg, resolve_source(cfg), tokenizer_texts=tokenizer_corpus(dd["train"]))
    examples = make_examples(dd["train"], tokenizer, offer_keys(dd), cfg)
    collate = OfferCollator(tokenizer.pad_token_id)
    flops = {}
    for kind, weights in (("sft", {"infonce": 0.0, "ce": 1.0}), ("contrastive", loss_weights(cfg))):
        with FlopCounterMode(display=False) as counter:
            for start in range(0, batches * cfg.batch_size, cfg.batch_size):
                batch = collate(examples[start:start + cfg.batch_size])
                dual_loss(model, batch, weights, cfg.tau, cfg.negatives, cfg.in_batch_negatives).loss.backward()
        flops[kind] = counter.get_total_flops()
    return flops["contrastive"] / flops["sft"]


def _row(kind: str, width: int, point: dict, info: dict) -> dict:
    selection = info["selection"]
    return {"kind": kind, "d_model": width, **point, "criterion": selection["best_value"],
            "best_epoch": selection["best_epoch"], "epochs_run": selection["epochs_run"],
            "epoch_cap": info["provenance"]["config"]["epochs"], "train_seconds": info["train_seconds_this_run"],
            "seconds_per_epoch": info["train_seconds_this_run"] / max(selection["epochs_run"], 1)}


def run_search(cfg: Config, widths: list[int], equal_compute: bool = True, progress: bool = True) -> pd.DataFrame:
    """One row per (kind, width, grid point): the best validation criterion, its epoch, the time."""
    rows = []
    for width in widths:
        for kind, point in itertools.product(KINDS, points()):
            rows.append(_row(kind, width, point, train(search_config(cfg, width, point), kind, progress=progress).info))
        if equal_compute:
            ratio = flop_ratio(search_config(cfg, width, points()[0]))
            epochs = math.ceil(cfg.epochs * ratio)
            for point in points():
                longer = dataclasses.replace(search_config(cfg, width, point), epochs=epochs)
                rows.append(_row(EQUAL_COMPUTE, width, point, train(longer, "sft", progress=progress).info)
                            | {"flop_ratio": ratio})
    return choose(pd.DataFrame(rows))


def choose(table: pd.DataFrame) -> pd.DataFrame:
    """`table` with `chosen`: per kind and width, the row of the highest criterion (the first in
    grid order among equals)."""
    best = table.groupby(["kind", "d_model"], sort=False)["criterion"].transform("max")
    first = table[table["criterion"] == best].groupby(["kind", "d_model"], sort=False).head(1).index
    return table.assign(chosen=table.index.isin(first))


def record(cfg: Config, table: pd.DataFrame) -> dict:
    """The tuning record: each (kind, width)'s chosen settings keyed by its exact setup, merged with
    an earlier record's other widths."""
    previous = tuned.read_record(cfg) or {"choices": []}
    widths = set(table["d_model"])
    choices = [c for c in previous["choices"] if c["d_model"] not in widths]
    for row in table[table["chosen"] & table["kind"].isin(KINDS)].itertuples():
        point = {name: float(getattr(row, name)) for name in GRID}
        setup = kind_config(dataclasses.replace(cfg, tuning="off", **width_shape(cfg, row.d_model)), row.kind)
        choices.append({"kind": row.kind, "d_model": int(row.d_model), "chosen": point,
                        "criterion": float(row.criterion), "best_epoch": float(row.best_epoch),
                        "setup": tuned.setup_key(setup)})
    return {"grid": {k: list(v) for k, v in GRID.items()}, "tuning_seed": TUNING_SEED, "epoch_cap": cfg.epochs,
            "early_stopping_patience": cfg.early_stopping_patience, "criterion": ABOUT,
            "choices": sorted(choices, key=lambda c: (c["d_model"], KINDS.index(c["kind"]))),
            "provenance": provenance.collect(cfg, with_time=True, command="tune")}
