"""What every judge is: `judge(personas, offers) -> decisions`, one `Decision` per pair.

Simulated and learned judges accept when P(accept) >= `accept_threshold`: a judge gives a
verdict on the offer, it does not roll dice for the customer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from slm4offer.errors import InvalidValue


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
        raise InvalidValue(f"{len(personas)} personas but {len(offers)} offers: pairs must align")
