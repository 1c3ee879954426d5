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

Every interval and comparison resamples training seeds and personas together
(`stats.SeedPersonaBootstrap`). `python -m slm4offer.metrics` recomputes the committed tables
from the committed decision files and fails if any number differs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from slm4offer import paper
from slm4offer.stats import SeedPersonaBootstrap, holm, mcnemar_exact, seed_spread

# Systems in table order. `+rerank`: beam candidates, the one the contrastive model of the same
# seed scores closest to the persona is kept; `catalog by similarity`: every catalogue offer
# scored that way, the closest kept (targeting without generation).
SYSTEMS = ("random", "popular", "sft", "sft+rerank", "contrastive", "contrastive+rerank",
           "catalog by similarity", "best")
METRICS = {"rate": "thresholded rate", "expected": "expected acceptance", "sampled": "sampled rate"}
COMPARISONS = (("sft", "contrastive"), ("sft+rerank", "contrastive+rerank"), ("sft", "sft+rerank"),
               ("contrastive", "catalog by similarity"))
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
    judged = decisions["error"].isna()
    p = pd.to_numeric(decisions["probability"], errors="coerce")
    if metric == "rate":
        value = decisions["accept"].astype(float) if threshold is None else (p >= threshold).astype(float)
    elif metric in ("expected", "sampled"):
        p0 = p.where(decisions["in_catalogue"].astype(bool), 0.0)  # NaN: a judge that gave no probability
        value = p0 if metric == "expected" else (decisions["u"] < p0).astype(float).where(p0.notna())
    else:
        raise ValueError(f"metric={metric!r}: must be one of {', '.join(METRICS)}")
    return value.where(judged)


def _grid(rows: pd.DataFrame, values: pd.Series, seeds: list[int], personas: list[str]) -> np.ndarray:
    """Seeds x personas (one row for a system that does not depend on the seed)."""
    table = values.groupby([rows["seed"].fillna(-1).astype(int), rows["persona_id"]]).first().unstack()
    table = table.reindex(columns=personas)
    if list(table.index) == [-1]:
        return table.to_numpy()
    if sorted(table.index) != seeds:
        raise ValueError(f"system {rows['system'].iloc[0]!r} has seeds {sorted(table.index)}, expected {seeds}")
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
    rows = []
    for (system, judge), group in decisions.groupby(["system", "judge"], sort=False):
        judged = group[group["error"].isna()]
        per_seed = judged.groupby("seed", dropna=False)
        row = {"system": system, "judge": judge, "seeds": per_seed.ngroups}
        for metric in METRICS:
            values = outcomes(group, metric)
            mean, std = seed_spread(values.groupby(group["seed"].fillna(-1)).mean().to_numpy())
            low, high = boot.interval(_grid(group, values, seeds, personas))
            prefix = "" if metric == "rate" else f"{metric}_"
            row |= {f"{prefix}mean" if metric == "rate" else metric: mean, f"{prefix}std": std,
                    f"{prefix}ci_low": low, f"{prefix}ci_high": high}
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
    with its bootstrap CI and p-value, and the paper's relative gain (b - a) / a."""
    seeds, personas, boot = _frame(decisions)
    present = set(decisions["system"])
    rows = []
    for judge, group in decisions.groupby("judge", sort=True):
        for a, b in pairs:
            if not {a, b} <= present:
                continue
            ga, gb = group[group["system"] == a], group[group["system"] == b]
            for metric, label in METRICS.items():
                d = boot.difference(_grid(ga, outcomes(ga, metric), seeds, personas),
                                    _grid(gb, outcomes(gb, metric), seeds, personas))
                rows.append({"judge": judge, "metric": label, "a": a, "b": b, "a_value": d.a, "b_value": d.b,
                             "points": 100 * d.diff, "ci_low": 100 * d.low, "ci_high": 100 * d.high,
                             "p": d.pvalue, "relative": d.diff / d.a if d.a else np.nan})
    return pd.DataFrame(rows)


def paper_gain() -> dict:
    sft, con = paper.ACCEPTANCE["sft"], paper.ACCEPTANCE["contrastive"]
    return {"judge": "paper (LLM judge)", "metric": "LLM verdict", "a": "sft", "b": "contrastive", "a_value": sft,
            "b_value": con, "points": 100 * (con - sft), "relative": (con - sft) / sft}


def versus(decisions: pd.DataFrame, base: str) -> pd.DataFrame:
    """Every other system against `base` (the ablations). `p_holm`: Holm-adjusted within each
    metric, over every (system, judge) test of that metric."""
    others = [s for s in _ordered(decisions["system"]) if s != base]
    return with_holm(comparisons(decisions, [(base, s) for s in others]))


def with_holm(tests: pd.DataFrame) -> pd.DataFrame:
    return tests.assign(p_holm=tests.groupby("metric")["p"].transform(lambda p: pd.Series(holm(p), p.index)))


def threshold_sweep(decisions: pd.DataFrame, thresholds=THRESHOLDS) -> pd.DataFrame:
    """Each judge's accept-iff-P >= t rule for t in `thresholds`: mean over seeds per system."""
    rows = []
    for (system, judge), group in decisions.groupby(["system", "judge"], sort=False):
        for t in thresholds:
            values = outcomes(group, "rate", threshold=float(t))
            rows.append({"system": system, "judge": judge, "threshold": float(t),
                         "rate": float(values.groupby(group["seed"].fillna(-1)).mean().mean())})
    return pd.DataFrame(rows)


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


# --- recomputation ------------------------------------------------------------------------------

def _differences(saved: pd.DataFrame, now: pd.DataFrame, keys: list[str], what: str) -> list[str]:
    saved, now = saved.set_index(keys), now.set_index(keys)
    out = [f"{what}: rows {sorted(set(saved.index) ^ set(now.index))} are in only one of them"] \
        if set(saved.index) != set(now.index) else []
    for column in saved.columns.intersection(now.columns):
        a, b = saved[column], now[column].reindex(saved.index)
        if pd.api.types.is_numeric_dtype(a) and pd.api.types.is_numeric_dtype(b):
            bad = ~(np.isclose(a.astype(float), b.astype(float), rtol=1e-9, atol=1e-12, equal_nan=True))
        else:
            bad = a.astype(str) != b.astype(str)
        out += [f"{what} {key}, {column}: saved {a[key]}, recomputed {b[key]}" for key in a.index[bad]]
    return out


def recompute(results: Path, name: str = "acceptance") -> list[str]:
    """Recompute `results/<name>.csv` and `<name>_gain.csv` from `results/decisions/<name>.csv`;
    returns every difference (none: the committed tables follow from the committed decisions)."""
    decisions = read_decisions(results / "decisions" / f"{name}.csv")
    table = acceptance_table(decisions)
    saved = pd.read_csv(results / f"{name}.csv")
    out = _differences(saved, table.astype({"system": str}), ["system", "judge"], name)
    gain_file = results / f"{name}_gain.csv"
    if gain_file.is_file():
        gain = pd.read_csv(gain_file)
        ours = gain[gain["judge"] != paper_gain()["judge"]]
        now = comparisons(decisions, list(dict.fromkeys(zip(ours["a"], ours["b"], strict=True))))
        if "p_holm" in ours:
            now = with_holm(now)
        out += _differences(ours, now, ["judge", "metric", "a", "b"], f"{name}_gain")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m slm4offer.metrics",
                                     description="Recompute the acceptance tables from the per-persona decision "
                                                 "files and compare them with the saved tables.")
    parser.add_argument("results", nargs="?", default="results", help="the results folder (default: results)")
    args = parser.parse_args(argv)
    results = Path(args.results)
    names = sorted(p.stem for p in (results / "decisions").glob("*.csv"))
    if not names:
        print(f"no decision files in {results / 'decisions'}", file=sys.stderr)
        return 2
    failed = False
    for name in names:
        problems = recompute(results, name)
        table = acceptance_table(read_decisions(results / "decisions" / f"{name}.csv"))
        shown = table[["system", "judge", "mean", "ci_low", "ci_high", "expected", "sampled"]]
        print(f"## {name}: recomputed from {results / 'decisions' / (name + '.csv')}\n")
        print(shown.to_string(index=False, float_format=lambda x: f"{100 * x:.1f}"))
        print("\n" + ("\n".join(problems) if problems else f"identical to {name}.csv and {name}_gain.csv") + "\n")
        failed |= bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
