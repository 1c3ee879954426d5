"""Acceptance of the offers each system gives the test personas: run every system, judge, save.

The paper's headline is one number per model (80% SFT, 94% contrastive). Here every system's
offer for every test persona is judged, the per-persona decisions are saved
(`results/decisions/<table>.csv`), and every number is computed from them (`metrics.py`):

- random: a uniformly drawn catalog offer (one draw per persona and seed);
- popular: the offer accepted most often in the training campaign, for everyone;
- sft, contrastive: each training seed's model, greedy decoding;
- sft+rerank, contrastive+rerank: `baseline_candidates` beam candidates, of which the
  contrastive model of the same seed keeps the one closest to the persona. Both generators get
  the same reranker, so what differs between them is the generator;
- catalog by similarity: every catalog offer scored by that same contrastive model, the closest
  kept: targeting by the learned similarity with no generation (always in the catalogue);
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

from slm4offer import metrics, paper, provenance
from slm4offer.config import Config, dataset_label
from slm4offer.data import build_dataset, load_catalog
from slm4offer.domains import load_domain
from slm4offer.files import latex_text
from slm4offer.generation import generate, rerank
from slm4offer.judges import Judge, check_judge, make_judge
from slm4offer.modeling import resolve_source
from slm4offer.plots import acceptance_bars, save_figure, save_results, threshold_sweep
from slm4offer.stats import Proportion, wilson_ci
from slm4offer.training import kind_config, train
from slm4offer.world import SimulatedCustomer, parse_offer

SYSTEMS = metrics.SYSTEMS
UNSEEDED = ("popular", "best")  # systems that do not depend on the training seed
WORLD_ONLY = ("best",)  # systems that read the simulated customer: synthetic worlds only


@dataclass
class AcceptanceRun:
    """Every judged (system, seed, judge, persona) with what produced it."""

    decisions: pd.DataFrame  # metrics.KEYS + judge, accept, probability, reason, error
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
    seeded = dataclasses.replace(cfg, train_seed=seed)
    if system in ("sft", "contrastive"):
        by_id = {r["persona_id"]: r["offer"] for r in generate(seeded, system, split="test", progress=progress)}
        return [by_id[pid] for pid in test["persona_id"]]
    if system in ("sft+rerank", "contrastive+rerank", "catalog by similarity"):
        if system == "catalog by similarity":
            candidates = [[o.text for o in catalog]] * len(test)
        else:
            n = cfg.baseline_candidates
            rows = generate(dataclasses.replace(seeded, num_beams=max(cfg.num_beams, n), rerank_candidates=n),
                            system.removesuffix("+rerank"), split="test", progress=progress)
            by_id = {r["persona_id"]: r["candidates"] for r in rows}
            candidates = [by_id[pid] for pid in test["persona_id"]]
        scorer = train(kind_config(seeded, "contrastive"), "contrastive", progress=progress)
        chosen, _ = rerank(scorer.model, scorer.tokenizer, list(test["persona"]), candidates,
                           batch_size=cfg.generation_batch_size, max_persona_tokens=cfg.max_persona_tokens,
                           max_offer_tokens=cfg.max_offer_tokens)
        return chosen
    if system == "random":
        rng = np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(21, seed)))
        return [catalog[i].text for i in rng.integers(len(catalog), size=len(test))]
    if system == "popular":
        counts = Counter(o for ids in dd["train"]["accepted_offer_ids"] for o in ids)
        top = min(counts, key=lambda o: (-counts[o], o))  # ties: the smallest id, deterministically
        return [next(o.text for o in catalog if o.offer_id == top)] * len(test)
    if system == "best":
        if cfg.data:
            raise ValueError("system 'best' reads the simulated customer, which your own data does not have")
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
    judges = judges or cfg.judge_names
    for name in judges:  # before hours of training, not after
        check_judge(cfg, name)
    test = list(build_dataset(cfg, progress=progress)["test"])
    if cfg.data:  # no simulated customer, so no best-offer ceiling
        systems = tuple(s for s in systems if s not in WORLD_ONLY)
    offers = {(system, seed): system_offers(cfg, system, cfg.train_seed if seed is None else seed, progress)
              for system in systems for seed in ([None] if system in UNSEEDED else train_seeds(cfg))}
    decisions = judge_all(cfg, test, offers, judges, progress)
    return AcceptanceRun(decisions, resolve_source(cfg).kind, train_seeds(cfg), len(test))


def persona_draws(cfg: Config, persona_ids: list[str]) -> dict[str, float]:
    """One uniform per persona (world seed), shared by every system and seed: the sampled rate's
    customers, so that two systems are compared on the same draws."""
    ids = sorted(set(persona_ids))
    u = np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(31,))).random(len(ids))
    return dict(zip(ids, u.tolist(), strict=True))


def judge_all(cfg: Config, personas: list[dict], offers: dict[tuple[str, int | None], list[str]],
              judges: list[str], progress: bool = True) -> pd.DataFrame:
    """One row per judge, (system, seed) and persona: what was offered, whether it names a catalog
    offer, the verdict with its probability, reason or error, and the persona's draw `u`."""
    ids = [p["persona_id"] for p in personas]
    u = persona_draws(cfg, ids)
    read = offer_reader(cfg)
    frames = []
    for name in judges:
        judge: Judge = make_judge(cfg, name, progress=progress)
        for (system, seed), texts in offers.items():
            facts = [read(text) for text in texts]
            decisions = judge(personas, texts)
            frames.append(pd.DataFrame({
                "system": system, "seed": seed, "persona_id": ids, "offer": texts,
                "offer_id": [f[0] for f in facts], "parsed": [f[1] for f in facts],
                "in_catalogue": [f[2] for f in facts], "u": [u[i] for i in ids],
                "judge": name, "accept": [d.accept for d in decisions],
                "probability": [d.probability for d in decisions], "reason": [d.reason for d in decisions],
                "error": [d.error for d in decisions]}))
    decisions = pd.concat(frames, ignore_index=True)
    decisions["seed"] = decisions["seed"].astype("Int64")
    return decisions


def offer_reader(cfg: Config):
    """text -> (offer id or None, parsed, in the catalogue). A synthetic world reads the slots back
    from the text; your own catalogue has no slots, so an offer is one of it when its text is a
    catalogue offer's (spacing and case aside)."""
    catalog = load_catalog(cfg.dataset_dir)
    if cfg.data:
        by_text = {" ".join(o.text.lower().split()): o.offer_id for o in catalog}

        def read(text: str) -> tuple[str | None, bool, bool]:
            oid = by_text.get(" ".join(text.lower().split()))
            return oid, oid is not None, oid is not None
        return read
    domain, ids = load_domain(cfg.domain), {o.offer_id for o in catalog}

    def parse(text: str) -> tuple[str | None, bool, bool]:
        x = parse_offer(domain, text)
        return (x.offer_id if x.ok else None), x.ok, x.ok and x.offer_id in ids
    return parse


def judged_rate(judge: Judge, split, generations: list[dict]) -> Proportion:
    """Share of `split`'s personas whose generated offer `judge` accepts (errors left out)."""
    offer = {g["persona_id"]: g["offer"] for g in generations}
    rows = list(split)
    decisions = [d for d in judge(rows, [offer[r["persona_id"]] for r in rows]) if d.error is None]
    return wilson_ci(sum(d.accept for d in decisions), len(decisions))


def caption(cfg: Config, run: AcceptanceRun, commit: str, figure: bool = False) -> str:
    seeds = ", ".join(map(str, run.seeds))
    spread = ("Bars: mean over seeds; whiskers: 95% CI; dots: single seeds. " if figure
              else "Mean ± std over seeds, with the 95% CI in brackets. ")
    return (f"Acceptance of the offer each system gives the {run.n_personas} test personas "
            f"({dataset_label(cfg)}, profile {cfg.profile}" + ("" if cfg.data else f", world seed {cfg.seed}") + "; "
            f"T5 {run.model_source}, training seeds {seeds}; judges: "
            f"{', '.join(sorted(set(run.decisions['judge'])))}; accept when P(accept) ≥ {cfg.accept_threshold}; "
            f"rerankers: the contrastive model of the same seed, {cfg.baseline_candidates} beam candidates). "
            f"{spread}CIs: percentile bootstrap over training seeds and personas together "
            f"({metrics.N_RESAMPLES} resamples). Paper: pretrained T5-Small judged by an LLM. Commit {commit}.")


def rate_cell(row: pd.Series, metric: str = "rate") -> str:
    """'46.2 ± 1.3 [43.9, 48.5]': a table row's `metric` in points, ± its std over seeds (with
    several seeds), and its 95% CI."""
    mean, std, low, high = ("mean", "std", "ci_low", "ci_high") if metric == "rate" else (
        metric, f"{metric}_std", f"{metric}_ci_low", f"{metric}_ci_high")
    spread = f" ± {100 * row[std]:.1f}" if row["seeds"] > 1 else ""
    return f"{100 * row[mean]:.1f}{spread} [{100 * row[low]:.1f}, {100 * row[high]:.1f}]"


def formatted(table: pd.DataFrame, metric: str = "rate") -> pd.DataFrame:
    """Rows = systems, one column per judge ('46.2 ± 1.3 [43.9, 48.5]') under `metric`, and the paper."""
    cells = {}
    for _, r in table.iterrows():
        errors = f" ({r['errors']} errors)" if r["errors"] else ""
        cells.setdefault(r["system"], {})[f"{r['judge']} judge"] = rate_cell(r, metric) + errors
    out = pd.DataFrame.from_dict(cells, orient="index")
    out["paper"] = [f"{100 * paper.ACCEPTANCE[s]:.0f}" if s in paper.ACCEPTANCE else "—" for s in out.index]
    out.index.name = "system"
    return out


def offer_facts(table: pd.DataFrame) -> pd.DataFrame:
    """Per system: parse and in-catalogue rates and distinct catalog offers (judge-independent)."""
    first = table[table["judge"] == table["judge"].iloc[0]]
    return first.set_index("system")[["parsed", "in_catalogue", "distinct_offers"]]


@dataclass
class AcceptanceResults:
    run: AcceptanceRun
    table: pd.DataFrame   # metrics.acceptance_table
    tests: pd.DataFrame   # metrics.paired_tests, SFT vs contrastive per seed
    gain: pd.DataFrame    # metrics.comparisons, and the paper's gain
    sweep: pd.DataFrame   # metrics.threshold_sweep


def acceptance_results(cfg: Config, judges: list[str] | None = None, progress: bool = True) -> AcceptanceResults:
    """`evaluate` and its statistics."""
    run = evaluate(cfg, judges, progress=progress)
    gain = pd.concat([metrics.comparisons(run.decisions), pd.DataFrame([metrics.paper_gain()])], ignore_index=True)
    return AcceptanceResults(run, metrics.acceptance_table(run.decisions), metrics.paired_tests(run.decisions),
                             gain, metrics.threshold_sweep(run.decisions))


def save_acceptance(cfg: Config, res: AcceptanceResults, name: str = "acceptance") -> list[plt.Figure]:
    """Write `results/<name>.{csv,md,tex}`, `<name>_gain.csv`, `<name>_paired.csv`,
    `<name>_threshold_sweep.csv`, `decisions/<name>.csv` and `figures/<name>{,_threshold_sweep}.{png,pdf}`
    (all recorded in the manifest). Both figures stay open, so a notebook shows them."""
    extra = {"model_source": res.run.model_source, "training_seeds": res.run.seeds,
             "judges": sorted(set(res.run.decisions["judge"]))}
    record = provenance.collect(cfg, stage="generate", with_time=True, **extra)
    text = caption(cfg, res.run, record["git_commit"])
    wide = formatted(res.table)
    by_metric = pd.concat({label: formatted(res.table, metric).drop(columns="paper")
                           for metric, label in metrics.METRICS.items()}, axis=1)
    md = (f"# Acceptance rates\n\n{text}\n\n## Thresholded rate (the judge's verdict)\n\n{wide.to_markdown()}\n\n"
          f"## Every metric\n\nthresholded rate: accept iff P(accept) ≥ {cfg.accept_threshold}; expected "
          f"acceptance: mean P(accept), an offer not in the catalogue counting as 0; sampled rate: each persona "
          f"accepts iff its uniform draw u < P(accept), one u per persona for every system.\n\n"
          f"{by_metric.to_markdown()}\n\n## The offers\n\nShare that parse as an offer of the domain, share in "
          f"the catalogue, and distinct catalog offers given (mean over seeds).\n\n"
          f"{offer_facts(res.table).to_markdown(floatfmt='.3f')}\n\n"
          f"## Comparisons (b − a, paired on seeds and personas)\n\nPoints with the bootstrap 95% CI and "
          f"two-sided p; relative as in the paper, (b − a) / a.\n\n"
          f"{res.gain.to_markdown(index=False, floatfmt='.3g')}\n\n"
          f"## Paired test per seed (exact McNemar, same test personas)\n\n"
          f"{res.tests.to_markdown(index=False, floatfmt='.4g')}\n")
    tex = wide.to_latex(caption=latex_text(text), label=f"tab:{name}", escape=True)
    save_results(cfg, {f"{name}.csv": res.table.to_csv(index=False), f"{name}.md": md, f"{name}.tex": tex,
                       f"{name}_gain.csv": res.gain.to_csv(index=False),
                       f"{name}_paired.csv": res.tests.to_csv(index=False),
                       f"{name}_threshold_sweep.csv": res.sweep.to_csv(index=False),
                       f"decisions/{name}.csv": metrics.to_wide(res.run.decisions).to_csv(index=False)}, record)
    sweep = threshold_sweep(res.sweep, cfg.accept_threshold,
                            f"Acceptance against the judge's threshold ({dataset_label(cfg)}, profile "
                            f"{cfg.profile}, mean over training seeds {', '.join(map(str, res.run.seeds))}; "
                            f"commit {record['git_commit']}).")
    save_figure(sweep, f"{name}_threshold_sweep", cfg, stage="generate", **extra)
    fig = acceptance_bars(res.table, res.run.decisions, paper.ACCEPTANCE,
                          caption(cfg, res.run, record["git_commit"], figure=True))
    save_figure(fig, name, cfg, stage="generate", **extra)
    return [fig, sweep]
