"""Ablations the paper names as future work: the InfoNCE weight λ, the negatives, the temperature τ.

Each variant is the main contrastive recipe with one setting changed (λ = 0 is the SFT baseline).
Every variant is trained (cached), generates offers for the test personas, and is judged like the
main table: acceptance with a Wilson CI, mean ± std over seeds when there are several, and an
exact McNemar test against the main recipe on the same personas.
"""

from __future__ import annotations

import dataclasses

import matplotlib.pyplot as plt
import pandas as pd

from slm4offer import provenance
from slm4offer.config import Config
from slm4offer.data import build_dataset
from slm4offer.evaluation import acceptance_table, judge_all, system_offers
from slm4offer.files import latex_text
from slm4offer.modeling import resolve_source
from slm4offer.plots import acceptance_bars, save_figure, save_results
from slm4offer.stats import mcnemar_exact

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
    """Acceptance per variant and judge, with the setting it changes and the exact McNemar p-value
    against the main recipe (pooled over seeds: each (persona, seed) is one pair)."""
    table = acceptance_table(decisions).drop(columns=["paper"])
    table["changes"] = [", ".join(f"{k}={v}" for k, v in grid[str(s)].items()) or "—" for s in table["system"]]
    p_values = []
    for _, row in table.iterrows():
        judged = decisions[(decisions["judge"] == row["judge"]) & decisions["error"].isna()]
        wide = judged.pivot_table(index=["seed", "persona_id"], columns="system", values="accept", aggfunc="first")
        if row["system"] == BASE or BASE not in wide:
            p_values.append(float("nan"))
            continue
        pair = wide[[BASE, row["system"]]].dropna().astype(bool)
        p_values.append(mcnemar_exact(pair[BASE], pair[row["system"]]).pvalue)
    table["mcnemar_p_vs_main"] = p_values
    return table


def save_ablations(cfg: Config, table: pd.DataFrame, decisions: pd.DataFrame, seeds: list[int]) -> plt.Figure:
    """`results/ablations.{csv,md,tex}` and `figures/ablations.{png,pdf}`, recorded in the manifest."""
    extra = {"model_source": resolve_source(cfg).kind, "training_seeds": seeds,
             "judges": sorted(set(decisions["judge"]))}
    record = provenance.collect(cfg, stage="generate", with_time=True, **extra)
    caption = (f"Ablations of the contrastive recipe (λ = {cfg.lam:g}, negatives {cfg.negatives}, τ = {cfg.tau:g}): "
               f"acceptance of the offers for the {decisions['persona_id'].nunique()} test personas "
               f"({cfg.domain} world, profile {cfg.profile}, T5 {extra['model_source']}, training seeds "
               f"{', '.join(map(str, seeds))}); Wilson 95% CI of the pooled count; exact McNemar p against the "
               f"main recipe on the same personas. Commit {record['git_commit']}.")
    cells = zip(table["mean"], table["ci_low"], table["ci_high"], strict=True)
    shown = table.assign(acceptance=[f"{100 * m:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]" for m, lo, hi in cells])
    shown = shown[["system", "changes", "judge", "acceptance", "mcnemar_p_vs_main", "errors"]]
    save_results(cfg, {"ablations.csv": table.to_csv(index=False),
                       "ablations.md": f"# Ablations\n\n{caption}\n\n"
                                       f"{shown.to_markdown(index=False, floatfmt='.3g')}\n",
                       "ablations.tex": shown.to_latex(index=False, caption=latex_text(caption),
                                                       label="tab:ablations", float_format="%.3g")}, record)
    fig = acceptance_bars(table, decisions, {}, caption)
    save_figure(fig, "ablations", cfg, stage="generate", **extra)
    return fig
