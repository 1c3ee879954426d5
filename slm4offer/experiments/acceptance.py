"""Acceptance of the offers each system gives the test personas: run every system and judge.

The paper's headline is one number per model (80% SFT, 94% contrastive). Here every system's
offer (`systems.py`) for every test persona is judged, the per-persona decisions are kept, and
every number is computed from them (`metrics.py`); `report.tables.save_acceptance` writes them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

from slm4offer.config import Config
from slm4offer.data.dataset import build_dataset
from slm4offer.data.userdata import offer_reader
from slm4offer.experiments import metrics
from slm4offer.experiments.systems import SYSTEMS, system_offers
from slm4offer.judges import check_judge, make_judge
from slm4offer.judges.base import Judge
from slm4offer.model.modeling import resolve_source
from slm4offer.model.training import KINDS, is_trained
from slm4offer.stats import Proportion, wilson_ci


@dataclass
class AcceptanceRun:
    """Every judged (system, seed, judge, persona) with what produced it."""

    decisions: pd.DataFrame  # metrics.KEYS + judge, accept, probability, reason, error
    model_source: str  # pretrained / scratch
    seeds: list[int]
    n_personas: int


def train_seeds(cfg: Config) -> list[int]:
    return [cfg.train_seed + i for i in range(cfg.eval_seeds)]


def evaluate(cfg: Config, judges: list[str] | None = None, systems: tuple[str, ...] = tuple(SYSTEMS),
             progress: bool = True) -> AcceptanceRun:
    """Judge every system's offers for the test personas with every judge.

    Trains (or loads) the models of `eval_seeds` training seeds and generates their offers
    (both cached), so the first call on a profile takes as long as that training.
    """
    judges = judges or cfg.judge_names
    for name in judges:  # before hours of training, not after
        check_judge(cfg, name)
    test = list(build_dataset(cfg, progress=progress)["test"])
    pending = [f"{kind} seed {seed}" for seed in train_seeds(cfg) for kind in KINDS
               if not is_trained(dataclasses.replace(cfg, train_seed=seed), kind)]
    if pending and progress:
        print(f"evaluate: training {len(pending)} model(s) first ({', '.join(pending)}); the other "
              f"{len(KINDS) * len(train_seeds(cfg)) - len(pending)} are cached", flush=True)
    if cfg.data:  # no simulated customer, so no best-offer ceiling
        systems = tuple(s for s in systems if not SYSTEMS[s].world_only)
    offers = {(system, seed): system_offers(cfg, system, cfg.train_seed if seed is None else seed, progress)
              for system in systems for seed in (train_seeds(cfg) if SYSTEMS[system].seeded else [None])}
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


def judged_rate(judge: Judge, split, generations: list[dict]) -> Proportion:
    """Share of `split`'s personas whose generated offer `judge` accepts (errors left out)."""
    offer = {g["persona_id"]: g["offer"] for g in generations}
    rows = list(split)
    decisions = [d for d in judge(rows, [offer[r["persona_id"]] for r in rows]) if d.error is None]
    return wilson_ci(sum(bool(d.accept) for d in decisions), len(decisions))


@dataclass
class AcceptanceResults:
    run: AcceptanceRun
    table: pd.DataFrame   # metrics.acceptance_table
    tests: pd.DataFrame   # metrics.paired_tests, SFT vs contrastive per seed
    gain: pd.DataFrame    # metrics.comparisons, and the paper's gain (synthetic worlds only)
    sweep: pd.DataFrame   # metrics.threshold_sweep


def acceptance_results(cfg: Config, judges: list[str] | None = None, progress: bool = True) -> AcceptanceResults:
    """`evaluate` and its statistics."""
    run = evaluate(cfg, judges, progress=progress)
    gain = metrics.comparisons(run.decisions)
    if not cfg.data:  # the paper's gain was measured on its data, not on yours
        gain = pd.concat([gain, pd.DataFrame([metrics.paper_gain()])], ignore_index=True)
    return AcceptanceResults(run, metrics.acceptance_table(run.decisions), metrics.paired_tests(run.decisions),
                             gain, metrics.threshold_sweep(run.decisions))
