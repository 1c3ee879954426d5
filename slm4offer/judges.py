"""Judges decide whether a persona would accept an offer: `judge(personas, offers) -> decisions`.

The paper judges generated offers with an LLM. Here three judges share one contract, so every
table can say which judge made it and put them side by side:

- `SimulatedJudge`: the synthetic world's own customer (the ground truth). It reads the slots
  back from the text; unparseable or off-catalog text is a reject with that reason.
- `LLMJudge`: any OpenAI-compatible endpoint, temperature 0, JSON verdicts, cached and retried
  by `llm.JSONChat`. A reply still malformed or failing after its retries is an error, never a
  verdict; only a permanent failure (no endpoint, refused key, unknown model) or too large a
  share of errors stops the run.
- `LearnedJudge` (`learned_judge.py`): trained on the campaign's labels of the training
  personas; it plays the LLM judge's part when no endpoint is configured.

Simulated and learned judges accept when P(accept) >= `accept_threshold`: a judge gives a
verdict on the offer, it does not roll dice for the customer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from slm4offer.config import JUDGES, Config, llm_api_key, llm_endpoint_configured
from slm4offer.data import build_dataset, load_catalog
from slm4offer.domains import Domain, load_domain
from slm4offer.llm import JSONChat
from slm4offer.world import SimulatedCustomer, parse_offer


@dataclass(frozen=True)
class Decision:
    """One judged (persona, offer): a verdict with its reason, or an error and no verdict."""

    accept: bool | None          # None only when `error` is set
    reason: str
    probability: float | None = None
    error: str | None = None


class Judge(Protocol):
    name: str

    def __call__(self, personas: Sequence[dict], offers: Sequence[str]) -> list[Decision]:
        """One decision per (persona row, offer text) pair, in order."""
        ...


def check_pairs(personas: Sequence[dict], offers: Sequence[str]) -> None:
    if len(personas) != len(offers):
        raise ValueError(f"{len(personas)} personas but {len(offers)} offers: pairs must align")


class SimulatedJudge:
    """The world's customer: P(accept) from its weights, for catalog offers only."""

    name = "simulated"

    def __init__(self, domain: Domain, seed: int, catalog_ids: set[str], threshold: float = 0.5):
        self.domain, self.catalog_ids, self.threshold = domain, catalog_ids, threshold
        self.customer = SimulatedCustomer(domain, seed)

    def __call__(self, personas: Sequence[dict], offers: Sequence[str]) -> list[Decision]:
        check_pairs(personas, offers)
        parsed = [parse_offer(self.domain, text) for text in offers]
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


DEFAULT_PROMPT = """You judge personalised marketing offers. Business: {domain}
Customer: {persona}
Offer: {offer}
Would this customer accept this offer? Answer with one JSON object:
{"decision": "accept" or "reject", "reason": "one short sentence",
 "probability": a number from 0 to 1, how likely the customer accepts}"""
SYSTEM = "You are a careful marketing analyst. Reply with one JSON object and nothing else."


def validate_verdict(value: dict) -> dict:
    """The verdict JSON the LLM judge must return; ValueError says what is wrong (re-asked)."""
    decision = str(value.get("decision", "")).strip().lower()
    if decision not in ("accept", "reject"):
        raise ValueError(f"'decision' must be \"accept\" or \"reject\", got {value.get('decision')!r}")
    reason = value.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise ValueError("'reason' must be a non-empty string")
    probability = value.get("probability")
    if probability is not None:
        if isinstance(probability, bool) or not isinstance(probability, int | float) or not 0 <= probability <= 1:
            raise ValueError(f"'probability' must be a number in [0, 1], got {probability!r}")
        probability = float(probability)
    return {"decision": decision, "reason": " ".join(reason.split()), "probability": probability}


class LLMJudge:
    """An LLM's verdicts through `JSONChat` (disk cache keyed by model, prompt, persona, offer).

    The prompt's placeholders {domain}, {persona} and {offer} are filled in; any other braces
    (the JSON example) are sent as written.
    """

    name = "llm"

    def __init__(self, chat: JSONChat, prompt: str = DEFAULT_PROMPT,
                 domain_description: str = "a company selling to individual customers.", progress: bool = True):
        for placeholder in ("{persona}", "{offer}"):
            if placeholder not in prompt:
                raise ValueError(f"the judge prompt must contain {placeholder}")
        self.chat, self.prompt, self.domain_description, self.progress = chat, prompt, domain_description, progress

    def messages(self, persona: str, offer: str) -> list[dict[str, str]]:
        ask = self.prompt.replace("{domain}", self.domain_description).replace("{persona}", persona) \
            .replace("{offer}", offer)
        return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": ask}]

    def __call__(self, personas: Sequence[dict], offers: Sequence[str]) -> list[Decision]:
        check_pairs(personas, offers)
        requests = [self.messages(p["persona"], o) for p, o in zip(personas, offers, strict=True)]
        results = self.chat.run(requests, validate_verdict, desc="llm judge", progress=self.progress)
        return [Decision(None, "", None, r.error) if r.error is not None
                else Decision(r.value["decision"] == "accept", r.value["reason"], r.value["probability"])
                for r in results]


def judge_prompt(cfg: Config) -> str:
    """The built-in prompt, or the text of the file `cfg.judge_prompt` names."""
    if not cfg.judge_prompt:
        return DEFAULT_PROMPT
    path = Path(cfg.judge_prompt)
    if not path.is_file():
        raise FileNotFoundError(f"judge_prompt={cfg.judge_prompt!r}: prompt file not found")
    return path.read_text()


def check_judge(cfg: Config, name: str) -> None:
    """Fail before any work on a judge that cannot exist for `cfg`, saying what to use instead."""
    if name not in JUDGES:
        raise ValueError(f"judge={name!r}: must be one of {', '.join(JUDGES)}")
    if name == "simulated" and cfg.data:
        raise ValueError(f"judge 'simulated' is the synthetic world's customer and does not exist for your own "
                         f"data (data={cfg.data!r}): use the learned judge (--judge learned) or an LLM (--judge llm)")


def make_judge(cfg: Config, name: str, progress: bool = True) -> Judge:
    """The judge called `name` for `cfg`'s dataset (the learned one is trained or loaded)."""
    check_judge(cfg, name)
    build_dataset(cfg, progress=progress)  # the catalog and splits every judge reads
    domain = load_domain(cfg.domain)
    if name == "simulated":
        catalog_ids = {o.offer_id for o in load_catalog(cfg.dataset_dir)}
        return SimulatedJudge(domain, cfg.seed, catalog_ids, cfg.accept_threshold)
    if name == "learned":
        from slm4offer.learned_judge import load_or_train  # imports sentence-transformers

        return load_or_train(cfg, progress=progress)
    if not llm_endpoint_configured(cfg.judge_base_url):
        raise ValueError("the llm judge needs an endpoint: set judge_base_url (or OPENAI_BASE_URL) to an "
                         "OpenAI-compatible API, and OPENAI_API_KEY where it needs a key")
    chat = JSONChat(cfg.judge_model, cfg.llm_cache_dir, base_url=cfg.judge_base_url, api_key=llm_api_key(),
                    temperature=0.0, concurrency=cfg.llm_concurrency, max_attempts=cfg.llm_max_attempts,
                    timeout_s=cfg.llm_timeout_s, backoff_s=cfg.llm_backoff_s, max_error_share=cfg.llm_max_error_share)
    description = "a company selling to individual customers." if cfg.data else domain.description
    return LLMJudge(chat, judge_prompt(cfg), description, progress=progress)
