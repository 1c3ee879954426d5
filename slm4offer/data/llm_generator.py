"""Personas and offer wordings from an LLM, as in the paper (which used Azure OpenAI).

The LLM writes what templates cannot: varied, natural persona descriptions with attributes in
the domain's schema, and varied wordings of each catalog offer. Acceptance still comes from
the simulated customer, so every later number keeps a known ground truth. Each reply is
validated against the domain (attributes in range and in the value lists; an offer text must
parse back to exactly its own slots). An item that stays invalid is dropped and counted in the
data card, never guessed. Persona ids follow the request index, so a resumed run yields the
same rows, with no duplicates.
"""

from __future__ import annotations

import json

from slm4offer.config import Config, llm_api_key
from slm4offer.data.world import Offer, World, campaign_world, parse_offer, sample_catalog, world_rngs
from slm4offer.domains import Domain
from slm4offer.errors import CannotRun, InvalidValue
from slm4offer.llm import JSONChat

SYSTEM = ("You write synthetic but realistic customer data for marketing research. "
          "Reply with one JSON object and nothing else.")


def persona_request(domain: Domain, index: int, seed: int) -> list[dict[str, str]]:
    schema = {}
    for name, attr in domain.attributes.items():
        if attr.type == "integer":
            schema[name] = f"integer from {attr.range[0]} to {attr.range[1]}"
        elif attr.type == "categorical":
            schema[name] = f"one of {list(attr.values)}"
        else:
            schema[name] = f"list of {attr.count[0]} to {attr.count[1]} of {list(attr.values)}"
    ask = (f"Domain: {domain.description}\nInvent customer persona number {index} (series {seed}); "
           "make it plausible and different from typical examples.\nReturn "
           '{"attributes": {...}, "description": "..."} where attributes has exactly these keys: '
           f"{json.dumps(schema)}, and description is one or two sentences about the person that "
           "mention every attribute.")
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": ask}]


def offer_request(domain: Domain, offer: Offer) -> list[dict[str, str]]:
    parts = "; ".join(f"{slot}: {domain.slots[slot][value].text}" for slot, value in offer.slots.items())
    ask = (f"Domain: {domain.description}\nWrite one short marketing offer sentence that names "
           f"exactly these parts, keeping each part's wording: {parts}. Mention no other product, "
           'benefit, incentive or channel. Return {"offer": "..."}.')
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": ask}]


def validate_persona(domain: Domain):
    def check(value: dict) -> dict:
        attrs, text = value.get("attributes"), value.get("description")
        if not isinstance(attrs, dict) or not isinstance(text, str) or not text.strip():
            raise InvalidValue("need 'attributes' (object) and 'description' (text)")
        out = {}
        for name, attr in domain.attributes.items():
            v = attrs.get(name)
            if attr.type == "integer":
                if not isinstance(v, int) or isinstance(v, bool) or not attr.range[0] <= v <= attr.range[1]:
                    raise InvalidValue(f"{name}={v!r} is not an integer in {list(attr.range)}")
            elif attr.type == "categorical":
                if v not in attr.values:
                    raise InvalidValue(f"{name}={v!r} is not one of {list(attr.values)}")
            else:
                if (not isinstance(v, list) or not attr.count[0] <= len(v) <= attr.count[1]
                        or len(set(v)) != len(v) or any(x not in attr.values for x in v)):
                    raise InvalidValue(f"{name}={v!r} is not a list of {attr.count} distinct allowed values")
                v = [x for x in attr.values if x in v]
            out[name] = v
        return {"attributes": out, "description": " ".join(text.split())}
    return check


def validate_offer(domain: Domain, offer: Offer):
    def check(value: dict) -> dict:
        text = value.get("offer")
        parsed = parse_offer(domain, text if isinstance(text, str) else "")
        if parsed.offer_id != offer.offer_id:
            raise InvalidValue(f"the text must name exactly {offer.offer_id}, it reads as "
                               f"{parsed.offer_id or parsed.reason}")
        return {"offer": " ".join(str(text).split())}
    return check


def build_world_llm(cfg: Config, domain: Domain, progress: bool = True) -> World:
    chat = JSONChat(cfg.llm_model, cfg.llm_cache_dir, base_url=cfg.llm_base_url,
                    api_key=llm_api_key(), temperature=cfg.llm_temperature,
                    concurrency=cfg.llm_concurrency, max_attempts=cfg.llm_max_attempts,
                    timeout_s=cfg.llm_timeout_s, backoff_s=cfg.llm_backoff_s,
                    max_error_share=cfg.llm_max_error_share)
    chat.probe()  # a dead or misconfigured endpoint fails here, in seconds
    results = chat.run([persona_request(domain, i, cfg.seed) for i in range(cfg.n_personas)],
                       validate_persona(domain), desc="personas", progress=progress)
    personas, texts, errors = [], set(), []
    for i, r in enumerate(results):
        if r.error is not None:
            errors.append(f"persona {i}: {r.error}")
        elif r.answer["description"] not in texts:  # same text twice would leak across splits
            texts.add(r.answer["description"])
            personas.append({"persona_id": f"p{i:06d}", "persona": r.answer["description"],
                             **r.answer["attributes"]})
    rngs = world_rngs(cfg.seed)
    templated = sample_catalog(domain, cfg.catalog_size, rngs["catalog"])
    replies = chat.run([offer_request(domain, o) for o in templated],
                       [validate_offer(domain, o) for o in templated], desc="offers",
                       progress=progress)
    catalog = []
    for offer, r in zip(templated, replies, strict=True):
        if r.error is not None:
            errors.append(f"offer {offer.offer_id}: {r.error}")
        else:
            catalog.append(Offer(offer.offer_id, offer.slots, r.answer["offer"]))
    if not personas or not catalog:
        raise CannotRun(f"the LLM generator produced {len(personas)} personas and {len(catalog)} "
                        f"offers; first errors: {errors[:3]}")
    return campaign_world(domain, cfg.seed, personas, catalog, cfg.offers_per_round, cfg.max_rounds,
                          rngs["campaign"], progress,
                          errors={"personas_failed": sum(e.startswith("persona") for e in errors),
                                  "offers_failed": sum(e.startswith("offer") for e in errors),
                                  "duplicate_persona_texts": sum(r.error is None for r in results) - len(personas),
                                  "first_errors": errors[:5]})

