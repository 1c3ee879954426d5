"""Ablations the paper names as future work: the InfoNCE weight λ, the negatives, the temperature τ.

Each variant is the main contrastive recipe with one setting changed (λ = 0 is the SFT baseline).
Every variant is trained (cached), generates offers for the test personas, and is judged like the
main table: every metric with a bootstrap CI over seeds and personas, mean ± std over seeds when
there are several, and its difference from the main recipe on the same personas with a p-value,
Holm-adjusted because one table makes many tests.
"""

from __future__ import annotations

import dataclasses

import matplotlib.pyplot as plt
import pandas as pd

from slm4offer import metrics, provenance
from slm4offer.config import Config
from slm4offer.data import build_dataset
from slm4offer.evaluation import judge_all, rate_cell, system_offers
from slm4offer.files import latex_text
from slm4offer.modeling import resolve_source
from slm4offer.plots import acceptance_bars, save_figure, save_results

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
            raise ValueError(f"variant {label!r} changes nothing")
    return out


def run_ablations(cfg: Config, grid: dict[str, dict], seeds: list[int], judges: list[str] | None = None,
                  progress: bool = True) -> pd.DataFrame:
    """Judged decisions for every variant and seed (the column `system` holds the variant label)."""
    test = list(build_dataset(cfg, progress=progress)["test"])
    offers = {}
    for label, changes in grid.items():
        variant = dataclasses.replace(cfg, **changes)
        kind = "sft" if variant.lam == 0 else "contrastive"
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
    vs = vs[vs["metric"] == metrics.METRICS["rate"]].set_index(["b", "judge"])
    key = list(zip(table["system"].astype(str), table["judge"], strict=True))
    for column, name in (("points", "points_vs_main"), ("ci_low", "points_ci_low"), ("ci_high", "points_ci_high"),
                         ("p", "p_vs_main"), ("p_holm", "p_holm")):
        table[name] = vs[column].reindex(key).to_numpy()
    return table


def save_ablations(cfg: Config, table: pd.DataFrame, decisions: pd.DataFrame, seeds: list[int]) -> plt.Figure:
    """`results/ablations.{csv,md,tex}`, `ablations_gain.csv` (every metric against the main
    recipe), `decisions/ablations.csv` and `figures/ablations.{png,pdf}`, recorded in the manifest."""
    extra = {"model_source": resolve_source(cfg).kind, "training_seeds": seeds,
             "judges": sorted(set(decisions["judge"]))}
    record = provenance.collect(cfg, stage="generate", with_time=True, **extra)
    caption = (f"Ablations of the contrastive recipe (λ = {cfg.lam:g}, negatives {cfg.negatives}, τ = {cfg.tau:g}): "
               f"acceptance of the offers for the {decisions['persona_id'].nunique()} test personas "
               f"({cfg.domain} world, profile {cfg.profile}, T5 {extra['model_source']}, training seeds "
               f"{', '.join(map(str, seeds))}); mean ± std over seeds and 95% CIs from a bootstrap over seeds and "
               f"personas (with one seed: over personas only, so training noise is not in them); difference from the "
               f"main recipe on the same seeds and personas, its p and the Holm-adjusted p over all "
               f"{int(table['p_vs_main'].notna().sum())} "
               f"tests. Commit {record['git_commit']}.")
    shown = table.assign(
        acceptance=[rate_cell(r) for _, r in table.iterrows()],
        expected=(100 * table["expected"]).round(1), in_catalogue=(100 * table["in_catalogue"]).round(1),
        vs_main=["—" if pd.isna(d) else f"{d:+.1f} [{lo:+.1f}, {hi:+.1f}]"
                 for d, lo, hi in zip(table["points_vs_main"], table["points_ci_low"], table["points_ci_high"],
                                      strict=True)])
    shown = shown[["system", "changes", "judge", "acceptance", "expected", "in_catalogue", "vs_main", "p_vs_main",
                   "p_holm", "errors"]]
    save_results(cfg, {"ablations.csv": table.to_csv(index=False),
                       "ablations.md": f"# Ablations\n\n{caption}\n\n"
                                       f"{shown.to_markdown(index=False, floatfmt='.3g')}\n",
                       "ablations.tex": shown.to_latex(index=False, caption=latex_text(caption),
                                                       label="tab:ablations", float_format="%.3g"),
                       "ablations_gain.csv": metrics.versus(decisions, BASE).to_csv(index=False),
                       "decisions/ablations.csv": metrics.to_wide(decisions).to_csv(index=False)}, record)
    fig = acceptance_bars(table, decisions, {}, caption)
    save_figure(fig, "ablations", cfg, stage="generate", **extra)
    return fig
