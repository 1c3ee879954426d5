"""An LLM as judge: any OpenAI-compatible endpoint, temperature 0, JSON verdicts.

Replies are cached and retried by `llm.JSONChat`. A reply still malformed or failing after its
retries is an error, never a verdict; only a permanent failure (no endpoint, refused key,
unknown model) or too large a share of errors stops the run.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from slm4offer.config import Config, llm_api_key, llm_endpoint_configured
from slm4offer.data.dataset import build_dataset
from slm4offer.domains import load_domain
from slm4offer.errors import InvalidValue, MissingFile
from slm4offer.judges.base import Decision, check_pairs
from slm4offer.llm import JSONChat

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
        raise InvalidValue(f"'decision' must be \"accept\" or \"reject\", got {value.get('decision')!r}")
    reason = value.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidValue("'reason' must be a non-empty string")
    probability = value.get("probability")
    if probability is not None:
        if isinstance(probability, bool) or not isinstance(probability, int | float) or not 0 <= probability <= 1:
            raise InvalidValue(f"'probability' must be a number in [0, 1], got {probability!r}")
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
                raise InvalidValue(f"the judge prompt must contain {placeholder}")
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
                else Decision(r.answer["decision"] == "accept", r.answer["reason"], r.answer["probability"])
                for r in results]


def judge_prompt(cfg: Config) -> str:
    """The built-in prompt, or the text of the file `cfg.judge_prompt` names."""
    if not cfg.judge_prompt:
        return DEFAULT_PROMPT
    path = Path(cfg.judge_prompt)
    if not path.is_file():
        raise MissingFile(f"judge_prompt={cfg.judge_prompt!r}: prompt file not found")
    return path.read_text()


def _chat(cfg: Config) -> JSONChat:
    if not llm_endpoint_configured(cfg.judge_base_url):
        raise InvalidValue("the llm judge needs an endpoint: set judge_base_url (or OPENAI_BASE_URL) to an "
                           "OpenAI-compatible API, and OPENAI_API_KEY where it needs a key")
    return JSONChat(cfg.judge_model, cfg.llm_cache_dir, base_url=cfg.judge_base_url, api_key=llm_api_key(),
                    temperature=0.0, concurrency=cfg.llm_concurrency, max_attempts=cfg.llm_max_attempts,
                    timeout_s=cfg.llm_timeout_s, backoff_s=cfg.llm_backoff_s, max_error_share=cfg.llm_max_error_share)


def check(cfg: Config) -> None:
    """Before any offer is generated: an endpoint is set, the prompt file reads, and the endpoint
    answers (one small request), so a dead or misconfigured one fails in seconds."""
    judge_prompt(cfg)
    _chat(cfg).probe()


def make(cfg: Config, progress: bool = True) -> LLMJudge:
    """The LLM judge of `cfg`'s endpoint; fails at once when none is configured."""
    chat = _chat(cfg)
    build_dataset(cfg, progress=progress)
    description = "a company selling to individual customers." if cfg.data else load_domain(cfg.domain).description
    return LLMJudge(chat, judge_prompt(cfg), description, progress=progress)
