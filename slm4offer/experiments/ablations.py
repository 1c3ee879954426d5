"""Ablations the paper names as future work: the InfoNCE weight λ, the negatives, the temperature τ.

Each variant is the main contrastive recipe with one setting changed (λ = 0 is the SFT baseline).
A scorer variant uses a variant's model not as a generator but as the scorer of SFT's beam
candidates or of the whole catalogue (`scorer_variants`): λ = 1, no generation loss at all,
against the main recipe's scorer, says whether the scorer needs the generation loss.
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


# What a scorer variant scores, by the acceptance table's system that does it with the main model.
SCORED = {"SFT beams": "sft+rerank", "catalogue": "catalog by similarity"}


def scorer_label(lam: float | None, scored: str) -> str:
    """'λ = 1 scorer: SFT beams'; None: the main recipe's scorer."""
    return f"{'main recipe' if lam is None else f'λ = {lam:g}'} scorer: {scored}"


def scorer_variants(cfg: Config, lams: list[float]) -> tuple[dict[str, dict], dict[str, str]]:
    """The scorer rows (the main recipe's, then each λ's) as grid entries, and the system each runs."""
    grid: dict[str, dict] = {}
    systems: dict[str, str] = {}
    for lam in [None, *lams]:
        if lam is not None and not 0 < lam <= 1:
            raise InvalidValue(f"scorer λ = {lam}: a scorer needs a trained similarity, 0 < λ ≤ 1")
        for scored, system in SCORED.items():
            grid[scorer_label(lam, scored)] = {} if lam is None else {"lam": lam}
            systems[scorer_label(lam, scored)] = system
    return grid, systems


def run_ablations(cfg: Config, grid: dict[str, dict], seeds: list[int], judges: list[str] | None = None,
                  progress: bool = True, systems: dict[str, str] | None = None) -> pd.DataFrame:
    """Judged decisions for every variant and seed (the column `system` holds the variant label).
    A variant generates its own offers unless `systems` names the system it runs instead."""
    test = list(build_dataset(cfg, progress=progress)["test"])
    offers: dict[tuple[str, int | None], list[str]] = {}
    for label, changes in grid.items():
        variant = dataclasses.replace(cfg, **changes)
        system = (systems or {}).get(label, model_label(variant))
        for seed in seeds:
            offers[label, seed] = system_offers(variant, system, seed, progress)
    return judge_all(cfg, test, offers, judges or cfg.judge_names, progress)


def counterpart(label: str) -> str:
    """What a row is compared with: the main recipe, or for a scorer row the main recipe's scorer of
    the same candidates."""
    if " scorer: " in label:
        return scorer_label(None, label.split(" scorer: ", 1)[1])
    return BASE


def ablation_gains(decisions: pd.DataFrame) -> pd.DataFrame:
    """Every row against its counterpart under every judge and metric, p Holm-adjusted per metric
    over all of them (the file `ablations_gain.csv`)."""
    rows = [str(s) for s in decisions["system"].unique()]
    pairs = [(counterpart(s), s) for s in rows if counterpart(s) != s and counterpart(s) in rows]
    return metrics.with_holm(metrics.comparisons(decisions, pairs))


def ablation_table(decisions: pd.DataFrame, grid: dict[str, dict]) -> pd.DataFrame:
    """Every metric per variant and judge (`metrics.acceptance_table`), the setting it changes, and
    its thresholded-rate difference from its counterpart (the main recipe, or its scorer): points
    with the seed-and-persona bootstrap CI, p, and p Holm-adjusted over all rows and judges."""
    table = metrics.acceptance_table(decisions).drop(columns=["paper"])
    table["changes"] = [", ".join(f"{k}={v}" for k, v in grid[str(s)].items()) or "—" for s in table["system"]]
    vs = ablation_gains(decisions)
    vs = vs[vs["metric"] == metrics.METRICS["rate"].label].set_index(["b", "judge"])
    key = list(zip(table["system"].astype(str), table["judge"], strict=True))
    for column, name in (("points", "points_vs_main"), ("ci_low", "points_ci_low"), ("ci_high", "points_ci_high"),
                         ("p", "p_vs_main"), ("p_holm", "p_holm")):
        table[name] = vs[column].reindex(key).to_numpy()
    return table
