"""Statistics with their uncertainty, delegating to scipy and scikit-learn where a test exists."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from scipy import stats
from scipy.stats import binomtest, bootstrap, chi2_contingency
from sklearn.metrics import cohen_kappa_score

from slm4offer.errors import InvalidValue

# Resamples held in memory at once: a batch of BATCH resamples of the seed-by-persona grid, and
# about BATCH_CELLS resampled labels for kappa. Results do not depend on either (the draws are
# the same), only memory does.
BATCH, BATCH_CELLS = 256, 500_000


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
        raise InvalidValue(f"need 0 <= k <= n and n > 0, got k={k}, n={n}")
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
        raise InvalidValue(f"paired outcomes must be two 1-d arrays of one length, got {a.shape} and {b.shape}")
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


def kappa_of(reference: np.ndarray, judged: np.ndarray, axis: int = -1) -> np.ndarray:
    """Cohen's kappa of 0/1 labels along `axis`, for many resamples at once: the arithmetic of
    `sklearn.metrics.cohen_kappa_score` for two labels, term for term (so the same value to the
    last bit), NaN where only one label occurs."""
    r, j = np.moveaxis(np.asarray(reference), axis, -1), np.moveaxis(np.asarray(judged), axis, -1)
    n = r.shape[-1]
    only_r, only_j = (r & (1 - j)).sum(-1), ((1 - r) & j).sum(-1)  # the off-diagonal cells
    col0, col1 = n - j.sum(-1), j.sum(-1)  # judged 0 / 1: the confusion matrix's column sums
    row0, row1 = n - r.sum(-1), r.sum(-1)  # reference 0 / 1: its row sums
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = col0 * row1 / n + col1 * row0 / n
        return 1 - (only_r + only_j).astype(float) / expected


def agreement(reference, judged, confidence_level: float = 0.95, n_resamples: int = 2000,
              seed: int = 0) -> Agreement:
    """Chi-square test of association (scipy, Yates-corrected as is usual for 2x2), raw
    agreement, and Cohen's kappa (scikit-learn) with a percentile bootstrap CI (scipy).

    Chi-square asks whether the judge's labels are *associated* with the reference; a judge that
    always says the opposite is strongly associated. Kappa measures *agreement* beyond chance.
    """
    r, j = np.asarray(reference, dtype=bool), np.asarray(judged, dtype=bool)
    if r.shape != j.shape or r.ndim != 1 or len(r) < 2:
        raise InvalidValue(f"need two 1-d label arrays of one length >= 2, got {r.shape} and {j.shape}")
    table = contingency(r, j)
    if (table.sum(axis=0) == 0).any() or (table.sum(axis=1) == 0).any():
        chi2, p = float("nan"), float("nan")  # a label never used: no test of association
    else:
        test = chi2_contingency(table, correction=True)
        chi2, p = float(test.statistic), float(test.pvalue)

    with warnings.catch_warnings():  # a resample with a single label has no kappa (nan), and says so
        warnings.simplefilter("ignore")
        boot = bootstrap((r.astype(int), j.astype(int)), kappa_of, paired=True, vectorized=True,
                         n_resamples=n_resamples, batch=max(1, BATCH_CELLS // len(r)),  # memory: O(batch x n)
                         confidence_level=confidence_level, method="percentile", rng=np.random.default_rng(seed))
    return Agreement(n=len(r), table=table, raw_agreement=float((r == j).mean()), chi2=chi2,
                     chi2_pvalue=p, kappa=float(cohen_kappa_score(r, j)), kappa_low=float(boot.confidence_interval.low),
                     kappa_high=float(boot.confidence_interval.high), confidence_level=confidence_level)


@dataclass(frozen=True)
class Difference:
    """b - a on the same (seed, persona) grid, with a bootstrap CI and a two-sided p-value."""

    a: float
    b: float
    diff: float
    low: float
    high: float
    pvalue: float


class SeedPersonaBootstrap:
    """Percentile bootstrap over training seeds and test personas together.

    Outcomes here sit on a grid: every training seed's model answers the same test personas, so
    neither the (seed, persona) cells nor the seed means are independent draws. Resampling seeds
    and personas independently, each with replacement (the "pigeonhole" bootstrap for crossed
    factors; Owen 2007, Ann. Appl. Stat. 1(1)), keeps both sources of variance. Every system is
    resampled with the same indices, so differences stay paired. A system that does not depend
    on the training seed (one row) is resampled over personas only.

    With three seeds the seed level takes only ten distinct resamples and understates the seed
    variance by a factor (s - 1) / s; the intervals are therefore a lower bound on the
    uncertainty from training, and are reported with the seed count beside them.
    """

    def __init__(self, n_seeds: int, n_personas: int, n_resamples: int = 4000, seed: int = 0,
                 confidence_level: float = 0.95, batch: int = BATCH):
        if n_seeds < 1 or n_personas < 1 or n_resamples < 1 or batch < 1:
            raise InvalidValue(f"need at least one seed, persona, resample and a batch of one, got {n_seeds}, "
                               f"{n_personas}, {n_resamples} and {batch}")
        self.n_seeds, self.n_personas, self.n_resamples = n_seeds, n_personas, n_resamples
        self.confidence_level, self.batch = confidence_level, batch
        # Every resample's seed indices are drawn first, then every resample's persona indices, all
        # from one generator. Both are redrawn batch by batch from saved generator states, so memory
        # stays O(batch x personas) whatever the number of resamples, and the draws are the ones a
        # single call of each would give.
        rng = np.random.default_rng(seed)
        self._seed_state = rng.bit_generator.state
        for size in self._sizes():
            rng.integers(n_seeds, size=(size, n_seeds))
        self._persona_state = rng.bit_generator.state

    def _sizes(self) -> list[int]:
        return [min(self.batch, self.n_resamples - k) for k in range(0, self.n_resamples, self.batch)]

    def _indices(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(seed indices, persona indices) of each batch of resamples, in order."""
        seeds, personas = np.random.default_rng(), np.random.default_rng()
        seeds.bit_generator.state, personas.bit_generator.state = self._seed_state, self._persona_state
        for size in self._sizes():
            yield (seeds.integers(self.n_seeds, size=(size, self.n_seeds)),
                   personas.integers(self.n_personas, size=(size, self.n_personas)))

    def _grid(self, values) -> np.ndarray:
        x = np.asarray(values, dtype=float)
        if x.ndim != 2 or x.shape[1] != self.n_personas or x.shape[0] not in (1, self.n_seeds):
            raise InvalidValue(f"values must be (1 or {self.n_seeds} seeds) x {self.n_personas} personas, "
                               f"got {x.shape}")
        return x

    def resampled_means(self, values) -> np.ndarray:
        """The grid mean in every resample (NaN cells, e.g. judge errors, are left out)."""
        x = self._grid(values)
        means = []
        for seeds, personas in self._indices():
            rows = x[seeds] if x.shape[0] > 1 else x[np.zeros_like(seeds[:, :1])]  # (batch, S, P)
            with warnings.catch_warnings():  # a resample of only NaN cells has no mean, and says so
                warnings.simplefilter("ignore", RuntimeWarning)
                means.append(np.nanmean(np.take_along_axis(rows, personas[:, None, :], axis=2), axis=(1, 2)))
        return np.concatenate(means)

    def interval(self, values) -> tuple[float, float]:
        tail = 100 * (1 - self.confidence_level) / 2
        with warnings.catch_warnings():  # no verdict at all (a judge without probabilities): NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            low, high = np.nanpercentile(self.resampled_means(values), [tail, 100 - tail])
        return float(low), float(high)

    def comparable(self, a, b) -> bool:
        """Whether `a` and `b` share a cell with an outcome in both, so that `difference` is defined."""
        x, y = self._grid(a), self._grid(b)
        shape = (max(x.shape[0], y.shape[0]), self.n_personas)
        return bool((~np.isnan(np.broadcast_to(x, shape)) & ~np.isnan(np.broadcast_to(y, shape))).any())

    def difference(self, a, b) -> Difference:
        """b - a, with both grids broadcast to the seeds (a seed-free system is the same in each)."""
        x, y = self._grid(a), self._grid(b)
        shape = (max(x.shape[0], y.shape[0]), self.n_personas)
        d = np.broadcast_to(y, shape) - np.broadcast_to(x, shape)
        dist = self.resampled_means(d)
        dist = dist[~np.isnan(dist)]
        if not len(dist):
            raise InvalidValue("no paired outcome to compare: every cell of one of the two grids is missing "
                               "(a judge that gave no verdict, or no probability, for this metric)")
        tail = 100 * (1 - self.confidence_level) / 2
        low, high = np.percentile(dist, [tail, 100 - tail])
        below, above = (dist <= 0).sum(), (dist >= 0).sum()  # CI inversion: p < alpha iff the CI excludes 0
        p = min(1.0, 2 * (min(below, above) + 1) / (len(dist) + 1))
        return Difference(float(np.nanmean(x)), float(np.nanmean(y)), float(np.nanmean(d)), float(low),
                          float(high), float(p))


@dataclass(frozen=True)
class SeedInterval:
    """The seed-level interval: a t-interval (and a one-sample t-test of 0) over per-seed values."""

    mean: float
    low: float
    high: float
    pvalue: float
    seeds: int


def seed_interval(per_seed, confidence_level: float = 0.95) -> SeedInterval:
    """Student's t-interval of the mean over training seeds, each seed's value (its mean over the
    same test personas) one observation.

    It treats the personas as fixed and the seeds as the random draws, so it answers "would another
    set of training runs give this?"; with few seeds it is wide, as it should be. NaN with one seed.
    """
    x = np.asarray(per_seed, dtype=float)
    x = x[~np.isnan(x)]
    if len(x) < 2:
        return SeedInterval(float(x.mean()) if len(x) else np.nan, np.nan, np.nan, np.nan, len(x))
    if np.ptp(x) == 0:  # no spread: the interval is the point, and only a zero mean is consistent with 0
        return SeedInterval(float(x[0]), float(x[0]), float(x[0]), 1.0 if x[0] == 0 else 0.0, len(x))
    test = stats.ttest_1samp(x, 0.0)
    ci = test.confidence_interval(confidence_level)
    return SeedInterval(float(x.mean()), float(ci.low), float(ci.high), float(test.pvalue), len(x))


def seeds_to_exclude_zero(per_seed, confidence_level: float = 0.95, most: int = 1000) -> int | None:
    """How many seeds a t-interval would need to exclude 0 if the per-seed mean and spread stayed
    as observed (None: no mean, or not within `most`)."""
    x = np.asarray(per_seed, dtype=float)
    x = x[~np.isnan(x)]
    if len(x) < 2 or x.mean() == 0:
        return None
    sd = x.std(ddof=1)
    for n in range(2, most + 1):
        if stats.t.ppf(0.5 + confidence_level / 2, n - 1) * sd / np.sqrt(n) < abs(x.mean()):
            return n
    return None


def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjustment (Holm 1979) of a family of p-values; NaN entries are not in
    the family and stay NaN. Controls the family-wise error rate under any dependence."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    tested = np.flatnonzero(~np.isnan(p))
    if len(tested):
        order = tested[np.argsort(p[tested], kind="stable")]
        m = len(order)
        out[order] = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    return out
