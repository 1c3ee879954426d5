"""Does the contrastive gain grow, hold or vanish with model size?

The paper's model is T5-Small (d_model 512, 6+6 layers, 60M parameters); ours is far smaller.
This study trains SFT and contrastive models at several widths of the profile's architecture (d_ff
and d_kv scaled with d_model in the profile's ratios: d_ff = 4·d_model on the default profile, as
in T5; layers, data and recipe unchanged) with the main table's seeds, and measures the gain
(contrastive − SFT) at each width, paired on the same seeds and test personas, with the main
table's seed-and-persona bootstrap. It does not fit `make all`'s budget: `make size-study`.
"""

from __future__ import annotations

import dataclasses

import pandas as pd

from slm4offer.config import Config
from slm4offer.errors import InvalidValue
from slm4offer.experiments import metrics
from slm4offer.experiments.ablations import run_ablations
from slm4offer.experiments.metrics import rate_cell
from slm4offer.model.losses import sft_settings
from slm4offer.model.training import KINDS, train


def label(kind: str, width: int) -> str:
    """A system's name in the decisions and tables: 'contrastive, d_model 256'."""
    return f"{kind}, d_model {width}"


def width_of(system: str) -> int:
    """The width in a system's name: 256 for 'contrastive, d_model 256' (`label`'s inverse)."""
    return int(system.rsplit(" ", 1)[1])


def widths_around(cfg: Config) -> list[int]:
    """Half, one and two times the profile's width: the default study."""
    return [cfg.d_model // 2, cfg.d_model, 2 * cfg.d_model]


def width_shape(cfg: Config, width: int) -> dict:
    """The settings of `cfg`'s architecture at d_model `width`, d_ff and d_kv in the profile's ratios."""
    if width < cfg.num_heads or width % cfg.num_heads:
        raise InvalidValue(f"d_model={width}: must be a positive multiple of num_heads={cfg.num_heads}")
    return {"d_model": width, "d_ff": width * cfg.d_ff // cfg.d_model, "d_kv": width // cfg.num_heads}


def size_grid(cfg: Config, widths: list[int]) -> dict[str, dict]:
    """Label -> the settings that differ from `cfg`: each kind at each width."""
    if len(set(widths)) < 2:
        raise InvalidValue(f"widths={widths}: a size study needs at least two different widths")
    out = {}
    for width in sorted(set(widths)):
        shape = width_shape(cfg, width)
        for kind in KINDS:
            out[label(kind, width)] = shape | (sft_settings() if kind == "sft" else {})
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


def size_gain_differences(decisions: pd.DataFrame) -> pd.DataFrame:
    """Does the gain change with width? Every pair of widths' gains, the wider minus the narrower,
    paired on seeds and personas, Holm-adjusted over the pairs of widths (`metrics.gain_differences`)."""
    widths = sorted({width_of(s) for s in decisions["system"]})
    return metrics.gain_differences(decisions, [(f"d_model {w}", label("sft", w), label("contrastive", w))
                                                for w in widths])


def size_table(acceptance: pd.DataFrame, gains: pd.DataFrame, models: pd.DataFrame) -> pd.DataFrame:
    """One row per width, judge and metric: SFT and contrastive (mean, std over seeds, 95% CI) and
    the gain in points with its paired bootstrap CI and p; from the saved tables alone, so
    REPRODUCE.md is written from them."""
    parameters = models[models["kind"] == "contrastive"].groupby("d_model")["parameters"].first().to_dict()
    acceptance = acceptance.assign(system=acceptance["system"].astype(str))
    rows = []
    for g in gains.itertuples():
        width = width_of(g.a)
        metric = metrics.metric_labelled(g.metric)
        row = {"d_model": width, "parameters": parameters[width], "judge": g.judge, "metric": g.metric}
        for kind, system in (("sft", g.a), ("contrastive", g.b)):
            r = acceptance[(acceptance["system"] == system) & (acceptance["judge"] == g.judge)].iloc[0]
            row |= {kind: r[metric.mean], f"{kind}_std": r[metric.std], f"{kind}_cell": rate_cell(r, metric.key)}
        row |= {"seeds": int(acceptance["seeds"].max()), "gain_points": g.points, "gain_ci_low": g.ci_low,
                "gain_ci_high": g.ci_high, "p": g.p}
        rows.append(row)
    return pd.DataFrame(rows).sort_values(["metric", "judge", "d_model"]).reset_index(drop=True)
