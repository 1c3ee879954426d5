"""Loss curves from the Trainer's log history (the paper's Figure 6): one row per epoch, train and
validation parts, the epoch where a curve settles, and the epoch each model's selection kept."""

from __future__ import annotations

import dataclasses

import pandas as pd

from slm4offer.config import Config
from slm4offer.model.training import KINDS, train


def epoch_table(log_history: list[dict]) -> pd.DataFrame:
    """Per epoch: the training means (`train_epoch_*`) and validation values (`eval_*`) of the
    loss and its parts (CE, InfoNCE), as logged at each epoch's evaluation."""
    rows = [{"epoch": int(round(log["epoch"])),
             **{k: v for k, v in log.items() if k.startswith(("train_epoch_", "eval_"))
                and not k.endswith(("runtime", "per_second"))}}
            for log in log_history if "eval_loss" in log]
    return pd.DataFrame(rows).set_index("epoch")


def stable_epoch(values: pd.Series, tol: float = 0.01, window: int = 2) -> int | None:
    """The first epoch from which the curve stays within `tol` (relative) of its value there for
    at least `window` more epochs and until the end of training; None if it never settles.

    `values` is indexed by epoch. This is our reading of "the loss stabilises" (the paper gives
    no rule): a curve still falling by more than 1% an epoch has not settled.
    """
    epochs = list(values.index)
    for i, epoch in enumerate(epochs):
        later = values.iloc[i + 1:]
        if len(later) >= window and ((later - values.iloc[i]).abs() <= tol * abs(values.iloc[i])).all():
            return int(epoch)
    return None


def stabilisation(tables: dict[str, pd.DataFrame], tol: float = 0.01, window: int = 2) -> pd.DataFrame:
    """Per model and validation loss part: the epoch it settles at (or None), its last value and
    its relative change over the last epoch."""
    rows = []
    for model, table in tables.items():
        for column in [c for c in ("eval_loss", "eval_ce", "eval_infonce") if c in table]:
            values = table[column].dropna()
            rows.append({"model": model, "curve": column, "epochs": len(values),
                         "stable from epoch": stable_epoch(values, tol, window),
                         "last value": values.iloc[-1],
                         "last change": values.iloc[-1] / values.iloc[-2] - 1 if len(values) > 1 else float("nan")})
    return pd.DataFrame(rows)


def selected_epochs(cfg: Config, seeds: list[int]) -> pd.DataFrame:
    """Per model (kind, training seed): the learning rate it trained with, the epoch selection kept,
    its validation criterion, and the epochs run against the cap. A kept epoch at the cap is a run
    still improving when it had to stop; models are loaded from the cache, or trained."""
    rows = []
    for seed in seeds:
        for kind in KINDS:
            info = train(dataclasses.replace(cfg, train_seed=seed), kind, progress=False).info
            chosen, tuning = info["selection"], info.get("tuning", {})
            rows.append({"kind": kind, "seed": seed, "learning rate": tuning.get("learning_rate", cfg.learning_rate),
                         "searched": bool(tuning.get("tuned", False)), "kept epoch": chosen["best_epoch"],
                         "criterion": chosen["best_value"], "epochs run": chosen["epochs_run"], "cap": cfg.epochs})
    return pd.DataFrame(rows)
