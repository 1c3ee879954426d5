"""Layer-wise heavy-tailed self-regularisation (HT-SR): the paper's Table 1 (under-fitted layers).

WeightWatcher fits a power law to the eigenvalue spectrum of each weight matrix; its exponent
alpha is small (2-6) for well-trained layers and large for layers that learned little, so
alpha > 6 marks a layer as under-fitted (the paper: 14 such layers after SFT, 11 after
contrastive training). Two corrections the raw WeightWatcher table needs:
T5's tied embedding appears four times (shared, encoder and decoder embed_tokens, lm_head), so
rows are de-duplicated by the weight's storage; and matrices with fewer than `min_evals`
eigenvalues (the 32 x heads relative-position biases) are left out. A random initialisation
already reads as "under-trained", so every count is shown beside the untrained model's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging

import pandas as pd
import torch

from slm4offer import paper
from slm4offer.config import Config
from slm4offer.model.training import load_initial, train
from slm4offer.stats import seed_spread

MIN_EVALS = 50  # WeightWatcher's README advice; fewer eigenvalues give no stable fit


def _weightwatcher():
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        import weightwatcher  # prints about missing GPU SVD backends when imported

    logging.getLogger("weightwatcher").setLevel(logging.ERROR)
    return weightwatcher


def layer_alphas(model: torch.nn.Module, threshold: float = 6.0, min_evals: int = MIN_EVALS) -> pd.DataFrame:
    """One row per distinct weight matrix of the T5 itself: its module name, shape (N x M), alpha,
    and whether alpha > `threshold` (under-fitted). Our embedding projection, which the paper's
    T5-Small does not have and SFT never trains, is left out."""
    ww = _weightwatcher()
    with contextlib.redirect_stdout(io.StringIO()):  # each fit prints progress lines
        details = ww.WeightWatcher(model=model).analyze(min_evals=min_evals, plot=False)
    modules = list(model.named_modules())
    rows, seen = [], set()
    for _, r in details.iterrows():
        name, module = modules[int(r["layer_id"])]
        storage = module.weight.data_ptr()
        if storage in seen or name == "projection":  # the tied embedding again, or not T5's
            continue
        seen.add(storage)
        rows.append({"layer": name, "N": int(r["N"]), "M": int(r["M"]), "alpha": float(r["alpha"]),
                     "under_fitted": bool(r["alpha"] > threshold)})
    return pd.DataFrame(rows, columns=["layer", "N", "M", "alpha", "under_fitted"])


STATES = ("initial", "sft", "contrastive")


def analyse_models(cfg: Config, seeds: list[int], threshold: float = 6.0) -> pd.DataFrame:
    """Alphas of every layer of the untrained, SFT and contrastive models, per training seed
    (models are loaded from the cache, or trained). Same seed, same initial weights for both."""
    frames = []
    for seed in seeds:
        seed_cfg = dataclasses.replace(cfg, train_seed=seed)
        sft = train(seed_cfg, "sft", progress=False)
        models = {"initial": load_initial(sft)[0], "sft": sft.model,
                  "contrastive": train(seed_cfg, "contrastive", progress=False).model}
        for state, model in models.items():
            frames.append(layer_alphas(model, threshold).assign(state=state, seed=seed))
    return pd.concat(frames, ignore_index=True)


def underfit_summary(alphas: pd.DataFrame) -> pd.DataFrame:
    """Per model state: layers analysed, under-fitted layers (mean ± std over seeds) and their
    share, the median alpha, and the paper's count (T5-Small, one run)."""
    per_seed = alphas.groupby(["state", "seed"]).agg(layers=("alpha", "size"), under=("under_fitted", "sum"),
                                                     median_alpha=("alpha", "median")).reset_index()
    rows = []
    for state in [s for s in STATES if s in set(per_seed["state"])]:
        g = per_seed[per_seed["state"] == state]
        mean, std = seed_spread(g["under"])
        rows.append({"model": state, "seeds": len(g), "layers analysed": int(g["layers"].iloc[0]),
                     "under-fitted (mean)": mean, "under-fitted (std)": std,
                     "share under-fitted": mean / g["layers"].iloc[0],
                     "median alpha": float(g["median_alpha"].mean()),
                     "paper (T5-Small)": paper.UNDERFIT_LAYERS.get(state)})
    return pd.DataFrame(rows).set_index("model")
