"""Judges decide whether a persona would accept an offer: `judge(personas, offers) -> decisions`.

The paper judges generated offers with an LLM. Here three judges share one contract
(`base.Judge`), so every table can say which judge made it and put them side by side:

- simulated (`simulated.py`): the synthetic world's own customer, the ground truth;
- learned (`learned.py`): trained on the campaign's labels of the training personas; it plays
  the LLM judge's part when no endpoint is configured;
- llm (`llm_judge.py`): any OpenAI-compatible endpoint.

`JUDGES` is the registry: a new judge is one entry here (and its module); the CLI's choices,
`check_judge` and every table take their names from it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from slm4offer.config import Config
from slm4offer.errors import InvalidValue
from slm4offer.judges.base import Decision, Judge

__all__ = ["JUDGES", "Decision", "Judge", "check_judge", "make_judge"]


@dataclass(frozen=True)
class JudgeEntry:
    """Where a judge is made (a module with `make(cfg, progress) -> Judge`, and optionally
    `check(cfg)` that fails fast on what would fail late; imported only when asked:
    sentence-transformers and the openai client are slow to load) and whether it needs the
    synthetic world's customer."""

    module: str
    world_only: bool = False


JUDGES: dict[str, JudgeEntry] = {
    "simulated": JudgeEntry("slm4offer.judges.simulated", world_only=True),
    "learned": JudgeEntry("slm4offer.judges.learned"),
    "llm": JudgeEntry("slm4offer.judges.llm_judge"),
}


def check_judge(cfg: Config, name: str) -> None:
    """Fail before any work on a judge that cannot exist or cannot answer for `cfg`, saying what to
    use instead (the LLM judge's endpoint gets one small request)."""
    _exists(cfg, name)
    check = getattr(importlib.import_module(JUDGES[name].module), "check", None)
    if check is not None:
        check(cfg)


def _exists(cfg: Config, name: str) -> None:
    if name not in JUDGES:
        raise InvalidValue(f"judge={name!r}: must be one of {', '.join(JUDGES)}")
    if JUDGES[name].world_only and cfg.data:
        raise InvalidValue(f"judge {name!r} is the synthetic world's customer and does not exist for your own "
                           f"data (data={cfg.data!r}): use the learned judge (--judge learned) or an LLM (--judge llm)")


def make_judge(cfg: Config, name: str, progress: bool = True) -> Judge:
    """The judge called `name` for `cfg`'s dataset (the learned one is trained or loaded). Call
    `check_judge` first where work comes before the judge is needed."""
    _exists(cfg, name)
    return importlib.import_module(JUDGES[name].module).make(cfg, progress)
