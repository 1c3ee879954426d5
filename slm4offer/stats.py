"""Statistics with their uncertainty, delegating to scipy and scikit-learn where a test exists."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest, bootstrap, chi2_contingency
from sklearn.metrics import cohen_kappa_score


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


def seed_spread(values) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0.0 for a single value) over seeds."""
    x = np.asarray(values, dtype=float)
    return float(x.mean()), float(x.std(ddof=1)) if len(x) > 1 else 0.0


@dataclass(frozen=True)
class McNemar:
    """Paired binary outcomes of two systems on the same items, with the exact McNemar test."""

    n: int
    both: int
    only_a: int
    only_b: int
    neither: int
    pvalue: float


def mcnemar_exact(a, b) -> McNemar:
    """Exact (binomial) McNemar test: only the discordant pairs carry information, and under
    H0 each is equally likely to favour either system. Two-sided, by `scipy.stats.binomtest`.
    """
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired outcomes must be two 1-d arrays of one length, got {a.shape} and {b.shape}")
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    discordant = only_a + only_b
    p = binomtest(only_a, discordant, 0.5).pvalue if discordant else 1.0
    return McNemar(len(a), int((a & b).sum()), only_a, only_b, int((~a & ~b).sum()), float(p))


@dataclass(frozen=True)
class Agreement:
    """How a judge's labels compare with reference labels on the same items."""

    n: int
    table: np.ndarray         # 2x2 counts: rows reference (accept, reject), columns judge
    raw_agreement: float
    chi2: float
    chi2_pvalue: float
    kappa: float
    kappa_low: float
    kappa_high: float
    confidence_level: float


def contingency(reference, judged) -> np.ndarray:
    """2x2 counts, rows = reference accept/reject, columns = judge accept/reject."""
    r, j = np.asarray(reference, dtype=bool), np.asarray(judged, dtype=bool)
    return np.array([[np.sum(r & j), np.sum(r & ~j)], [np.sum(~r & j), np.sum(~r & ~j)]])


def agreement(reference, judged, confidence_level: float = 0.95, n_resamples: int = 2000,
              seed: int = 0) -> Agreement:
    """Chi-square test of association (scipy, Yates-corrected as is usual for 2x2), raw
    agreement, and Cohen's kappa (scikit-learn) with a percentile bootstrap CI (scipy).

    Chi-square asks whether the judge's labels are *associated* with the reference; a judge that
    always says the opposite is strongly associated. Kappa measures *agreement* beyond chance.
    """
    r, j = np.asarray(reference, dtype=bool), np.asarray(judged, dtype=bool)
    if r.shape != j.shape or r.ndim != 1 or len(r) < 2:
        raise ValueError(f"need two 1-d label arrays of one length >= 2, got {r.shape} and {j.shape}")
    table = contingency(r, j)
    if (table.sum(axis=0) == 0).any() or (table.sum(axis=1) == 0).any():
        chi2, p = float("nan"), float("nan")  # a label never used: no test of association
    else:
        test = chi2_contingency(table, correction=True)
        chi2, p = float(test.statistic), float(test.pvalue)

    def kappa(x, y):
        return cohen_kappa_score(x, y)

    with warnings.catch_warnings():  # a resample with a single label has no kappa (nan), and says so
        warnings.simplefilter("ignore")
        boot = bootstrap((r.astype(int), j.astype(int)), kappa, paired=True, vectorized=False,
                         n_resamples=n_resamples, confidence_level=confidence_level,
                         method="percentile", rng=np.random.default_rng(seed))
    return Agreement(n=len(r), table=table, raw_agreement=float((r == j).mean()), chi2=chi2,
                     chi2_pvalue=p, kappa=float(kappa(r, j)), kappa_low=float(boot.confidence_interval.low),
                     kappa_high=float(boot.confidence_interval.high), confidence_level=confidence_level)
