"""JSON requests to any OpenAI-compatible endpoint, cached on disk, retried, bounded in flight.

Used by the LLM generator (and by the LLM judge). Each item ends with exactly one parsed,
validated value or one recorded error, never both and never neither:

- HTTP 429 / 5xx / timeouts / connection errors: retried with exponential backoff and jitter,
  honouring `Retry-After` (the client's own retries are off, so every wait is ours and bounded).
- A 200 whose content is not the asked-for JSON (fenced, truncated, empty `choices`, failing
  `validate`): re-asked with the problem stated, up to `max_attempts` in all.
- Other 4xx (bad key, unknown model): an error at once; retrying cannot help.

Successful replies are written to `cache_dir` (one file per request, keyed by the hash of model,
temperature and messages; the API key is never part of it), so a rerun costs nothing and an
interrupted run resumes where it stopped. Errors are not cached: a rerun tries them again.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import openai
from tqdm import tqdm

from slm4offer.files import write_json

Messages = list[dict[str, str]]
Validator = Callable[[dict], dict]
MAX_RETRY_AFTER_S = 60.0


@dataclass(frozen=True)
class LLMResult:
    value: dict | None   # the validated JSON object, or None
    error: str | None    # why there is no value, or None
    attempts: int        # requests sent for this item (0 when served from the cache)
    cached: bool


class JSONChat:
    """Send chat requests that must come back as one JSON object each."""

    def __init__(self, model: str, cache_dir: Path, base_url: str = "", api_key: str = "no-key-set",
                 temperature: float = 0.0, concurrency: int = 4, max_attempts: int = 4,
                 timeout_s: float = 60.0, backoff_s: float = 1.0, client: openai.OpenAI | None = None):
        self.model, self.temperature = model, temperature
        self.cache_dir = Path(cache_dir)
        self.concurrency, self.max_attempts = concurrency, max_attempts
        self.backoff_s = backoff_s
        self.client = client or openai.OpenAI(base_url=base_url or None, api_key=api_key,
                                              max_retries=0, timeout=timeout_s)

    def cache_path(self, messages: Messages) -> Path:
        blob = json.dumps({"model": self.model, "temperature": self.temperature,
                           "messages": messages}, sort_keys=True)
        digest = hashlib.sha256(blob.encode()).hexdigest()
        return self.cache_dir / digest[:2] / f"{digest}.json"

    def run(self, requests: list[Messages], validate: Validator | list[Validator],
            desc: str = "llm", progress: bool = True) -> list[LLMResult]:
        """One `LLMResult` per request, in order.

        `validate` (one for all requests, or one per request) returns the value to keep or
        raises ValueError saying what is wrong, which is sent back when re-asking.
        """
        checks = validate if isinstance(validate, list) else [validate] * len(requests)
        if len(checks) != len(requests):
            raise ValueError(f"{len(requests)} requests but {len(checks)} validators")
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            futures = [pool.submit(self.one, m, c) for m, c in zip(requests, checks, strict=True)]
            return [f.result() for f in tqdm(futures, desc=desc, disable=not progress, mininterval=2)]

    def one(self, messages: Messages, validate: Validator) -> LLMResult:
        path = self.cache_path(messages)
        if path.is_file():
            try:
                return LLMResult(validate(json.loads(path.read_text())["value"]), None, 0, True)
            except (ValueError, KeyError):
                path.unlink(missing_ok=True)  # written by an older validator: ask again
        conversation, error = list(messages), "no attempt made"
        for attempt in range(1, self.max_attempts + 1):
            try:
                response = self.client.chat.completions.create(
                    model=self.model, messages=conversation, temperature=self.temperature,
                    response_format={"type": "json_object"})
            except (openai.RateLimitError, openai.InternalServerError, openai.APITimeoutError,
                    openai.APIConnectionError) as exc:
                error = f"{type(exc).__name__}: {_short(exc)}"
                self._sleep(attempt, getattr(exc, "response", None))
                continue
            except openai.APIStatusError as exc:
                if exc.status_code >= 500:
                    error = f"HTTP {exc.status_code}: {_short(exc)}"
                    self._sleep(attempt, exc.response)
                    continue
                return LLMResult(None, f"HTTP {exc.status_code}: {_short(exc)}", attempt, False)
            content, problem = _content(response)
            if problem is None:
                try:
                    value = validate(_parse_json(content))
                    write_json(path, {"model": self.model, "messages": messages, "value": value})
                    return LLMResult(value, None, attempt, False)
                except ValueError as exc:
                    problem = str(exc)
            error = f"malformed reply: {problem}"
            conversation = [*messages, {"role": "assistant", "content": content or ""},
                            {"role": "user", "content": f"That reply was not usable ({problem}). "
                             "Answer again with only the JSON object asked for."}]
        return LLMResult(None, error, self.max_attempts, False)

    def _sleep(self, attempt: int, response) -> None:
        delay = self.backoff_s * 2 ** (attempt - 1) * (1 + 0.25 * random.random())
        retry_after = response.headers.get("retry-after") if response is not None else None
        if retry_after:
            try:
                delay = max(delay, min(float(retry_after), MAX_RETRY_AFTER_S))
            except ValueError:
                pass  # an HTTP date: keep our own delay
        if attempt < self.max_attempts:
            time.sleep(delay)


def _content(response) -> tuple[str | None, str | None]:
    """The message text, or why there is none usable."""
    choices = getattr(response, "choices", None)
    if not choices:
        return None, "no choices in the reply"
    choice = choices[0]
    if choice.finish_reason == "length":
        return choice.message.content, "cut off at max_tokens"
    if not choice.message.content:
        return None, "empty content"
    return choice.message.content, None


def _parse_json(content: str) -> dict:
    text = re.sub(r"^```(?:json)?\s*|\s*```$", "", content.strip())
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg} at char {exc.pos})") from exc
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    return value


def _short(exc: Exception) -> str:
    return str(exc).splitlines()[0][:200]
