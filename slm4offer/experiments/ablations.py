"""Ablations the paper names as future work: the InfoNCE weight λ, the negatives, the temperature τ.

Each variant is the main contrastive recipe with one setting changed (λ = 0 is the SFT baseline).
Every variant is trained (cached), generates offers for the test personas, and is judged like the
main table: every metric with a bootstrap CI over seeds and personas, mean ± std over seeds when
there are several, and its difference from the main recipe on the same personas with a p-value,
Holm-adjusted because one table makes many tests.
"""

from __future__ import annotations

import dataclasses

import pandas as pd

from slm4offer.config import Config
from slm4offer.data.dataset import build_dataset
from slm4offer.errors import InvalidValue
from slm4offer.experiments import metrics
from slm4offer.experiments.acceptance import judge_all
from slm4offer.experiments.systems import system_offers
from slm4offer.model.training import model_label

BASE = "main recipe"


def variants(cfg: Config, lams: list[float], negatives: list[str], taus: list[float]) -> dict[str, dict]:
    """Label -> the settings that differ from `cfg` (the main recipe, label `BASE`)."""
    out: dict[str, dict] = {BASE: {}}
    for lam in lams:
        if lam != cfg.lam:
            out[f"λ = {lam:g}" + (" (SFT)" if lam == 0 else "")] = {"lam": lam}
    for mode in negatives:
        if mode != cfg.negatives:
            out[f"negatives: {mode}"] = {"negatives": mode}
    for tau in taus:
        if tau != cfg.tau:
            out[f"τ = {tau:g}"] = {"tau": tau}
    for label, changes in out.items():  # fail before any training on a bad setting
        dataclasses.replace(cfg, **changes)
        if label != BASE and not changes:
            raise InvalidValue(f"variant {label!r} changes nothing")
    return out


def run_ablations(cfg: Config, grid: dict[str, dict], seeds: list[int], judges: list[str] | None = None,
                  progress: bool = True) -> pd.DataFrame:
    """Judged decisions for every variant and seed (the column `system` holds the variant label)."""
    test = list(build_dataset(cfg, progress=progress)["test"])
    offers: dict[tuple[str, int | None], list[str]] = {}
    for label, changes in grid.items():
        variant = dataclasses.replace(cfg, **changes)
        kind = model_label(variant)
        for seed in seeds:
            offers[label, seed] = system_offers(variant, kind, seed, progress)
    return judge_all(cfg, test, offers, judges or cfg.judge_names, progress)


def ablation_table(decisions: pd.DataFrame, grid: dict[str, dict]) -> pd.DataFrame:
    """Every metric per variant and judge (`metrics.acceptance_table`), the setting it changes, and
    its thresholded-rate difference from the main recipe: points with the seed-and-persona
    bootstrap CI, p, and p Holm-adjusted over all variants and judges."""
    table = metrics.acceptance_table(decisions).drop(columns=["paper"])
    table["changes"] = [", ".join(f"{k}={v}" for k, v in grid[str(s)].items()) or "—" for s in table["system"]]
    vs = metrics.versus(decisions, BASE)
    vs = vs[vs["metric"] == metrics.METRICS["rate"].label].set_index(["b", "judge"])
    key = list(zip(table["system"].astype(str), table["judge"], strict=True))
    for column, name in (("points", "points_vs_main"), ("ci_low", "points_ci_low"), ("ci_high", "points_ci_high"),
                         ("p", "p_vs_main"), ("p_holm", "p_holm")):
        table[name] = vs[column].reindex(key).to_numpy()
    return table
