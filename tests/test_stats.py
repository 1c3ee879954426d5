import math

import numpy as np
import pytest
from scipy.stats import chi2 as chi2_dist

from slm4offer.stats import agreement, mcnemar_exact, seed_spread, wilson_ci


def wilson_by_formula(k, n, z=1.959963984540054):
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def test_wilson_matches_newcombe_1998_example():
    # Newcombe (1998), Table I: 81/263 -> score interval 0.2553 to 0.3662
    ci = wilson_ci(81, 263)
    assert (round(ci.low, 4), round(ci.high, 4)) == (0.2553, 0.3662)


@pytest.mark.parametrize("k, n", [(0, 10), (10, 10), (3, 7), (940, 1000)])
def test_wilson_matches_the_closed_form(k, n):
    ci = wilson_ci(k, n)
    low, high = wilson_by_formula(k, n)
    assert ci.low == pytest.approx(low, abs=1e-9) and ci.high == pytest.approx(high, abs=1e-9)
    assert 0 <= ci.low <= ci.rate <= ci.high <= 1


@pytest.mark.parametrize("k, n", [(1, 0), (5, 3), (-1, 4)])
def test_wilson_rejects_impossible_counts(k, n):
    with pytest.raises(ValueError, match=f"k={k}, n={n}"):
        wilson_ci(k, n)


def labels_from_table(a, b, c, d):
    """Reference and judge labels for the 2x2 table [[a, b], [c, d]] (rows: reference accept/reject)."""
    ref = np.array([1] * (a + b) + [0] * (c + d), dtype=bool)
    judge = np.array([1] * a + [0] * b + [1] * c + [0] * d, dtype=bool)
    return ref, judge


def test_kappa_matches_the_textbook_example():
    # Cohen's kappa, the worked example on Wikipedia: 20 yes/yes, 5 yes/no, 10 no/yes, 15 no/no -> 0.4
    result = agreement(*labels_from_table(20, 5, 10, 15))
    assert result.kappa == pytest.approx(0.4)
    assert result.raw_agreement == pytest.approx(0.7)
    assert result.table.tolist() == [[20, 5], [10, 15]]
    assert result.kappa_low < 0.4 < result.kappa_high and -1 <= result.kappa_low and result.kappa_high <= 1


@pytest.mark.parametrize("a, b, c, d", [(20, 5, 10, 15), (90, 4, 8, 98), (12, 30, 25, 9)])
def test_chi_square_matches_the_yates_closed_form(a, b, c, d):
    n = a + b + c + d
    expected = n * (abs(a * d - b * c) - n / 2) ** 2 / ((a + b) * (c + d) * (a + c) * (b + d))
    result = agreement(*labels_from_table(a, b, c, d))
    assert result.chi2 == pytest.approx(expected)
    assert result.chi2_pvalue == pytest.approx(chi2_dist.sf(expected, df=1))


def test_an_always_wrong_judge_is_associated_but_disagrees():
    result = agreement(*labels_from_table(0, 50, 50, 0))
    assert result.chi2_pvalue < 1e-10, "strong association"
    assert result.raw_agreement == 0 and result.kappa == pytest.approx(-1.0)


def test_kappa_ci_is_reproducible_and_covers_the_truth_in_simulation():
    rng = np.random.default_rng(0)
    ref = rng.random(200) < 0.4
    judge = np.where(rng.random(200) < 0.85, ref, ~ref)
    first, second = agreement(ref, judge, seed=3), agreement(ref, judge, seed=3)
    assert (first.kappa_low, first.kappa_high) == (second.kappa_low, second.kappa_high)
    assert first.kappa_low < first.kappa < first.kappa_high


def test_mcnemar_exact_is_the_binomial_test_of_the_discordant_pairs():
    a = np.array([1] * 30 + [1] * 3 + [0] * 12 + [0] * 55, dtype=bool)
    b = np.array([1] * 30 + [0] * 3 + [1] * 12 + [0] * 55, dtype=bool)
    test = mcnemar_exact(a, b)
    assert (test.n, test.both, test.only_a, test.only_b, test.neither) == (100, 30, 3, 12, 55)
    # two-sided exact p for 3 vs 12 out of 15: 2 * P(X <= 3), X ~ Bin(15, 1/2)
    assert test.pvalue == pytest.approx(2 * sum(math.comb(15, k) for k in range(4)) / 2 ** 15)
    assert mcnemar_exact(a, a).pvalue == 1.0
    with pytest.raises(ValueError, match="paired outcomes"):
        mcnemar_exact(a, b[:10])


def test_seed_spread_uses_the_sample_standard_deviation():
    assert seed_spread([0.5, 0.6, 0.7]) == pytest.approx((0.6, 0.1))
    assert seed_spread([0.42]) == (0.42, 0.0)


def test_seed_persona_bootstrap_pairs_systems_and_keeps_both_variances():
    from slm4offer.stats import SeedPersonaBootstrap

    rng = np.random.default_rng(1)
    boot = SeedPersonaBootstrap(3, 300, n_resamples=2000, seed=0)
    a = (rng.random((3, 300)) < 0.4).astype(float)
    same = boot.difference(a, a)
    assert (same.diff, same.low, same.high, same.pvalue) == (0.0, 0.0, 0.0, 1.0)
    b = np.maximum(a, rng.random((3, 300)) < 0.15)  # b accepts everyone a does, and more
    gain = boot.difference(a, b)
    assert gain.low > 0 and gain.pvalue < 0.01 and gain.diff == pytest.approx(b.mean() - a.mean())
    low, high = boot.interval(a)
    assert low < a.mean() < high
    seeded = np.vstack([a[0] * 0, a[1], np.ones(300)])  # seeds that differ wildly
    persona_only = SeedPersonaBootstrap(1, 300, n_resamples=2000, seed=0).interval(seeded.mean(axis=0, keepdims=True))
    both = boot.interval(seeded)
    assert both[1] - both[0] > 3 * (persona_only[1] - persona_only[0]), "seed variance is kept"
    flat = boot.difference(a[:1], b)  # a seed-free system is the same in every seed
    assert flat.diff == pytest.approx((b - a[:1]).mean())
    with pytest.raises(ValueError, match="seeds"):
        boot.interval(np.zeros((2, 300)))


def test_holm_matches_the_textbook_example():
    from slm4offer.stats import holm

    # Holm (1979) step-down: sorted p 0.01, 0.02, 0.03, 0.04 with m = 4 -> 0.04, 0.06, 0.06, 0.06
    assert holm([0.03, 0.01, 0.04, 0.02]).tolist() == pytest.approx([0.06, 0.04, 0.06, 0.06])
    out = holm([0.5, np.nan, 0.6])
    assert np.isnan(out[1]) and out[[0, 2]].tolist() == pytest.approx([1.0, 1.0])


def test_a_difference_with_no_paired_outcome_is_a_clear_error_not_an_index_error():
    from slm4offer.stats import SeedPersonaBootstrap

    boot = SeedPersonaBootstrap(2, 4, n_resamples=50)
    empty, full = np.full((2, 4), np.nan), np.ones((2, 4))
    assert not boot.comparable(empty, full) and boot.comparable(full, full)
    with pytest.raises(ValueError, match="no paired outcome to compare"):
        boot.difference(empty, full)


def test_batches_of_resamples_give_the_draws_of_one_batch():
    from slm4offer.stats import SeedPersonaBootstrap

    x = np.random.default_rng(3).random((3, 101))
    x[0, 5] = np.nan
    one = SeedPersonaBootstrap(3, 101, n_resamples=300, batch=300).resampled_means(x)
    many = SeedPersonaBootstrap(3, 101, n_resamples=300, batch=7).resampled_means(x)
    assert np.array_equal(one, many)
