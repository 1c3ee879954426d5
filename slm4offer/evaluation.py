"""Acceptance of the offers each system gives the test personas, judged, with its uncertainty.

The paper's headline is one number per model (80% SFT, 94% contrastive). Here every number
comes with what frames it: a Wilson 95% CI, mean +- std over training seeds, SFT vs contrastive
paired on the same personas (exact McNemar test), and baselines judged the same way:

- random: a uniformly drawn catalog offer (one draw per persona and seed);
- popular: the offer accepted most often in the training campaign, for everyone;
- best: each persona's best catalog offer under the simulated customer (the ceiling; only for
  synthetic worlds, since it reads the customer).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from slm4offer import paper, provenance
from slm4offer.config import Config, domain_name
from slm4offer.data import build_dataset, load_catalog
from slm4offer.domains import load_domain
from slm4offer.files import latex_text
from slm4offer.generation import generate
from slm4offer.judges import Judge, make_judge
from slm4offer.modeling import resolve_source
from slm4offer.plots import acceptance_bars, save_figure, save_results
from slm4offer.stats import Proportion, mcnemar_exact, seed_spread, wilson_ci
from slm4offer.world import SimulatedCustomer

SYSTEMS = ("random", "popular", "sft", "contrastive", "best")
SEEDED = ("random", "sft", "contrastive")  # systems that vary with the training seed


@dataclass
class AcceptanceRun:
    """Every judged (system, seed, judge, persona) with what produced it."""

    decisions: pd.DataFrame  # system, seed, judge, persona_id, offer, accept, probability, reason, error
    model_source: str  # pretrained / scratch
    seeds: list[int]
    n_personas: int


def train_seeds(cfg: Config) -> list[int]:
    return [cfg.train_seed + i for i in range(cfg.eval_seeds)]


def system_offers(cfg: Config, system: str, seed: int, progress: bool = True) -> list[str]:
    """The offer text `system` gives each test persona, in split order (`seed`: training seed)."""
    dd = build_dataset(cfg, progress=progress)
    test = dd["test"]
    catalog = load_catalog(cfg.dataset_dir)
    if system in ("sft", "contrastive"):
        rows = generate(dataclasses.replace(cfg, train_seed=seed), system, split="test", progress=progress)
        by_id = {r["persona_id"]: r["offer"] for r in rows}
        return [by_id[pid] for pid in test["persona_id"]]
    if system == "random":
        rng = np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(21, seed)))
        return [catalog[i].text for i in rng.integers(len(catalog), size=len(test))]
    if system == "popular":
        counts = Counter(o for ids in dd["train"]["accepted_offer_ids"] for o in ids)
        top = min(counts, key=lambda o: (-counts[o], o))  # ties: the smallest id, deterministically
        return [next(o.text for o in catalog if o.offer_id == top)] * len(test)
    if system == "best":
        customer = SimulatedCustomer(load_domain(cfg.domain), cfg.seed)
        p = customer.probability(list(test), [o.slots for o in catalog])
        return [catalog[j].text for j in p.argmax(axis=1)]
    raise ValueError(f"system={system!r}: must be one of {', '.join(SYSTEMS)}")


def evaluate(cfg: Config, judges: list[str] | None = None, systems: tuple[str, ...] = SYSTEMS,
             progress: bool = True) -> AcceptanceRun:
    """Judge every system's offers for the test personas with every judge.

    Trains (or loads) the models of `eval_seeds` training seeds and generates their offers
    (both cached), so the first call on a profile takes as long as that training.
    """
    test = list(build_dataset(cfg, progress=progress)["test"])
    offers = {(system, seed): system_offers(cfg, system, cfg.train_seed if seed is None else seed, progress)
              for system in systems for seed in (train_seeds(cfg) if system in SEEDED else [None])}
    decisions = judge_all(cfg, test, offers, judges or cfg.judge_names, progress)
    return AcceptanceRun(decisions, resolve_source(cfg).kind, train_seeds(cfg), len(test))


def judge_all(cfg: Config, personas: list[dict], offers: dict[tuple[str, int | None], list[str]],
              judges: list[str], progress: bool = True) -> pd.DataFrame:
    """One row per judge, (system, seed) and persona: the verdict, its probability, reason or error."""
    frames = []
    for name in judges:
        judge: Judge = make_judge(cfg, name, progress=progress)
        for (system, seed), texts in offers.items():
            decisions = judge(personas, texts)
            frames.append(pd.DataFrame({
                "system": system, "seed": seed, "judge": name, "persona_id": [p["persona_id"] for p in personas],
                "offer": texts, "accept": [d.accept for d in decisions],
                "probability": [d.probability for d in decisions], "reason": [d.reason for d in decisions],
                "error": [d.error for d in decisions]}))
    decisions = pd.concat(frames, ignore_index=True)
    decisions["seed"] = decisions["seed"].astype("Int64")
    return decisions


def judged_rate(judge: Judge, split, generations: list[dict]) -> Proportion:
    """Share of `split`'s personas whose generated offer `judge` accepts (errors left out)."""
    offer = {g["persona_id"]: g["offer"] for g in generations}
    rows = list(split)
    decisions = [d for d in judge(rows, [offer[r["persona_id"]] for r in rows]) if d.error is None]
    return wilson_ci(sum(d.accept for d in decisions), len(decisions))


def acceptance_table(decisions: pd.DataFrame) -> pd.DataFrame:
    """One row per (system, judge): mean +- std over seeds, pooled Wilson CI, errors, the paper."""
    rows = []
    for (system, judge), group in decisions.groupby(["system", "judge"], sort=False):
        judged = group[group["error"].isna()]
        per_seed = judged.groupby("seed", dropna=False)["accept"].mean()
        mean, std = seed_spread(per_seed.to_numpy())
        k, n = int(judged["accept"].sum()), len(judged)
        ci = wilson_ci(k, n) if n else None
        rows.append({"system": system, "judge": judge, "seeds": len(per_seed), "mean": mean, "std": std,
                     "accepted": k, "judged": n, "ci_low": ci.low if ci else np.nan,
                     "ci_high": ci.high if ci else np.nan, "errors": int(group["error"].notna().sum()),
                     "mean_probability": float(judged["probability"].astype(float).mean()),
                     "paper": paper.ACCEPTANCE.get(system, np.nan)})
    table = pd.DataFrame(rows)
    present = list(dict.fromkeys(table["system"]))
    order = [s for s in SYSTEMS if s in present] + [s for s in present if s not in SYSTEMS]
    table["system"] = pd.Categorical(table["system"], order)
    return table.sort_values(["system", "judge"]).reset_index(drop=True)


def paired_tests(decisions: pd.DataFrame, a: str = "sft", b: str = "contrastive") -> pd.DataFrame:
    """Exact McNemar test of `a` vs `b` per judge and seed, on personas both got a verdict for."""
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


def improvement(table: pd.DataFrame, a: str = "sft", b: str = "contrastive") -> pd.DataFrame:
    """`b` over `a` per judge, the paper's way ((94 - 80) / 80 = 17.5%) and in points."""
    rows = []
    for judge, group in table.groupby("judge"):
        rate = group.set_index("system")["mean"]
        if a in rate and b in rate:
            rows.append({"judge": judge, f"{a}": rate[a], f"{b}": rate[b], "points": 100 * (rate[b] - rate[a]),
                         "relative": (rate[b] - rate[a]) / rate[a] if rate[a] else np.nan})
    ours = pd.DataFrame(rows)
    theirs = pd.DataFrame([{"judge": "paper (LLM judge)", a: paper.ACCEPTANCE[a], b: paper.ACCEPTANCE[b],
                            "points": 100 * (paper.ACCEPTANCE[b] - paper.ACCEPTANCE[a]),
                            "relative": (paper.ACCEPTANCE[b] - paper.ACCEPTANCE[a]) / paper.ACCEPTANCE[a]}])
    return pd.concat([ours, theirs], ignore_index=True)


def caption(cfg: Config, run: AcceptanceRun, commit: str, figure: bool = False) -> str:
    seeds = ", ".join(map(str, run.seeds))
    spread = ("Bars: mean over seeds; whiskers: Wilson 95% CI of the pooled count; dots: single seeds. "
              if figure else "Mean ± std over seeds, with the Wilson 95% CI of the pooled count in brackets. ")
    return (f"Acceptance of the offer each system gives the {run.n_personas} test personas "
            f"({domain_name(cfg.domain)} world, profile {cfg.profile}, world seed {cfg.seed}; "
            f"T5 {run.model_source}, training seeds {seeds}; judges: "
            f"{', '.join(sorted(set(run.decisions['judge'])))}; accept when P(accept) ≥ {cfg.accept_threshold}). "
            f"{spread}Paper: pretrained T5-Small judged by an LLM. "
            f"Commit {commit}.")


def formatted(table: pd.DataFrame) -> pd.DataFrame:
    """Rows = systems, one column per judge ('46.2 +- 1.3 [43.9, 48.5]'), and the paper's number."""
    cells = {}
    for _, r in table.iterrows():
        spread = f" ± {100 * r['std']:.1f}" if r["seeds"] > 1 else ""
        errors = f" ({r['errors']} errors)" if r["errors"] else ""
        cells.setdefault(r["system"], {})[f"{r['judge']} judge"] = (
            f"{100 * r['mean']:.1f}{spread} [{100 * r['ci_low']:.1f}, {100 * r['ci_high']:.1f}]{errors}")
    out = pd.DataFrame.from_dict(cells, orient="index")
    out["paper"] = [f"{100 * paper.ACCEPTANCE[s]:.0f}" if s in paper.ACCEPTANCE else "—" for s in out.index]
    out.index.name = "system"
    return out


@dataclass
class AcceptanceResults:
    run: AcceptanceRun
    table: pd.DataFrame   # acceptance_table
    tests: pd.DataFrame   # paired_tests, SFT vs contrastive
    gain: pd.DataFrame    # improvement, ours and the paper's


def acceptance_results(cfg: Config, judges: list[str] | None = None, progress: bool = True) -> AcceptanceResults:
    """`evaluate` and its statistics."""
    run = evaluate(cfg, judges, progress=progress)
    table = acceptance_table(run.decisions)
    return AcceptanceResults(run, table, paired_tests(run.decisions), improvement(table))


def save_acceptance(cfg: Config, res: AcceptanceResults, name: str = "acceptance") -> plt.Figure:
    """Write `results/<name>.{csv,md,tex}`, `<name>_paired.csv` and `figures/<name>.{png,pdf}`
    (all recorded in the manifest); return the figure for display."""
    extra = {"model_source": res.run.model_source, "training_seeds": res.run.seeds,
             "judges": sorted(set(res.run.decisions["judge"]))}
    record = provenance.collect(cfg, stage="generate", with_time=True, **extra)
    text = caption(cfg, res.run, record["git_commit"])
    wide = formatted(res.table)
    md = (f"# Acceptance rates\n\n{text}\n\n{wide.to_markdown()}\n\n"
          f"## Contrastive vs SFT\n\nRelative improvement computed as in the paper, (b - a) / a, and in "
          f"percentage points.\n\n{res.gain.to_markdown(index=False, floatfmt='.3f')}\n\n"
          f"## Paired test per seed (exact McNemar, same test personas)\n\n"
          f"{res.tests.to_markdown(index=False, floatfmt='.4g')}\n")
    tex = wide.to_latex(caption=latex_text(text), label=f"tab:{name}", escape=True)
    save_results(cfg, {f"{name}.csv": res.table.to_csv(index=False), f"{name}.md": md, f"{name}.tex": tex,
                       f"{name}_paired.csv": res.tests.to_csv(index=False)}, record)
    fig = acceptance_bars(res.table, res.run.decisions, paper.ACCEPTANCE,
                          caption(cfg, res.run, record["git_commit"], figure=True))
    save_figure(fig, name, cfg, stage="generate", **extra)
    return fig


def headline(res: AcceptanceResults, alpha: float = 0.05) -> str:
    """The result in sentences, per judge, written from the numbers (so never out of date)."""
    lines = []
    table = res.table.set_index(["judge", "system"])
    for judge in sorted(set(res.table["judge"])):
        t = table.loc[judge]
        if not {"sft", "contrastive"} <= set(t.index):
            continue
        gain = res.gain.set_index("judge").loc[judge]
        tests = res.tests[res.tests["judge"] == judge]
        higher = int((tests["contrastive_rate"] > tests["sft_rate"]).sum())
        lower = int((tests["contrastive_rate"] < tests["sft_rate"]).sum())
        significant = int((tests["mcnemar_p"] < alpha).sum())
        theirs = paper.ACCEPTANCE["contrastive"] / paper.ACCEPTANCE["sft"] - 1
        seeds = f"{len(tests)} seed{'s' * (len(tests) != 1)}"
        line = (f"{judge} judge: SFT {100 * t.loc['sft', 'mean']:.1f}%, contrastive "
                f"{100 * t.loc['contrastive', 'mean']:.1f}% (paper: {100 * paper.ACCEPTANCE['sft']:.0f}% -> "
                f"{100 * paper.ACCEPTANCE['contrastive']:.0f}%); contrastive - SFT = {gain['points']:+.1f} points, "
                f"{100 * gain['relative']:+.1f}% relative (paper: {100 * theirs:+.1f}%). Over {seeds} contrastive "
                f"was higher in {higher} and lower in {lower}; the paired McNemar test gave p < {alpha} in "
                f"{significant} of {len(tests)}.")
        if {"random", "best"} <= set(t.index):
            lo, hi = t.loc["random", "mean"], t.loc["best", "mean"]
            if hi > lo:
                share = [(t.loc[m, "mean"] - lo) / (hi - lo) for m in ("sft", "contrastive")]
                line += (f" Of the gap between a random offer ({100 * lo:.1f}%) and each persona's best offer "
                         f"({100 * hi:.1f}%), SFT closes {100 * share[0]:.0f}% and contrastive {100 * share[1]:.0f}%.")
        lines.append(line)
    return "\n".join(lines)
