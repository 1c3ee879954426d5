"""Acceptance metrics from per-persona decisions, so that every number can be recomputed.

One row per (system, training seed, judge, test persona) holds the offer, whether it parsed and
is in the catalogue, the judge's P(accept) and verdict, and a uniform draw `u` per persona. From
those alone come three ways to score a system, because the headline must not depend on one:

- **thresholded rate**: the judge's verdict, accept iff P(accept) >= `accept_threshold` (the
  paper's kind of number: a judge says yes or no);
- **expected acceptance**: mean P(accept), an offer that is not in the catalogue counting as 0
  (the business cannot make it); no threshold at all;
- **sampled rate**: each persona accepts iff u < P(accept), u uniform and the same for every
  system and seed (common random numbers, so comparisons stay paired); the campaign outcome
  one draw of customers would give, whose expectation is the expected acceptance.

Every interval and comparison comes twice: resampling training seeds and personas together
(`stats.SeedPersonaBootstrap`), and at the seed level, a t-interval over the per-seed values
(`stats.seed_interval`). The seed-level one is the wider with few seeds; REPRODUCE.md's
sentences rest on it. `slm4offer recompute` recomputes the committed tables
from the committed decision files and fails if any number differs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from slm4offer import paper
from slm4offer.errors import InvalidValue
from slm4offer.experiments.systems import SYSTEMS
from slm4offer.stats import (
    Difference,
    SeedPersonaBootstrap,
    holm,
    mcnemar_exact,
    seed_interval,
    seed_spread,
    seeds_to_exclude_zero,
)


@dataclass(frozen=True)
class Metric:
    """One way to score a system from its decisions, and where it lives in an acceptance table:
    its mean over seeds in column `mean`, its seed spread and CI in `<prefix>std`, `<prefix>ci_low`
    and `<prefix>ci_high`."""

    key: str
    label: str     # in comparisons, findings and the Markdown tables
    about: str     # what it counts, for the tables' legend ({threshold}: the judge's)
    mean: str
    prefix: str
    reads_probability: bool  # undefined for a judge that gives no probabilities
    value: Callable[[pd.DataFrame, pd.Series, float | None], pd.Series]  # (decisions, P(accept), threshold)

    @property
    def std(self) -> str:
        return f"{self.prefix}std"

    @property
    def ci_low(self) -> str:
        return f"{self.prefix}ci_low"

    @property
    def ci_high(self) -> str:
        return f"{self.prefix}ci_high"

    @property
    def seed_ci_low(self) -> str:
        return f"{self.prefix}seed_ci_low"

    @property
    def seed_ci_high(self) -> str:
        return f"{self.prefix}seed_ci_high"


def _in_catalogue(decisions: pd.DataFrame, p: pd.Series) -> pd.Series:
    """P(accept), an offer the business cannot make (not in the catalogue) counting as 0."""
    return p.where(decisions["in_catalogue"].astype(bool), 0.0)  # NaN: a judge that gave no probability


def _thresholded(decisions: pd.DataFrame, p: pd.Series, threshold: float | None) -> pd.Series:
    return decisions["accept"].astype(float) if threshold is None else (p >= threshold).astype(float)


def _sampled(decisions: pd.DataFrame, p: pd.Series, threshold: float | None) -> pd.Series:
    p0 = _in_catalogue(decisions, p)
    return (decisions["u"] < p0).astype(float).where(p0.notna())


# The registry, in table order: a new metric is one entry, and every table, comparison, finding
# and `make check` picks it up.
METRICS: dict[str, Metric] = {m.key: m for m in (
    Metric("rate", "thresholded rate", "accept iff P(accept) ≥ {threshold}", "mean", "", False, _thresholded),
    Metric("expected", "expected acceptance", "mean P(accept), an offer not in the catalogue counting as 0",
           "expected", "expected_", True, lambda d, p, t: _in_catalogue(d, p)),
    Metric("sampled", "sampled rate", "each persona accepts iff its uniform draw u < P(accept), one u per "
           "persona for every system", "sampled", "sampled_", True, _sampled),
)}


def metric_labelled(label: str) -> Metric:
    return next(m for m in METRICS.values() if m.label == label)
# The generator (same decoding; same reranker), the scorer (SFT's offers with and without it; the
# catalogue ranked by it), and the variety controls against the contrastive generator.
COMPARISONS = (("sft", "contrastive"), ("sft+rerank", "contrastive+rerank"), ("sft", "sft+rerank"),
               ("sft", "catalog by similarity"), ("contrastive", "catalog by similarity"),
               ("sft, sampled", "contrastive"), ("sft beams, random pick", "contrastive"),
               ("sft beams, random pick", "sft+rerank"))
THRESHOLDS = tuple(np.round(np.arange(0.30, 0.701, 0.05), 2))
N_RESAMPLES, BOOTSTRAP_SEED = 4000, 0
JUDGE_COLUMNS = ("accept", "probability", "error")
KEYS = ["system", "seed", "persona_id", "offer", "offer_id", "parsed", "in_catalogue", "u"]


# --- the decision file ------------------------------------------------------------------------

def to_wide(decisions: pd.DataFrame) -> pd.DataFrame:
    """One row per (system, seed, persona) with `<judge>_accept/_probability/_error` columns:
    the committed file `results/decisions/<table>.csv`."""
    parts = []
    for judge, group in decisions.groupby("judge", sort=False):
        part = group.set_index(KEYS)[list(JUDGE_COLUMNS)]
        parts.append(part.rename(columns={c: f"{judge}_{c}" for c in JUDGE_COLUMNS}))
    return pd.concat(parts, axis=1).reset_index()


def from_wide(wide: pd.DataFrame) -> pd.DataFrame:
    """The long frame (one row per judge too) that every function here reads."""
    judges = [c.removesuffix("_accept") for c in wide.columns if c.endswith("_accept")]
    frames = [wide[KEYS].assign(judge=j, **{c: wide[f"{j}_{c}"] for c in JUDGE_COLUMNS}) for j in judges]
    long = pd.concat(frames, ignore_index=True)
    long["seed"] = long["seed"].astype("Int64")
    long["error"] = long["error"].astype(object).where(long["error"].notna(), None)
    return long


def read_decisions(path: str | Path) -> pd.DataFrame:
    return from_wide(pd.read_csv(path, dtype={"persona_id": str, "offer_id": str}))


# --- per-cell outcomes --------------------------------------------------------------------------

def outcomes(decisions: pd.DataFrame, metric: str, threshold: float | None = None) -> pd.Series:
    """Each row's outcome under `metric` (NaN where the judge gave an error, not a verdict).

    With `threshold`, 'rate' re-applies the judge's rule at that threshold to its P(accept)."""
    if metric not in METRICS:
        raise InvalidValue(f"metric={metric!r}: must be one of {', '.join(METRICS)}")
    p = pd.to_numeric(decisions["probability"], errors="coerce")
    value = METRICS[metric].value(decisions, p, threshold)
    if METRICS[metric].reads_probability:  # a judge that gave no probability anywhere in `decisions`: undefined
        value = value.where(p.notna().groupby(decisions["judge"]).transform("any"))
    return value.where(decisions["error"].isna())


def _grid(rows: pd.DataFrame, values: pd.Series, seeds: list[int], personas: list[str]) -> np.ndarray:
    """Seeds x personas (one row for a system that does not depend on the seed)."""
    table = values.groupby([rows["seed"].fillna(-1).astype(int), rows["persona_id"]]).first().unstack()
    table = table.reindex(columns=personas)
    if list(table.index) == [-1]:
        return table.to_numpy()
    if sorted(table.index) != seeds:
        raise InvalidValue(f"system {rows['system'].iloc[0]!r} has seeds {sorted(table.index)}, expected {seeds}")
    return table.reindex(seeds).to_numpy()


def _frame(decisions: pd.DataFrame) -> tuple[list[int], list[str], SeedPersonaBootstrap]:
    seeds = sorted(int(s) for s in decisions["seed"].dropna().unique())
    personas = sorted(decisions["persona_id"].unique())
    return seeds, personas, SeedPersonaBootstrap(max(len(seeds), 1), len(personas), N_RESAMPLES, BOOTSTRAP_SEED)


def _ordered(systems) -> list[str]:
    present = list(dict.fromkeys(systems))
    return [s for s in SYSTEMS if s in present] + [s for s in present if s not in SYSTEMS]


# --- tables -------------------------------------------------------------------------------------

def acceptance_table(decisions: pd.DataFrame) -> pd.DataFrame:
    """One row per (system, judge): every metric as mean (and std) over seeds with a seed-and-persona
    bootstrap 95% CI, the verdict counts, the offers' parse / catalogue / variety rates, and the
    mean P(accept) of the offers that are in the catalogue."""
    seeds, personas, boot = _frame(decisions)
    every = {m.key: outcomes(decisions, m.key) for m in METRICS.values()}
    rows = []
    for (system, judge), group in decisions.groupby(["system", "judge"], sort=False):
        judged = group[group["error"].isna()]
        per_seed = judged.groupby("seed", dropna=False)
        row = {"system": system, "judge": judge, "seeds": per_seed.ngroups}
        for m in METRICS.values():
            values = every[m.key].loc[group.index]
            per_seed = values.groupby(group["seed"].fillna(-1)).mean().to_numpy()
            mean, std = seed_spread(per_seed)
            low, high = boot.interval(_grid(group, values, seeds, personas))
            by_seed = seed_interval(per_seed)
            row |= {m.mean: mean, m.std: std, m.ci_low: low, m.ci_high: high,
                    m.seed_ci_low: by_seed.low, m.seed_ci_high: by_seed.high}
        offers = group.drop_duplicates(["seed", "persona_id"])
        inside = pd.to_numeric(judged.loc[judged["in_catalogue"].astype(bool), "probability"], errors="coerce")
        row |= {"accepted": int(judged["accept"].sum()), "judged": len(judged),
                "errors": int(group["error"].notna().sum()),
                "parsed": float(offers["parsed"].mean()), "in_catalogue": float(offers["in_catalogue"].mean()),
                "in_catalogue_probability": float(inside.mean()) if len(inside) else np.nan,
                "distinct_offers": float(offers[offers["in_catalogue"]].groupby("seed", dropna=False)["offer_id"]
                                         .nunique().reindex(offers["seed"].unique(), fill_value=0).mean()),
                "paper": paper.ACCEPTANCE.get(system, np.nan)}
        rows.append(row)
    table = pd.DataFrame(rows)
    table["system"] = pd.Categorical(table["system"], _ordered(table["system"]))
    return table.sort_values(["system", "judge"]).reset_index(drop=True)


def comparisons(decisions: pd.DataFrame, pairs=COMPARISONS) -> pd.DataFrame:
    """b - a under every judge and metric, paired on seeds and personas: the difference in points
    with its bootstrap CI and p-value, its seed-level t-interval and p (over the per-seed
    differences), and the paper's relative gain (b - a) / a."""
    seeds, personas, boot = _frame(decisions)
    rows = []
    for judge, group in decisions.groupby("judge", sort=True):
        every = {m.key: outcomes(group, m.key) for m in METRICS.values()}
        for a, b in pairs:
            for m in METRICS.values():
                grids = _pair_grids(group, every[m.key], a, b, seeds, personas, boot)
                if grids is None:
                    continue
                d, per_seed, numbers = _paired_difference(boot, *grids)
                rows.append({"judge": judge, "metric": m.label, "a": a, "b": b, "a_value": d.a, "b_value": d.b,
                             **numbers, "seeds_needed": seeds_to_exclude_zero(per_seed) or np.nan,
                             "relative": d.diff / d.a if d.a else np.nan})
    return pd.DataFrame(rows)


def _pair_grids(group: pd.DataFrame, values: pd.Series, a: str, b: str, seeds: list[int], personas: list[str],
                boot: SeedPersonaBootstrap) -> tuple[np.ndarray, np.ndarray] | None:
    """Systems a's and b's outcome grids in one judge's `group`; None when either system is absent or
    no cell has an outcome in both (a judge without probabilities, under a probability metric)."""
    ga, gb = group[group["system"] == a], group[group["system"] == b]
    if not len(ga) or not len(gb):
        return None
    xa, xb = _grid(ga, values.loc[ga.index], seeds, personas), _grid(gb, values.loc[gb.index], seeds, personas)
    return (xa, xb) if boot.comparable(xa, xb) else None


def _paired_difference(boot: SeedPersonaBootstrap, a: np.ndarray, b: np.ndarray) -> tuple[Difference, np.ndarray, dict]:
    """b - a: the bootstrap difference, the per-seed differences, and both intervals in points."""
    d = boot.difference(a, b)
    per_seed = per_seed_difference(a, b)
    by_seed = seed_interval(per_seed)
    return d, per_seed, {"points": 100 * d.diff, "ci_low": 100 * d.low, "ci_high": 100 * d.high, "p": d.pvalue,
                         "seed_ci_low": 100 * by_seed.low, "seed_ci_high": 100 * by_seed.high,
                         "seed_p": by_seed.pvalue, "seeds": by_seed.seeds}


def gain_differences(decisions: pd.DataFrame, gains: list[tuple[str, str, str]]) -> pd.DataFrame:
    """How two gains differ: for each named pair of gains `(label, a, b)` in `gains`, taken in order,
    every later gain minus every earlier one, (b2 - a2) - (b1 - a1), paired on seeds and personas,
    with its bootstrap CI and p, its seed-level t-interval and p, and p Holm-adjusted per judge and
    metric over all the differences (the family)."""
    seeds, personas, boot = _frame(decisions)
    rows = []
    for judge, group in decisions.groupby("judge", sort=True):
        every = {m.key: outcomes(group, m.key) for m in METRICS.values()}
        for m in METRICS.values():
            grids = {label: pair[1] - pair[0] for label, a, b in gains
                     if (pair := _pair_grids(group, every[m.key], a, b, seeds, personas, boot)) is not None}
            labels = list(grids)
            for i, first in enumerate(labels):
                for second in labels[i + 1:]:
                    d, _, numbers = _paired_difference(boot, grids[first], grids[second])
                    rows.append({"judge": judge, "metric": m.label, "first": first, "second": second,
                                 "first_gain": 100 * d.a, "second_gain": 100 * d.b, **numbers})
    out = pd.DataFrame(rows)
    return out if out.empty else with_holm(out, by=("judge", "metric"))


def per_seed_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """b - a per training seed, each the mean over the personas both have an outcome for (a grid of
    one row, a system that does not depend on the seed, is the same for every seed)."""
    shape = (max(a.shape[0], b.shape[0]), a.shape[1])
    d = np.broadcast_to(b, shape) - np.broadcast_to(a, shape)
    with np.errstate(all="ignore"):
        return np.array([np.nanmean(row) if (~np.isnan(row)).any() else np.nan for row in d])


def paper_gain() -> dict:
    sft, con = paper.ACCEPTANCE["sft"], paper.ACCEPTANCE["contrastive"]
    return {"judge": "paper (LLM judge)", "metric": "LLM verdict", "a": "sft", "b": "contrastive", "a_value": sft,
            "b_value": con, "points": 100 * (con - sft), "relative": (con - sft) / sft}


def with_holm(tests: pd.DataFrame, by: tuple[str, ...] = ("metric",)) -> pd.DataFrame:
    """`tests` with `p_holm`: p Holm-adjusted within each group of `by` (the family)."""
    return tests.assign(p_holm=tests.groupby(list(by))["p"].transform(lambda p: pd.Series(holm(p), p.index)))


def threshold_sweep(decisions: pd.DataFrame, thresholds=THRESHOLDS) -> pd.DataFrame:
    """Each judge's accept-iff-P >= t rule for t in `thresholds`: mean over seeds per system."""
    rows = []
    for (system, judge), group in decisions.groupby(["system", "judge"], sort=False):
        if pd.to_numeric(group["probability"], errors="coerce").isna().all():
            continue  # a judge that gave no probabilities has no threshold to move
        for t in thresholds:
            values = outcomes(group, "rate", threshold=float(t))
            rows.append({"system": system, "judge": judge, "threshold": float(t),
                         "rate": float(values.groupby(group["seed"].fillna(-1)).mean().mean())})
    return pd.DataFrame(rows, columns=["system", "judge", "threshold", "rate"])


def paired_tests(decisions: pd.DataFrame, a: str = "sft", b: str = "contrastive") -> pd.DataFrame:
    """Exact McNemar test of `a` vs `b` per judge and seed (one seed's personas are independent)."""
    rows = []
    for (judge, seed), group in decisions[decisions["system"].isin([a, b])].groupby(["judge", "seed"]):
        wide = group[group["error"].isna()].pivot(index="persona_id", columns="system", values="accept").dropna()
        if a not in wide or b not in wide:
            continue
        test = mcnemar_exact(wide[a].astype(bool), wide[b].astype(bool))
        rows.append({"judge": judge, "seed": int(seed), "personas": test.n, f"{a}_rate": wide[a].mean(),
                     f"{b}_rate": wide[b].mean(), "both": test.both, f"only_{a}": test.only_a,
                     f"only_{b}": test.only_b, "neither": test.neither, "mcnemar_p": test.pvalue})
    return pd.DataFrame(rows)


def rate_cell(row: pd.Series, metric: str = "rate") -> str:
    """'46.2 ± 1.3 [43.9, 48.5] seeds [40.1, 52.3]': a table row's `metric` in points, ± its std over
    seeds, its bootstrap 95% CI and, with several seeds, its seed-level 95% t-interval."""
    m = METRICS[metric]
    if pd.isna(row[m.mean]):
        return "—"  # not defined for this judge (no probabilities)
    cell = f"{100 * row[m.mean]:.1f}"
    if row["seeds"] > 1:
        cell += f" ± {100 * row[m.std]:.1f}"
    cell += f" [{100 * row[m.ci_low]:.1f}, {100 * row[m.ci_high]:.1f}]"
    if row["seeds"] > 1 and m.seed_ci_low in row and not pd.isna(row[m.seed_ci_low]):
        cell += f" seeds [{100 * row[m.seed_ci_low]:.1f}, {100 * row[m.seed_ci_high]:.1f}]"
    return cell
