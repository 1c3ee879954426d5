"""The synthetic offer world: personas, an offer catalog, a simulated customer and a campaign.

The simulated customer is the ground truth every later number is checked against:

    u(p, o) = intercept + sum_slot b[slot, o_slot] + sum_{f in features(p)} W[f, slot, o_slot] + eps(p, o)
    P(accept | p, o) = sigmoid(u(p, o))

with weights from the domain YAML and `eps ~ N(0, noise_sd)` fixed per (seed, persona, offer) by
a counter-based hash, so the customer is a function: the same pair always gets the same
probability, in any order, for catalog offers and for offers a model invents.

The historical campaign that produced the data is realistic and imperfect: it scores offers by
their general appeal plus the weights of the few attributes it targets on (e.g. age and income,
not interests), shows a mix of targeted and random offers, and keeps going for a few rounds
until the persona accepts something. The rejected offers it logs are hard negatives: plausible
for the persona, and wrong.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field

import numpy as np
from scipy.special import expit, ndtri
from tqdm import tqdm

from slm4offer.domains import Domain, _normalise, render
from slm4offer.errors import CannotRun, InvalidValue

OFFER_ID_SEP = "|"


@dataclass(frozen=True)
class Offer:
    offer_id: str
    slots: dict[str, str]
    text: str


@dataclass(frozen=True)
class ParsedOffer:
    """What a text names: its slots and offer id, or `reason` why it names no valid offer."""

    slots: dict[str, str] | None
    offer_id: str | None
    reason: str | None

    @property
    def ok(self) -> bool:
        return self.reason is None


@dataclass
class World:
    """Everything `build_dataset` needs: personas, catalog and the campaign log."""

    domain: Domain
    seed: int
    personas: list[dict]                 # {persona_id, persona, <attributes>}
    catalog: list[Offer]
    shown: list[list[tuple[str, bool]]]  # per persona: (offer_id, accepted) in display order
    dropped: int = 0                     # personas who accepted nothing in any round
    errors: dict | None = None           # LLM generator: items recorded as errors
    customer: SimulatedCustomer | None = field(repr=False, default=None)


# --- personas ---------------------------------------------------------------------------------

def sample_personas(domain: Domain, n: int, rng: np.random.Generator) -> list[dict]:
    """Draw `n` personas with distinct texts; attributes follow the domain's distributions."""
    personas: list[dict] = []
    texts: set[str] = set()
    for _ in range(n * 50):
        attrs = _sample_attributes(domain, rng)
        text = persona_text(domain, attrs, int(rng.integers(len(domain.persona_templates))))
        if text in texts:  # identical texts in two splits would be leakage
            continue
        texts.add(text)
        personas.append({"persona_id": f"p{len(personas):06d}", "persona": text, **attrs})
        if len(personas) == n:
            return personas
    raise CannotRun(f"{domain.name}: could not draw {n} distinct personas; the domain's "
                    "attributes are too coarse for that many")


def _sample_attributes(domain: Domain, rng: np.random.Generator) -> dict:
    attrs: dict = {}
    for name, attr in domain.attributes.items():
        dep = attr.depends_on or {}
        parent_level = None
        if dep:
            parent = domain.attributes[dep["attribute"]]
            value = attrs[parent.name]
            parent_level = parent.segment_of(value) if parent.type == "integer" else value
        if attr.type == "integer":
            d = attr.distribution
            factor = dep.get("factors", {}).get(parent_level, 1.0)
            shift = dep.get("shift", {}).get(parent_level, 0.0)
            if d["kind"] == "normal":
                x = rng.normal(d["mean"] * factor + shift, d["sd"])
            elif d["kind"] == "lognormal":
                x = d["median"] * factor * np.exp(d["sigma"] * rng.standard_normal()) + shift
            else:
                x = rng.uniform(attr.range[0], attr.range[1] + 1) * factor + shift
            x = round(float(np.clip(x, *attr.range)) / attr.round_to) * attr.round_to
            attrs[name] = int(np.clip(x, *attr.range))
        else:
            factors = dep.get("factors", {}).get(parent_level, {})
            values = list(attr.values)
            w = np.array([attr.values[v] * factors.get(v, 1.0) for v in values])
            w = w / w.sum()
            if attr.type == "categorical":
                attrs[name] = values[rng.choice(len(values), p=w)]
            else:
                k = int(rng.integers(attr.count[0], attr.count[1] + 1))
                k = min(k, int((w > 0).sum()))
                picked = set(rng.choice(len(values), size=k, replace=False, p=w).tolist())
                attrs[name] = [v for i, v in enumerate(values) if i in picked]
    return attrs


def persona_text(domain: Domain, attrs: dict, template: int) -> str:
    fields = {}
    for name, attr in domain.attributes.items():
        value = attrs[name]
        if attr.type == "integer":
            fields[name] = attr.format.format(value)
        elif attr.type == "multi":
            fields[name] = value[0] if len(value) == 1 else ", ".join(value[:-1]) + " and " + value[-1]
        else:
            fields[name] = value
    return _sentence(render(domain.persona_templates[template], fields))


def persona_features(domain: Domain, attrs: dict) -> list[tuple[str, str]]:
    """The (attribute, level) pairs preference weights refer to: segments, values, interests."""
    out = []
    for name, attr in domain.attributes.items():
        value = attrs[name]
        if attr.type == "integer":
            out.append((name, attr.segment_of(value)))
        elif attr.type == "multi":
            out.extend((name, v) for v in value)
        else:
            out.append((name, value))
    return out


# --- offers -----------------------------------------------------------------------------------

def all_offer_slots(domain: Domain) -> list[dict[str, str]]:
    """Every slot combination the domain allows, in a fixed order."""
    names = list(domain.slots)
    combos = itertools.product(*(list(domain.slots[s]) for s in names))
    return [s for s in (dict(zip(names, c, strict=True)) for c in combos) if domain.is_allowed(s)]


def offer_id(slots: dict[str, str]) -> str:
    return OFFER_ID_SEP.join(slots.values())


def render_offer(domain: Domain, slots: dict[str, str], template: int) -> str:
    return _sentence(render(domain.offer_templates[template],
                            {s: domain.slots[s][v].text for s, v in slots.items()}))


def _sentence(text: str) -> str:
    """Capitalise the first letter (templates may start with a lower-case placeholder)."""
    return text[:1].upper() + text[1:]


def sample_catalog(domain: Domain, size: int, rng: np.random.Generator) -> list[Offer]:
    """`size` distinct allowed offers (0 = all), each worded with one of the domain's templates."""
    combos = all_offer_slots(domain)
    if size > len(combos):
        raise InvalidValue(f"catalog_size={size}, but domain {domain.name!r} allows only "
                           f"{len(combos)} distinct offers (use catalog_size=0 for all of them)")
    picked = sorted(rng.choice(len(combos), size=size or len(combos), replace=False).tolist())
    templates = rng.integers(len(domain.offer_templates), size=len(picked))
    return [Offer(offer_id(combos[i]), combos[i], render_offer(domain, combos[i], int(t)))
            for i, t in zip(picked, templates, strict=True)]


def parse_offer(domain: Domain, text: str) -> ParsedOffer:
    """Read the slots back from any text; never raises: invalid text gets a `reason`."""
    if not isinstance(text, str) or not text.strip():
        return ParsedOffer(None, None, "empty text")
    found: dict[str, list[str]] = {s: [] for s in domain.slots}
    pattern, owner = domain.phrase_index
    for match in pattern.finditer(_normalise(text)):
        slot, value = owner[match.group(0)]
        if value not in found[slot]:
            found[slot].append(value)
    problems = []
    for slot, values in found.items():
        if not values:
            problems.append(f"no {slot} named")
        elif len(values) > 1:
            problems.append(f"several {slot} values named ({', '.join(values)})")
    if len(problems) == len(domain.slots) and all(p.startswith("no ") for p in problems):
        return ParsedOffer(None, None, f"names no {domain.name} offer")
    if problems:
        return ParsedOffer(None, None, "; ".join(problems))
    slots = {s: v[0] for s, v in found.items()}
    if domain.allowed_by is not None and not domain.is_allowed(slots):
        others = ", ".join(f"{s} {v!r}" for s, v in slots.items() if s != domain.allowed_by)
        return ParsedOffer(None, None, f"{domain.allowed_by} {slots[domain.allowed_by]!r} is not "
                           f"offered with {others}")
    return ParsedOffer(slots, offer_id(slots), None)


# --- the simulated customer -------------------------------------------------------------------

class SimulatedCustomer:
    """P(accept | persona, offer) of the synthetic world, vectorised over personas x offers."""

    def __init__(self, domain: Domain, seed: int):
        self.domain, self.seed = domain, seed
        self.features = [(a, lvl) for a, attr in domain.attributes.items() for lvl in attr.levels]
        self.columns = [(s, v) for s, vals in domain.slots.items() for v in vals]
        col = {c: j for j, c in enumerate(self.columns)}
        self.W = np.zeros((len(self.features), len(self.columns)))  # (F, V)
        for i, (a, lvl) in enumerate(self.features):
            for s, per_value in domain.persona_weights.get(a, {}).get(lvl, {}).items():
                for v, w in per_value.items():
                    self.W[i, col[(s, v)]] = w
        self.b = np.zeros(len(self.columns))  # (V,)
        for s, per_value in domain.offer_weights.items():
            for v, w in per_value.items():
                self.b[col[(s, v)]] = w
        self._col = col
        self._feat = {f: i for i, f in enumerate(self.features)}

    def persona_matrix(self, personas: list[dict], only: tuple[str, ...] | None = None) -> np.ndarray:
        """(P, F) indicator matrix of persona features, optionally only some attributes."""
        X = np.zeros((len(personas), len(self.features)))
        for i, p in enumerate(personas):
            for f in persona_features(self.domain, p):
                if only is None or f[0] in only:
                    X[i, self._feat[f]] = 1.0
        return X

    def offer_matrix(self, offers: list[dict[str, str]]) -> np.ndarray:
        """(V, N) one-hot matrix of the offers' slot values."""
        onehot = np.zeros((len(self.columns), len(offers)))
        for j, slots in enumerate(offers):
            for s, v in slots.items():
                onehot[self._col[(s, v)], j] = 1.0
        return onehot

    def systematic_utility(self, personas: list[dict], offers: list[dict[str, str]],
                           only: tuple[str, ...] | None = None) -> np.ndarray:
        """(P, N) utility without the idiosyncratic noise (what a perfect targeter knows)."""
        onehot = self.offer_matrix(offers)  # (V, N)
        return self.domain.intercept + (self.persona_matrix(personas, only) @ self.W + self.b) @ onehot

    def noise(self, persona_ids: list[str], offer_ids: list[str]) -> np.ndarray:
        """(P, N) N(0, noise_sd) draws fixed per (seed, persona_id, offer_id)."""
        pk = np.array([_key64(f"{self.seed}:p:{p}") for p in persona_ids], dtype=np.uint64)
        ok = np.array([_key64(f"{self.seed}:o:{o}") for o in offer_ids], dtype=np.uint64)
        z = _splitmix64(pk[:, None] ^ _splitmix64(ok)[None, :])
        u = ((z >> np.uint64(11)).astype(np.float64) + 0.5) / float(1 << 53)  # (0, 1)
        return self.domain.noise_sd * ndtri(u)

    def probability(self, personas: list[dict], offers: list[dict[str, str]]) -> np.ndarray:
        """(P, N) acceptance probabilities for every persona x offer pair."""
        u = self.systematic_utility(personas, offers)
        u = u + self.noise([p["persona_id"] for p in personas], [offer_id(o) for o in offers])
        return expit(u)


def _key64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """Counter-based mixing (Steele et al., 2014): a well-spread 64-bit hash of x."""
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


# --- the historical campaign ------------------------------------------------------------------

def run_campaign(domain: Domain, personas: list[dict], catalog: list[Offer],
                 customer: SimulatedCustomer, offers_per_round: int, max_rounds: int,
                 rng: np.random.Generator, progress: bool = True) -> list[list[tuple[str, bool]]]:
    """Show offers round by round until each persona accepts one; log (offer_id, accepted)."""
    if offers_per_round * max_rounds > len(catalog):
        raise InvalidValue(f"offers_per_round*max_rounds={offers_per_round * max_rounds} exceeds "
                           f"the catalog's {len(catalog)} offers")
    c = domain.campaign
    slots = [o.slots for o in catalog]
    onehot = customer.offer_matrix(slots)  # (V, N)
    popularity = (customer.b @ onehot)[None, :]  # (1, N)
    targeted = customer.persona_matrix(personas, only=c.targets_on) @ customer.W @ onehot  # (P, N)
    score = (c.popularity * popularity + targeted) / c.temperature  # (P, N)
    p_accept = customer.probability(personas, slots)  # (P, N)
    logs = []
    for i in tqdm(range(len(personas)), desc="campaign", disable=not progress, mininterval=2):
        policy = np.exp(score[i] - score[i].max())
        available = np.ones(len(catalog), dtype=bool)
        shown: list[tuple[str, bool]] = []
        for _ in range(max_rounds):
            for _ in range(offers_per_round):
                weights = np.where(available, policy, 0.0)
                if rng.random() < c.exploration:
                    weights = available.astype(float)
                j = int(rng.choice(len(catalog), p=weights / weights.sum()))
                available[j] = False
                shown.append((catalog[j].offer_id, bool(rng.random() < p_accept[i, j])))
            if any(accepted for _, accepted in shown):
                break
        logs.append(shown)
    return logs


def build_world(domain: Domain, seed: int, n_personas: int, catalog_size: int,
                offers_per_round: int, max_rounds: int, progress: bool = True) -> World:
    """Personas, catalog and campaign from one seed; personas who accepted nothing are dropped."""
    rngs = world_rngs(seed)
    personas = sample_personas(domain, n_personas, rngs["personas"])
    catalog = sample_catalog(domain, catalog_size, rngs["catalog"])
    return campaign_world(domain, seed, personas, catalog, offers_per_round, max_rounds,
                          rngs["campaign"], progress)


def world_rngs(seed: int) -> dict[str, np.random.Generator]:
    """Independent random streams of one seed: personas, catalog and campaign.

    Every generator (templates or LLM) draws the catalog and the campaign from the same
    streams, so changing how personas are made never moves the catalog.
    """
    streams = np.random.SeedSequence(seed).spawn(3)
    return {name: np.random.default_rng(s)
            for name, s in zip(("personas", "catalog", "campaign"), streams, strict=True)}


def campaign_world(domain: Domain, seed: int, personas: list[dict], catalog: list[Offer],
                   offers_per_round: int, max_rounds: int, rng: np.random.Generator,
                   progress: bool = True, errors: dict | None = None) -> World:
    """Run the campaign on given personas and catalog; drop personas who accepted nothing."""
    customer = SimulatedCustomer(domain, seed)
    logs = run_campaign(domain, personas, catalog, customer, offers_per_round, max_rounds, rng, progress)
    keep = [i for i, log in enumerate(logs) if any(a for _, a in log)]
    return World(domain=domain, seed=seed, personas=[personas[i] for i in keep], catalog=catalog,
                 shown=[logs[i] for i in keep], dropped=len(personas) - len(keep),
                 customer=customer, errors=errors)


def rank_offers(customer: SimulatedCustomer, persona: dict, catalog: list[Offer]) -> list[tuple[float, Offer]]:
    """The catalog sorted by the persona's acceptance probability, best first."""
    p = customer.probability([persona], [o.slots for o in catalog])[0]
    return sorted(zip(p.tolist(), catalog, strict=True), key=lambda t: -t[0])
