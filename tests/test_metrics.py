"""Acceptance metrics from per-persona decisions: known decisions give known numbers, every metric
treats off-catalogue offers and judge errors as documented, and the saved tables can be recomputed."""

import numpy as np
import pandas as pd
import pytest

from slm4offer import paper
from slm4offer.cli import main
from slm4offer.experiments import metrics
from slm4offer.report.check import recompute
from slm4offer.stats import wilson_ci


def decisions_frame(accepts: dict, judge="simulated", probability=0.5) -> pd.DataFrame:
    """Decisions for (system, seed) -> accept list; personas p0, p1, ... with u = 0.5 each."""
    frames = [pd.DataFrame({"system": system, "seed": seed, "persona_id": [f"p{i:02d}" for i in range(len(v))],
                            "offer": "o", "offer_id": "x", "parsed": True, "in_catalogue": True, "u": 0.5,
                            "judge": judge, "accept": v, "probability": probability, "reason": "r", "error": None})
              for (system, seed), v in accepts.items()]
    out = pd.concat(frames, ignore_index=True)
    out["seed"] = out["seed"].astype("Int64")
    return out


SFT0 = [True] * 8 + [False] * 12                 # 40%
SFT1 = [True] * 10 + [False] * 10                # 50%
CON0 = [True] * 8 + [True] * 6 + [False] * 6     # 70%: 6 personas only contrastive accepts
CON1 = [True] * 10 + [False] * 10                # 50%: identical to SFT1


def known() -> pd.DataFrame:
    d = decisions_frame({("sft", 0): SFT0, ("sft", 1): SFT1, ("contrastive", 0): CON0, ("contrastive", 1): CON1,
                         ("popular", None): [True] * 5 + [False] * 15})
    d["probability"] = np.where(d["accept"], 0.8, 0.2)
    return d


def test_table_from_known_decisions():
    table = metrics.acceptance_table(known()).set_index("system")
    assert list(table.index) == ["popular", "sft", "contrastive"], "ordered as SYSTEMS"
    assert table.loc["sft", "mean"] == pytest.approx(0.45) and table.loc["sft", "std"] == pytest.approx(0.0707107)
    assert table.loc["contrastive", "mean"] == pytest.approx(0.60)
    assert (table.loc["sft", "accepted"], table.loc["sft", "judged"]) == (18, 40)
    assert table.loc["sft", "ci_low"] < 0.45 < table.loc["sft", "ci_high"]
    assert table.loc["popular", "seeds"] == 1 and table.loc["popular", "std"] == 0
    assert table.loc["sft", "paper"] == paper.ACCEPTANCE["sft"] and np.isnan(table.loc["popular", "paper"])
    # P is 0.8 for an accept and 0.2 for a reject; u = 0.5 sits between, so sampling = the verdicts
    assert table.loc["sft", "expected"] == pytest.approx(0.45 * 0.8 + 0.55 * 0.2)
    assert table.loc["sft", "sampled"] == pytest.approx(0.45)
    assert table.loc["sft", ["parsed", "in_catalogue", "distinct_offers"]].tolist() == [1, 1, 1]


def test_seed_and_persona_interval_is_wider_than_the_pooled_wilson_interval_when_seeds_differ():
    rng = np.random.default_rng(0)
    accepts = {("sft", s): list(rng.random(200) < rate) for s, rate in enumerate((0.3, 0.45, 0.6))}
    row = metrics.acceptance_table(decisions_frame(accepts)).iloc[0]
    pooled = wilson_ci(int(row["accepted"]), int(row["judged"]))
    assert row["ci_high"] - row["ci_low"] > 1.5 * (pooled.high - pooled.low), "seeds add their own variance"


def test_off_catalogue_offers_count_as_zero_and_errors_are_left_out():
    d = decisions_frame({("sft", 0): [True, True, False, False]}, probability=0.9)
    d.loc[1, ["in_catalogue", "probability", "accept"]] = [False, np.nan, False]  # the simulated judge's off-catalogue
    d["accept"] = d["accept"].astype(object)
    d.loc[3, ["accept", "probability", "error"]] = [None, None, "HTTP 500: boom"]
    row = metrics.acceptance_table(d).iloc[0]
    assert (row["errors"], row["judged"], row["accepted"]) == (1, 3, 1)
    assert row["mean"] == pytest.approx(1 / 3)
    assert row["expected"] == pytest.approx((0.9 + 0 + 0.9) / 3), "off-catalogue is 0, the error is not a verdict"
    assert row["in_catalogue_probability"] == pytest.approx(0.9)


def test_a_judge_without_probabilities_has_no_expected_acceptance_rather_than_zero():
    d = decisions_frame({("sft", 0): [True, False]}, judge="llm", probability=None)
    row = metrics.acceptance_table(d).iloc[0]
    assert row["mean"] == 0.5 and np.isnan(row["expected"]) and np.isnan(row["sampled"])


def test_a_judge_without_probabilities_is_compared_on_its_verdicts_only():
    """Its verdicts on catalogue offers once crashed the comparisons (an empty bootstrap distribution)."""
    d = decisions_frame({("sft", 0): SFT0, ("contrastive", 0): CON0}, judge="llm", probability=None)
    d.loc[d["persona_id"] == "p00", "in_catalogue"] = False  # off-catalogue: still no number without a probability
    assert metrics.acceptance_table(d)["expected"].isna().all()
    gain = metrics.comparisons(d)
    assert gain["metric"].tolist() == ["thresholded rate"] and gain["points"].iloc[0] == pytest.approx(30.0)
    assert metrics.threshold_sweep(d).empty
    simulated = decisions_frame({("sft", 0): SFT0, ("contrastive", 0): CON0}, probability=0.6)
    both = pd.concat([d, simulated], ignore_index=True)
    assert set(metrics.comparisons(both).query("judge == 'simulated'")["metric"]) == {
        m.label for m in metrics.METRICS.values()}, "the other judge keeps every metric"


def test_sampled_rate_is_the_draw_below_the_probability():
    d = decisions_frame({("sft", 0): [False] * 4}, probability=0.3)
    d["u"] = [0.1, 0.2, 0.5, 0.9]
    assert metrics.outcomes(d, "sampled").tolist() == [1.0, 1.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="metric='median'"):
        metrics.outcomes(d, "median")


def test_threshold_sweep_reapplies_the_judges_rule():
    d = decisions_frame({("sft", 0): [False] * 4})
    d["probability"] = [0.2, 0.4, 0.6, np.nan]  # the last one off-catalogue: never accepted
    sweep = metrics.threshold_sweep(d, thresholds=(0.3, 0.5, 0.7)).set_index("threshold")["rate"]
    assert sweep.tolist() == pytest.approx([0.5, 0.25, 0.0])


def test_comparisons_are_paired_and_the_paper_row_is_its_own():
    gain = metrics.comparisons(known())
    row = gain[(gain["a"] == "sft") & (gain["metric"] == "thresholded rate")].iloc[0]
    assert row["points"] == pytest.approx(15.0) and row["relative"] == pytest.approx(0.15 / 0.45)
    assert row["ci_low"] <= 15.0 <= row["ci_high"] and 0 < row["p"] <= 1
    assert metrics.paper_gain()["relative"] == pytest.approx(0.175)
    same = metrics.comparisons(decisions_frame({("sft", 0): SFT1, ("contrastive", 0): SFT1}))
    assert (same["points"] == 0).all() and (same["p"] == 1).all()


def test_per_seed_mcnemar():
    tests = metrics.paired_tests(known()).set_index("seed")
    assert tests.loc[0, ["both", "only_sft", "only_contrastive", "neither"]].tolist() == [8, 0, 6, 6]
    assert tests.loc[0, "mcnemar_p"] == pytest.approx(2 / 2 ** 6)  # 6 discordant, all one way
    assert tests.loc[1, "mcnemar_p"] == 1.0


def test_holm_adjusts_the_family_of_comparisons():
    d = known()
    vs = metrics.with_holm(metrics.comparisons(d, [("sft", "contrastive"), ("sft", "popular")]))
    rate = vs[vs["metric"] == "thresholded rate"]
    assert len(rate) == 2 and (rate["p_holm"] >= rate["p"]).all()
    assert rate["p_holm"].max() <= 1


def test_decision_file_round_trip_and_recompute_finds_a_changed_number(tmp_path):
    d = known()
    d2 = d.assign(judge="learned")
    both = pd.concat([d, d2], ignore_index=True)
    wide = metrics.to_wide(both)
    assert len(wide) == len(d) and {"simulated_accept", "learned_probability"} <= set(wide.columns)
    (tmp_path / "decisions").mkdir()
    wide.to_csv(tmp_path / "decisions" / "acceptance.csv", index=False)
    back = metrics.read_decisions(tmp_path / "decisions" / "acceptance.csv")
    table = metrics.acceptance_table(both)
    pd.testing.assert_frame_equal(metrics.acceptance_table(back).astype({"system": str}),
                                  table.astype({"system": str}))
    table.to_csv(tmp_path / "acceptance.csv", index=False)
    metrics.comparisons(both).to_csv(tmp_path / "acceptance_gain.csv", index=False)
    assert recompute(tmp_path) == [] and main(["recompute", str(tmp_path)]) == 0
    table.loc[0, "mean"] += 0.01
    table.to_csv(tmp_path / "acceptance.csv", index=False)
    problems = recompute(tmp_path)
    assert len(problems) == 1 and "mean" in problems[0] and main(["recompute", str(tmp_path)]) == 1


def test_a_new_metric_is_one_registry_entry(monkeypatch, tmp_path):
    from slm4offer.report import check, findings, tables

    monkeypatch.setitem(metrics.METRICS, "graded", metrics.Metric(
        "graded", "graded rate", "P(accept) counted whatever the catalogue says", "graded", "graded_", True,
        lambda d, p, t: p))
    d = known()
    table = metrics.acceptance_table(d)
    assert {"graded", "graded_std", "graded_ci_low", "graded_ci_high"} <= set(table.columns)
    gain = metrics.comparisons(d)
    assert "graded rate" in set(gain["metric"])
    assert "graded rate" in findings.metric_sentence(gain, "simulated")
    assert "graded rate: P(accept) counted" in tables.metric_legend(0.5)
    names = [n.name for n in check.acceptance_numbers(table, table, "acceptance")]
    assert "acceptance (graded): sft, simulated judge" in names
    assert metrics.rate_cell(table.iloc[0], "graded").count("[") == 1


def test_the_seed_level_interval_is_a_t_interval_over_per_seed_differences():
    from scipy import stats

    gain = metrics.comparisons(known())
    row = gain[(gain["a"] == "sft") & (gain["b"] == "contrastive") & (gain["metric"] == "thresholded rate")].iloc[0]
    per_seed = np.array([70 - 40, 50 - 50], dtype=float)  # points, seed 0 and seed 1
    low, high = stats.t.interval(0.95, 1, loc=per_seed.mean(), scale=stats.sem(per_seed))
    assert (row["seed_ci_low"], row["seed_ci_high"]) == pytest.approx((low, high))
    assert row["seeds"] == 2 and row["seed_p"] == pytest.approx(stats.ttest_1samp(per_seed, 0).pvalue)
    assert row["seed_ci_high"] - row["seed_ci_low"] > row["ci_high"] - row["ci_low"], "two seeds: wide"
    table = metrics.acceptance_table(known()).set_index("system")
    low, high = stats.t.interval(0.95, 1, loc=0.45, scale=stats.sem([0.4, 0.5]))
    assert (table.loc["sft", "seed_ci_low"], table.loc["sft", "seed_ci_high"]) == pytest.approx((low, high))
    assert np.isnan(table.loc["popular", "seed_ci_low"]), "one seed has no seed-level interval"
    assert "seeds [" in metrics.rate_cell(table.loc["sft"]) and "seeds [" not in metrics.rate_cell(table.loc["popular"])


def test_seeds_needed_is_the_smallest_count_whose_t_interval_excludes_zero():
    from scipy import stats

    from slm4offer.stats import seeds_to_exclude_zero

    per_seed = [4.9, 3.6, 13.5]
    n = seeds_to_exclude_zero(per_seed)
    sd, mean = np.std(per_seed, ddof=1), np.mean(per_seed)
    assert stats.t.ppf(0.975, n - 1) * sd / np.sqrt(n) < mean <= stats.t.ppf(0.975, n - 2) * sd / np.sqrt(n - 1)
    assert seeds_to_exclude_zero([0.0, 0.0]) is None and seeds_to_exclude_zero([1.0]) is None
