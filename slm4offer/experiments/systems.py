"""The systems of the acceptance table, in table order: what each offers a test persona.

`SYSTEMS` is the registry. A new system is one entry here: the acceptance run, the tables, the
figures' colours, the generated sentences and `make check`'s tolerances all read it.

- random: a uniformly drawn catalog offer (one draw per persona and seed);
- popular: the offer accepted most often in the training campaign, for everyone;
- sft, contrastive: each training seed's model, greedy decoding;
- sft+rerank, contrastive+rerank: `baseline_candidates` beam candidates, of which the
  contrastive model of the same seed keeps the one closest to the persona. Both generators get
  the same reranker, so what differs between them is the generator;
- catalog by similarity: every catalog offer scored by that same contrastive model, the closest
  kept: targeting by the learned similarity with no generation (always in the catalogue);
- sft, sampled and sft beams, random pick: controls with more variety than SFT's greedy offer and
  no contrastive signal (an offer sampled from SFT's distribution; one of its beam candidates
  drawn at random), so that a gain from less collapse onto a few offers shows up without one;
- best: each persona's best catalog offer under the simulated customer (the ceiling; only for
  synthetic worlds, since it reads the customer).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from slm4offer.config import Config
from slm4offer.data.dataset import build_dataset, load_catalog
from slm4offer.data.world import SimulatedCustomer
from slm4offer.domains import load_domain
from slm4offer.errors import InvalidValue
from slm4offer.model.generation import generate
from slm4offer.model.inference import generate_offers, rerank
from slm4offer.model.training import kind_config, train


@dataclass(frozen=True)
class System:
    """One row of the acceptance table and how its offers are made.

    `offers(cfg, seed, progress)` gives the offer text for each test persona, in split order.
    """

    offers: Callable[[Config, int, bool], list[str]]
    seeded: bool = True       # its offers depend on the training seed (else judged once)
    trained: bool = True      # a trained model makes its offers: a rerun on another machine may move them
    world_only: bool = False  # it reads the simulated customer, so it exists for synthetic worlds only
    baseline: bool = False    # frames the numbers (floor, ceiling) rather than targets with a model
    ranked: bool = False      # in `make check`'s conclusion on the order of the systems
    color: str = "#7f7f7f"    # in every figure


def _generated(kind: str) -> Callable[[Config, int, bool], list[str]]:
    def offers(cfg: Config, seed: int, progress: bool) -> list[str]:
        test = build_dataset(cfg, progress=progress)["test"]
        seeded = dataclasses.replace(cfg, train_seed=seed)
        by_id = {r["persona_id"]: r["offer"] for r in generate(seeded, kind, split="test", progress=progress)}
        return [by_id[pid] for pid in test["persona_id"]]
    return offers


def _reranked(kind: str | None) -> Callable[[Config, int, bool], list[str]]:
    """`kind`'s beam candidates (None: the whole catalogue) reranked by the contrastive model of the seed."""
    def offers(cfg: Config, seed: int, progress: bool) -> list[str]:
        test = build_dataset(cfg, progress=progress)["test"]
        seeded = dataclasses.replace(cfg, train_seed=seed)
        if kind is None:
            candidates = [[o.text for o in load_catalog(cfg.dataset_dir)]] * len(test)
        else:
            candidates = _beam_candidates(cfg, kind, seed, progress)
        scorer = train(kind_config(seeded, "contrastive"), "contrastive", progress=progress)
        chosen, _ = rerank(scorer.model, scorer.tokenizer, list(test["persona"]), candidates,
                           batch_size=cfg.generation_batch_size, max_persona_tokens=cfg.max_persona_tokens,
                           max_offer_tokens=cfg.max_offer_tokens, progress=progress,
                           desc=f"rerank {'the catalogue' if kind is None else kind + ' beams'}, seed {seed}")
        return chosen
    return offers


def _sampled(kind: str) -> Callable[[Config, int, bool], list[str]]:
    """One offer per test persona sampled from `kind`'s distribution (temperature 1), seeded per
    training seed."""
    def offers(cfg: Config, seed: int, progress: bool) -> list[str]:
        test = build_dataset(cfg, progress=progress)["test"]
        trained = train(kind_config(dataclasses.replace(cfg, train_seed=seed), kind), kind, progress=progress)
        draw = int(np.random.SeedSequence(cfg.seed, spawn_key=(41, seed)).generate_state(1)[0])
        return [o[0] for o in generate_offers(trained.model, trained.tokenizer, list(test["persona"]),
                                              max_new_tokens=cfg.max_offer_tokens,
                                              batch_size=cfg.generation_batch_size,
                                              max_persona_tokens=cfg.max_persona_tokens, progress=progress,
                                              desc=f"sample: {kind} seed {seed}, test", sample_seed=draw)]
    return offers


def _beam_candidates(cfg: Config, kind: str, seed: int, progress: bool) -> list[list[str]]:
    """`kind`'s `baseline_candidates` beam candidates per test persona, in split order (cached)."""
    test = build_dataset(cfg, progress=progress)["test"]
    n = cfg.baseline_candidates
    rows = generate(dataclasses.replace(cfg, train_seed=seed, num_beams=max(cfg.num_beams, n), rerank_candidates=n),
                    kind, split="test", progress=progress)
    by_id = {r["persona_id"]: r["candidates"] for r in rows}
    return [by_id[pid] for pid in test["persona_id"]]


def _random_beam(kind: str) -> Callable[[Config, int, bool], list[str]]:
    """One of `kind`'s beam candidates drawn uniformly per persona: the reranker's choices with
    no similarity behind the choice."""
    def offers(cfg: Config, seed: int, progress: bool) -> list[str]:
        candidates = _beam_candidates(cfg, kind, seed, progress)
        rng = np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(42, seed)))
        return [c[int(rng.integers(len(c)))] for c in candidates]
    return offers


def _random(cfg: Config, seed: int, progress: bool) -> list[str]:
    test, catalog = build_dataset(cfg, progress=progress)["test"], load_catalog(cfg.dataset_dir)
    rng = np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(21, seed)))
    return [catalog[i].text for i in rng.integers(len(catalog), size=len(test))]


def _popular(cfg: Config, seed: int, progress: bool) -> list[str]:
    dd, catalog = build_dataset(cfg, progress=progress), load_catalog(cfg.dataset_dir)
    counts = Counter(o for ids in dd["train"]["accepted_offer_ids"] for o in ids)
    top = min(counts, key=lambda o: (-counts[o], o))  # ties: the smallest id, deterministically
    return [next(o.text for o in catalog if o.offer_id == top)] * len(dd["test"])


def _best(cfg: Config, seed: int, progress: bool) -> list[str]:
    if cfg.data:
        raise InvalidValue("system 'best' reads the simulated customer, which your own data does not have")
    test, catalog = build_dataset(cfg, progress=progress)["test"], load_catalog(cfg.dataset_dir)
    customer = SimulatedCustomer(load_domain(cfg.domain), cfg.seed)
    p = customer.probability(list(test), [o.slots for o in catalog])
    return [catalog[j].text for j in p.argmax(axis=1)]


SYSTEMS: dict[str, System] = {
    "random": System(_random, trained=False, baseline=True, ranked=True, color="#b0b0b0"),
    "popular": System(_popular, seeded=False, trained=False, baseline=True, ranked=True, color="#937860"),
    "sft": System(_generated("sft"), ranked=True, color="#4c72b0"),
    "sft+rerank": System(_reranked("sft"), color="#9db4da"),
    "contrastive": System(_generated("contrastive"), ranked=True, color="#c44e52"),
    "contrastive+rerank": System(_reranked("contrastive"), color="#e3a0a2"),
    "catalog by similarity": System(_reranked(None), color="#8172b2"),
    "sft, sampled": System(_sampled("sft"), color="#64b5cd"),
    "sft beams, random pick": System(_random_beam("sft"), color="#2f4b7c"),
    "best": System(_best, seeded=False, trained=False, world_only=True, baseline=True, ranked=True,
                   color="#55a868"),
}


def system_offers(cfg: Config, system: str, seed: int, progress: bool = True) -> list[str]:
    """The offer text `system` gives each test persona, in split order (`seed`: training seed)."""
    if system not in SYSTEMS:
        raise InvalidValue(f"system={system!r}: must be one of {', '.join(SYSTEMS)}")
    return SYSTEMS[system].offers(cfg, seed, progress)
