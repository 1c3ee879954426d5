"""The synthetic world's own customer as a judge: the ground truth of the synthetic world.

It reads the slots back from the text; unparseable or off-catalog text is a reject with that reason.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from slm4offer.config import Config
from slm4offer.data.dataset import build_dataset, load_catalog
from slm4offer.data.world import SimulatedCustomer, parse_offer
from slm4offer.domains import Domain, load_domain
from slm4offer.judges.base import Decision, check_pairs


class SimulatedJudge:
    """The world's customer: P(accept) from its weights, for catalog offers only."""

    name = "simulated"

    def __init__(self, domain: Domain, seed: int, catalog_ids: set[str], threshold: float = 0.5):
        self.domain, self.catalog_ids, self.threshold = domain, catalog_ids, threshold
        self.customer = SimulatedCustomer(domain, seed)

    def __call__(self, personas: Sequence[dict], offers: Sequence[str]) -> list[Decision]:
        check_pairs(personas, offers)
        readings = {text: parse_offer(self.domain, text) for text in dict.fromkeys(offers)}  # each text once
        parsed = [readings[text] for text in offers]
        p = self.probabilities(personas, [x.slots if x.offer_id in self.catalog_ids else None for x in parsed])
        decisions = []
        for x, prob in zip(parsed, p, strict=True):
            if not x.ok:
                decisions.append(Decision(False, f"unparseable offer: {x.reason}"))
            elif x.offer_id not in self.catalog_ids:
                decisions.append(Decision(False, f"off-catalog offer {x.offer_id}"))
            else:
                accept = bool(prob >= self.threshold)
                decisions.append(Decision(accept, f"P(accept) = {prob:.3f} {'>=' if accept else '<'} "
                                                  f"{self.threshold}", float(prob)))
        return decisions

    def probabilities(self, personas: Sequence[dict], slots: Sequence[dict | None]) -> np.ndarray:
        """P(accept) per pair (NaN where `slots` is None), computed once per distinct offer."""
        out = np.full(len(personas), np.nan)
        by_offer: dict[tuple, list[int]] = {}
        for i, s in enumerate(slots):
            if s is not None:
                by_offer.setdefault(tuple(s.items()), []).append(i)
        for key, rows in by_offer.items():
            out[rows] = self.customer.probability([personas[i] for i in rows], [dict(key)])[:, 0]
        return out


def make(cfg: Config, progress: bool = True) -> SimulatedJudge:
    """The customer of `cfg`'s world, judging against its catalogue."""
    build_dataset(cfg, progress=progress)
    catalog_ids = {o.offer_id for o in load_catalog(cfg.dataset_dir)}
    return SimulatedJudge(load_domain(cfg.domain), cfg.seed, catalog_ids, cfg.accept_threshold)
