import math

import pytest

from slm4offer.stats import wilson_ci


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
