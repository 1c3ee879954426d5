"""Statistics with their uncertainty, delegating to scipy where a test exists."""

from __future__ import annotations

from dataclasses import dataclass

from scipy.stats import binomtest


@dataclass(frozen=True)
class Proportion:
    """k successes out of n, with a Wilson score interval (Newcombe, 1998)."""

    k: int
    n: int
    low: float
    high: float
    confidence_level: float

    @property
    def rate(self) -> float:
        return self.k / self.n


def wilson_ci(k: int, n: int, confidence_level: float = 0.95) -> Proportion:
    """Wilson interval of k/n: unlike the normal approximation it stays inside [0, 1] and
    behaves for small n and rates near 0 or 1.

    References: Newcombe, R. G. (1998), Two-sided confidence intervals for the single
    proportion, Statistics in Medicine 17(8). Computed by `scipy.stats.binomtest`.
    """
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n > 0, got k={k}, n={n}")
    ci = binomtest(k, n).proportion_ci(confidence_level=confidence_level, method="wilson")
    return Proportion(k, n, float(ci.low), float(ci.high), confidence_level)
