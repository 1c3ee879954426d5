"""Does the contrastive gain grow, hold or vanish with model size? (issue 12, item 3)

The paper's model is T5-Small (d_model 512, 6+6 layers, 60M parameters); ours is far smaller.
This study trains SFT and contrastive models at several widths of the profile's architecture (d_ff
and d_kv scaled with d_model in the profile's ratios: d_ff = 4·d_model on the default profile, as
in T5; layers, data and recipe unchanged) with the main table's seeds, and measures the gain
(contrastive − SFT) at each width, paired on the same seeds and test personas, with the main
table's seed-and-persona bootstrap. It does not fit `make all`'s budget: `make size-study`.
"""

from __future__ import annotations

import dataclasses

import matplotlib.pyplot as plt
import pandas as pd

from slm4offer import metrics, provenance
from slm4offer.ablations import run_ablations
from slm4offer.config import Config
from slm4offer.evaluation import rate_cell
from slm4offer.files import latex_text
from slm4offer.modeling import resolve_source
from slm4offer.plots import save_figure, save_results
from slm4offer.training import train

KINDS = ("sft", "contrastive")


def label(kind: str, width: int) -> str:
    """A system's name in the decisions and tables: 'contrastive, d_model 256'."""
    return f"{kind}, d_model {width}"


def width_of(system: str) -> int:
    """The width in a system's name: 256 for 'contrastive, d_model 256' (`label`'s inverse)."""
    return int(system.rsplit(" ", 1)[1])


def widths_around(cfg: Config) -> list[int]:
    """Half, one and two times the profile's width: the default study."""
    return [cfg.d_model // 2, cfg.d_model, 2 * cfg.d_model]


def size_grid(cfg: Config, widths: list[int]) -> dict[str, dict]:
    """Label -> the settings that differ from `cfg`: each kind at each width."""
    if len(set(widths)) < 2:
        raise ValueError(f"widths={widths}: a size study needs at least two different widths")
    out = {}
    for width in sorted(set(widths)):
        if width < cfg.num_heads or width % cfg.num_heads:
            raise ValueError(f"d_model={width}: must be a positive multiple of num_heads={cfg.num_heads}")
        shape = {"d_model": width, "d_ff": width * cfg.d_ff // cfg.d_model, "d_kv": width // cfg.num_heads}
        for kind in KINDS:
            out[label(kind, width)] = shape | ({"lam": 0.0} if kind == "sft" else {})
    for changes in out.values():  # fail before any training on a bad setting
        dataclasses.replace(cfg, **changes)
    return out


def run_size_study(cfg: Config, widths: list[int], seeds: list[int], judges: list[str] | None = None,
                   progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Judged decisions for every kind, width and seed, and the models: one row per kind, width and
    seed with its parameter count and the seconds its training took (when it was trained)."""
    grid = size_grid(cfg, widths)
    decisions = run_ablations(cfg, grid, seeds, judges, progress)
    models = []
    for name, changes in grid.items():
        kind = name.split(",")[0]
        for seed in seeds:
            info = train(dataclasses.replace(cfg, **changes, train_seed=seed), kind, progress=progress).info
            models.append({"d_model": changes["d_model"], "kind": kind, "seed": seed,
                           "parameters": info["parameters"], "train_seconds": info["train_seconds_this_run"]})
    return decisions, pd.DataFrame(models)


def size_gains(decisions: pd.DataFrame) -> pd.DataFrame:
    """Contrastive − SFT at each width under every judge and metric (`metrics.comparisons`)."""
    widths = sorted({width_of(s) for s in decisions["system"]})
    return metrics.comparisons(decisions, [(label("sft", w), label("contrastive", w)) for w in widths])


def size_table(acceptance: pd.DataFrame, gains: pd.DataFrame, models: pd.DataFrame) -> pd.DataFrame:
    """One row per width, judge and metric: SFT and contrastive (mean, std over seeds, 95% CI) and
    the gain in points with its paired bootstrap CI and p; from the saved tables alone, so
    REPRODUCE.md is written from them."""
    parameters = models[models["kind"] == "contrastive"].groupby("d_model")["parameters"].first().to_dict()
    acceptance = acceptance.assign(system=acceptance["system"].astype(str))
    rows = []
    for g in gains.itertuples():
        width = width_of(g.a)
        metric = next(k for k, v in metrics.METRICS.items() if v == g.metric)
        row = {"d_model": width, "parameters": parameters[width], "judge": g.judge, "metric": g.metric}
        for kind, system in (("sft", g.a), ("contrastive", g.b)):
            r = acceptance[(acceptance["system"] == system) & (acceptance["judge"] == g.judge)].iloc[0]
            mean, std = ("mean", "std") if metric == "rate" else (metric, f"{metric}_std")
            row |= {kind: r[mean], f"{kind}_std": r[std], f"{kind}_cell": rate_cell(r, metric)}
        row |= {"seeds": int(acceptance["seeds"].max()), "gain_points": g.points, "gain_ci_low": g.ci_low,
                "gain_ci_high": g.ci_high, "p": g.p}
        rows.append(row)
    return pd.DataFrame(rows).sort_values(["metric", "judge", "d_model"]).reset_index(drop=True)


def size_figure(table: pd.DataFrame, caption: str) -> plt.Figure:
    """Left: thresholded acceptance of SFT and contrastive against parameters (log scale), per judge,
    whiskers = seed std; right: the gain with its 95% CI, per judge."""
    t = table[table["metric"] == metrics.METRICS["rate"]]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    markers = {"simulated": "o", "learned": "s", "llm": "^"}
    for judge, rows in t.groupby("judge"):
        marker = markers.get(judge, "o")
        for kind, color in (("sft", "tab:gray"), ("contrastive", "tab:blue")):
            left.errorbar(rows["parameters"], 100 * rows[kind], yerr=100 * rows[f"{kind}_std"], marker=marker,
                          color=color, capsize=3, linestyle="-" if judge == "simulated" else "--",
                          label=f"{kind}, {judge} judge")
        right.errorbar(rows["parameters"], rows["gain_points"],
                       yerr=[rows["gain_points"] - rows["gain_ci_low"], rows["gain_ci_high"] - rows["gain_points"]],
                       marker=marker, capsize=3, label=f"{judge} judge")
    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_xticks(sorted(t["parameters"].unique()))
        ax.set_xticklabels([f"{p / 1e6:.2g}M\n(d_model {w})" for p, w in
                            sorted(set(zip(t["parameters"], t["d_model"], strict=True)))])
        ax.minorticks_off()
        ax.set_xlabel("parameters")
    right.axhline(0, color="black", linewidth=0.8)
    left.set_ylabel("thresholded acceptance (%)")
    right.set_ylabel("contrastive − SFT (points, 95% CI)")
    left.legend(fontsize=7)
    right.legend(fontsize=7)
    left.set_title("Acceptance (mean ± std over seeds)", fontsize=9)
    right.set_title("Contrastive gain, paired on seeds and personas", fontsize=9)
    fig.suptitle(caption, fontsize=7, wrap=True, y=-0.02, va="top")
    fig.tight_layout()
    return fig


def save_size_study(cfg: Config, decisions: pd.DataFrame, models: pd.DataFrame, seeds: list[int]) -> pd.DataFrame:
    """`results/size_study.csv` (the acceptance table of every kind and width), `size_study_gain.csv`
    (contrastive − SFT per width), `size_study_models.csv` (parameters and training seconds of every
    model), `size_study.{md,tex}` (the study's table), `decisions/size_study.csv` and
    `figures/size_study.{png,pdf}`, recorded in the manifest. Returns the study's table."""
    extra = {"model_source": resolve_source(cfg).kind, "training_seeds": seeds,
             "judges": sorted(set(decisions["judge"]))}
    record = provenance.collect(cfg, stage="generate", with_time=True, **extra)
    acceptance, gains = metrics.acceptance_table(decisions), size_gains(decisions)
    table = size_table(acceptance, gains, models)
    widths = sorted(table["d_model"].unique())
    caption = (f"Contrastive gain against model size: SFT and contrastive (λ = {cfg.lam:g}) at d_model "
               f"{', '.join(map(str, widths))} (d_ff = {cfg.d_ff / cfg.d_model:g}·d_model, "
               f"{cfg.num_layers}+{cfg.num_layers} layers, "
               f"{cfg.epochs} epochs; T5 {extra['model_source']}), {decisions['persona_id'].nunique()} test personas "
               f"({cfg.domain} world, profile {cfg.profile}), training seeds {', '.join(map(str, seeds))}; mean ± std "
               f"over seeds, 95% CIs from a bootstrap over seeds and personas, the gain paired on both. "
               f"Commit {record['git_commit']}.")
    shown = table.assign(gain=[f"{d:+.1f} [{lo:+.1f}, {hi:+.1f}]" for d, lo, hi in
                               zip(table["gain_points"], table["gain_ci_low"], table["gain_ci_high"], strict=True)])
    shown = shown[["metric", "judge", "d_model", "parameters", "sft_cell", "contrastive_cell", "gain", "p"]].rename(
        columns={"sft_cell": "SFT", "contrastive_cell": "contrastive", "gain": "contrastive − SFT (points)"})
    save_results(cfg, {"size_study.csv": acceptance.to_csv(index=False),
                       "size_study_gain.csv": gains.to_csv(index=False),
                       "size_study_models.csv": models.to_csv(index=False),
                       "size_study.md": f"# Contrastive gain against model size\n\n{caption}\n\n"
                                        f"{shown.to_markdown(index=False, floatfmt='.3g')}\n",
                       "size_study.tex": shown.to_latex(index=False, caption=latex_text(caption),
                                                        label="tab:size_study", float_format="%.3g"),
                       "decisions/size_study.csv": metrics.to_wide(decisions).to_csv(index=False)}, record)
    save_figure(size_figure(table, caption), "size_study", cfg, stage="generate", **extra)
    return table
