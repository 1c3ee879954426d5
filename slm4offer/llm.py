"""JSON requests to any OpenAI-compatible endpoint, cached on disk, retried, bounded in flight.

Used by the LLM generator and the LLM judge. Each item ends with exactly one parsed, validated
value or one recorded error, never both and never neither:

- HTTP 408/409/429/5xx, timeouts, cut-off connections: retried with exponential backoff and
  jitter, honouring `Retry-After` (the client's own retries are off, so every wait is ours and
  bounded); still failing after `max_attempts`, the item is an error and the run goes on.
- A 200 whose content is not the asked-for JSON (fenced, truncated, empty `choices`, failing
  `validate`): re-asked with the problem stated, up to `max_attempts` in all.
- Other 4xx (e.g. a request the server finds too long): an error for that item at once.

Only what no retry can fix stops a run (`EndpointError`): a connection refused before the
endpoint ever replied, 401/403 (key) and 404 (path or unknown model). A transient failure is
never mistaken for one, however early it comes. A run also stops (`TooManyErrors`) once the
share of items ending in an error passes `max_error_share`, counted over every item this client
has finished (a judge asked system by system is judged as one run): a broken endpoint should not
burn through thousands of requests. The stop message counts the errors of every attempt by kind
(an HTTP status, a timeout, a reply that is not JSON, one that does not fit the schema), with an
example of each, since an item's last error may hide what went wrong before it. `probe` asks the
endpoint once, so that a dead or misconfigured one fails in seconds, before any other work.

Successful replies are written to `cache_dir` (one file per request, keyed by the hash of model,
temperature and messages; the API key is never part of it) by an atomic rename, so a rerun costs
nothing, a run killed at any point resumes where it stopped, and processes sharing the cache never
see a half-written entry. Errors are not cached: a rerun tries them again.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import openai
from tqdm import tqdm

from slm4offer.errors import CannotRun, InvalidValue
from slm4offer.files import write_json

Messages = list[dict[str, str]]
Validator = Callable[[dict], dict]
MAX_RETRY_AFTER_S = 60.0
PERMANENT_STATUS = {401: "the API key was refused", 403: "the API key may not use this model or endpoint",
                    404: "no such path or model (check the base URL, which usually ends in /v1, and the model)"}
RETRIED_STATUS = {408, 409, 429}  # and every 5xx
MIN_ITEMS_FOR_ERROR_SHARE = 20  # an error share is judged over at least this many items (or all, if fewer)


class EndpointError(CannotRun):
    """A failure no retry can fix (unreachable endpoint, refused key, unknown model): the run stops."""


class TooManyErrors(CannotRun):
    """More items ended in an error than `max_error_share` allows: the run stops, answers stay cached."""


def error_kind(error: str) -> str:
    """What kind of failure an attempt's error is, for counting: 'HTTP 429', 'APITimeoutError',
    'not JSON', 'schema mismatch' (a JSON reply the validator refused), 'empty content', ..."""
    if error.startswith("malformed reply: "):
        problem = error.removeprefix("malformed reply: ")
        if problem in ("no choices in the reply", "empty content", "cut off at max_tokens"):
            return problem
        return "not JSON" if problem.startswith(("not JSON", "expected a JSON object")) else "schema mismatch"
    return error.split(":", 1)[0]


class AttemptErrors:
    """Every failed attempt of a client's lifetime by kind, with the first example of each (threads add)."""

    def __init__(self):
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, str] = {}
        self.lock = threading.Lock()

    def add(self, error: str) -> None:
        kind = error_kind(error)
        with self.lock:
            self.counts[kind] += 1
            self.examples.setdefault(kind, error)

    def summary(self) -> str:
        with self.lock:
            return "; ".join(f"{kind} x{n} (e.g. {self.examples[kind][:160]})"
                             for kind, n in self.counts.most_common())


@dataclass(frozen=True)
class LLMResult:
    value: dict | None   # the validated JSON object, or None
    error: str | None    # why there is no value, or None
    attempts: int        # requests tried for this item (0 when served from the cache)
    cached: bool

    @property
    def answer(self) -> dict:
        """The validated value of an item that did not end in an error."""
        if self.value is None:
            raise CannotRun(f"no answer for this item: {self.error}")
        return self.value


class JSONChat:
    """Send chat requests that must come back as one JSON object each."""

    def __init__(self, model: str, cache_dir: Path, base_url: str = "", api_key: str = "no-key-set",
                 temperature: float = 0.0, concurrency: int = 4, max_attempts: int = 4,
                 timeout_s: float = 60.0, backoff_s: float = 1.0, max_error_share: float = 0.2,
                 client: openai.OpenAI | None = None):
        if not 0 <= max_error_share <= 1:
            raise InvalidValue(f"max_error_share={max_error_share}: must be in [0, 1]")
        self.model, self.temperature = model, temperature
        self.cache_dir = Path(cache_dir)
        self.concurrency, self.max_attempts = concurrency, max_attempts
        self.backoff_s, self.max_error_share = backoff_s, max_error_share
        self.client = client or openai.OpenAI(base_url=base_url or None, api_key=api_key,
                                              max_retries=0, timeout=timeout_s)
        self.replied = False  # has the endpoint ever answered (any HTTP status)? Set by any thread.
        self.last_run: RunStats | None = None
        # over every run of this client: items finished and how many ended in an error, failed attempts
        self.finished, self.failed = 0, 0
        self.attempt_errors = AttemptErrors()

    def cache_path(self, messages: Messages) -> Path:
        blob = json.dumps({"model": self.model, "temperature": self.temperature,
                           "messages": messages}, sort_keys=True)
        digest = hashlib.sha256(blob.encode()).hexdigest()
        return self.cache_dir / digest[:2] / f"{digest}.json"

    def run(self, requests: list[Messages], validate: Validator | list[Validator],
            desc: str = "llm", progress: bool = True) -> list[LLMResult]:
        """One `LLMResult` per request, in order; `self.last_run` counts errors and cache hits.

        `validate` (one for all requests, or one per request) returns the value to keep or
        raises ValueError saying what is wrong, which is sent back when re-asking. Raises
        `EndpointError` or `TooManyErrors` (see the module docstring); requests not yet sent
        are then dropped, those in flight finish and are cached.
        """
        checks = validate if isinstance(validate, list) else [validate] * len(requests)
        if len(checks) != len(requests):
            raise InvalidValue(f"{len(requests)} requests but {len(checks)} validators")
        results: list[LLMResult | None] = [None] * len(requests)
        stop = threading.Event()

        def task(i: int) -> LLMResult | None:
            if stop.is_set():
                return None
            try:
                return self.one(requests[i], checks[i])
            except EndpointError:
                stop.set()  # at once: the other workers send nothing more
                raise

        pool = ThreadPoolExecutor(max_workers=self.concurrency)
        try:
            futures = {pool.submit(task, i): i for i in range(len(requests))}
            done = tqdm(as_completed(futures), total=len(futures), desc=desc, disable=not progress, mininterval=2)
            for finished, future in enumerate(done, start=1):
                result = results[futures[future]] = future.result()
                if result is None:  # skipped after an EndpointError, which another future raises
                    continue
                self.finished += 1
                self.failed += result.error is not None
                self._check_error_share(desc, left=len(requests) - finished)
        except BaseException:
            stop.set()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        answered = [r for r in results if r is not None]
        if len(answered) != len(results):  # every item ends with a value or an error unless the loop raised
            raise CannotRun(f"{desc}: {len(results) - len(answered)} items ended with neither a value nor an error")
        self.last_run = RunStats.of(desc, answered)
        if self.last_run.errors:
            print(self.last_run.summary(), file=sys.stderr)
        return answered

    def _check_error_share(self, desc: str, left: int) -> None:
        """Stop once the items ending in an error, over every run of this client, exceed the allowed
        share of those finished (of at least 20, or of all there are when fewer)."""
        errors, finished = self.failed, self.finished
        if errors > self.max_error_share * max(finished, min(finished + left, MIN_ITEMS_FOR_ERROR_SHARE)):
            raise TooManyErrors(
                f"{desc}: {errors} of the {finished} items finished so far ended in an error "
                f"({errors / finished:.0%}), "
                f"more than the {self.max_error_share:.0%} allowed (llm_max_error_share); stopped. The "
                f"{finished - errors} answers received are cached and a rerun resumes from them. Failed attempts "
                f"by kind: {self.attempt_errors.summary()}")

    def probe(self) -> None:
        """One small request, outside the cache: raises `EndpointError` at once for an endpoint that no
        retry can fix (nothing listening, a refused key, an unknown path or model). Any other outcome,
        a reply or a transient failure, lets the work start; its own retries deal with the rest."""
        try:
            self.client.chat.completions.create(
                model=self.model, temperature=self.temperature, max_tokens=8,
                messages=[{"role": "system", "content": "Reply with one JSON object and nothing else."},
                          {"role": "user", "content": 'Reply with {"ok": true}.'}])
            self.replied = True
        except openai.APIStatusError as exc:
            self.replied = True
            if exc.status_code in PERMANENT_STATUS:
                raise self._refused_status(exc) from exc
        except openai.APIConnectionError as exc:
            if _refused(exc):
                raise self._not_there(exc) from exc

    def _refused_status(self, exc: openai.APIStatusError) -> EndpointError:
        return EndpointError(f"{self.client.base_url} answered HTTP {exc.status_code}: {_short(exc)}: "
                             f"{PERMANENT_STATUS[exc.status_code]} (model {self.model!r}; key from OPENAI_API_KEY)")

    def _not_there(self, exc: openai.APIConnectionError) -> EndpointError:
        return EndpointError(f"cannot connect to {self.client.base_url} ({type(exc).__name__}: {_short(exc)}); "
                             "is the server running and the base URL right?")

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
                response = self.client.chat.completions.create(  # type: ignore[call-overload]  # plain dicts
                    model=self.model, messages=conversation, temperature=self.temperature,
                    response_format={"type": "json_object"})
            except openai.APIStatusError as exc:  # the endpoint answered with an HTTP error
                self.replied = True
                code, error = exc.status_code, f"HTTP {exc.status_code}: {_short(exc)}"
                self.attempt_errors.add(error)
                if code in PERMANENT_STATUS:
                    raise self._refused_status(exc) from exc
                if code in RETRIED_STATUS or code >= 500:
                    self._sleep(attempt, exc.response)
                    continue
                return LLMResult(None, error, attempt, False)
            except openai.APIConnectionError as exc:  # timeouts too (APITimeoutError is a subclass)
                error = f"{type(exc).__name__}: {_short(exc)}"
                self.attempt_errors.add(error)
                if not self.replied and _refused(exc):
                    raise self._not_there(exc) from exc
                self._sleep(attempt, None)
                continue
            self.replied = True
            content, problem = _content(response)
            if problem is None and content is not None:
                try:
                    value = validate(_parse_json(content))
                    write_json(path, {"model": self.model, "messages": messages, "value": value})
                    return LLMResult(value, None, attempt, False)
                except ValueError as exc:
                    problem = str(exc)
            error = f"malformed reply: {problem}"
            self.attempt_errors.add(error)
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


@dataclass(frozen=True)
class RunStats:
    """What one `JSONChat.run` ended with: the error share is reported, not only counted."""

    desc: str
    items: int
    errors: int
    cached: int
    requests: int  # requests tried, including any lost on the way

    @classmethod
    def of(cls, desc: str, results: list[LLMResult]) -> RunStats:
        return cls(desc, len(results), sum(r.error is not None for r in results), sum(r.cached for r in results),
                   sum(r.attempts for r in results))

    @property
    def error_share(self) -> float:
        return self.errors / self.items if self.items else 0.0

    def summary(self) -> str:
        return (f"{self.desc}: {self.errors} of {self.items} items ended in an error ({self.error_share:.1%}; "
                f"not cached, a rerun asks again); {self.cached} answers came from the cache, "
                f"{self.requests} requests were tried")


def _refused(exc: BaseException) -> bool:
    """Was the connection refused (nothing listening), as opposed to cut, reset or timed out?"""
    if isinstance(exc, openai.APITimeoutError):
        return False
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, ConnectionRefusedError) or type(cause).__name__ == "ConnectError":
            return True
        cause = cause.__cause__ or cause.__context__
    return False


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
        raise InvalidValue(f"not JSON ({exc.msg} at char {exc.pos})") from exc
    if not isinstance(value, dict):
        raise InvalidValue(f"expected a JSON object, got {type(value).__name__}")
    return value


def _short(exc: Exception) -> str:
    return str(exc).splitlines()[0][:200]
