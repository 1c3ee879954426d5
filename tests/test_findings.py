"""The generated sentences say what the tables say: flip a table and the sentence flips with it.
The REPRODUCE.md block built from them is checked against the committed results in test_packaging."""

import pandas as pd

from slm4offer.report import findings


def gain_rows(judge: str, points: dict[str, tuple[float, float, float]], a="sft", b="contrastive") -> pd.DataFrame:
    return pd.DataFrame([{"judge": judge, "metric": metric, "a": a, "b": b, "a_value": 0.4, "b_value": 0.4 + p / 100,
                          "points": p, "ci_low": lo, "ci_high": hi, "p": 0.01, "relative": p / 40}
                         for metric, (p, lo, hi) in points.items()])


def test_metric_sentence_says_under_which_metric_the_gain_holds():
    gain = gain_rows("simulated", {"thresholded rate": (8, 3, 13), "expected acceptance": (2, -1, 5),
                                   "sampled rate": (2, -2, 6)})
    assert "holds under the thresholded rate only" in findings.metric_sentence(gain, "simulated")
    everywhere = gain_rows("simulated", {m: (5, 1, 9) for m in ("thresholded rate", "expected acceptance",
                                                                 "sampled rate")})
    assert "holds under every metric" in findings.metric_sentence(everywhere, "simulated")
    reversed_ = gain_rows("simulated", {"thresholded rate": (-5, -9, -1), "expected acceptance": (0, -2, 2)})
    sentence = findings.metric_sentence(reversed_, "simulated")
    assert "holds under no metric" in sentence and "lower under the thresholded rate" in sentence


def acceptance(rates: dict[tuple[str, str], float], **columns) -> pd.DataFrame:
    return pd.DataFrame([{"judge": j, "system": s, "mean": r, "seeds": 1, **columns} for (j, s), r in rates.items()])


def test_judge_agreement_names_every_pair_ordered_differently():
    same = acceptance({("simulated", "sft"): 0.4, ("simulated", "contrastive"): 0.5, ("simulated", "popular"): 0.2,
                       ("learned", "sft"): 0.45, ("learned", "contrastive"): 0.55, ("learned", "popular"): 0.25})
    assert "order all 3 systems the same way" in findings.judge_agreement({"t": same})[0]
    flipped = same.copy()
    flipped.loc[(flipped["judge"] == "learned") & (flipped["system"] == "popular"), "mean"] = 0.5
    line = findings.judge_agreement({"t": flipped})[0]
    assert "order 1 of 3 pairs of systems differently" in line and "popular vs sft" in line
    tied = same.copy()
    tied.loc[(tied["judge"] == "learned") & (tied["system"] == "popular"), "mean"] = 0.45
    assert "order all 3 systems the same way" in findings.judge_agreement({"t": tied})[0], "a tie is no flip"


def ablation_table(hard_points: float, hard_holm: float, hard_in_catalogue: float, hard_p_in: float) -> pd.DataFrame:
    base = {"judge": "simulated", "seeds": 1, "in_catalogue": 0.95, "in_catalogue_probability": 0.60}
    return pd.DataFrame([
        {**base, "system": "main recipe", "mean": 0.5, "points_vs_main": None, "points_ci_low": None,
         "points_ci_high": None, "p_vs_main": None, "p_holm": None},
        {**base, "system": "negatives: hard", "mean": 0.5 + hard_points / 100, "points_vs_main": hard_points,
         "points_ci_low": hard_points - 5, "points_ci_high": hard_points + 5, "p_vs_main": hard_holm / 2,
         "p_holm": hard_holm, "in_catalogue": hard_in_catalogue, "in_catalogue_probability": hard_p_in},
        {**base, "system": "τ = 0.2", "mean": 0.52, "points_vs_main": 2.0, "points_ci_low": -3.0,
         "points_ci_high": 7.0, "p_vs_main": 0.03, "p_holm": 0.06}])


def test_ablation_sentences_follow_holm_and_say_where_a_drop_comes_from():
    lines = findings.ablation_sentences(ablation_table(-14, 0.001, 0.70, 0.65))
    assert "negatives: hard below the main recipe by 14.0 points" in lines[0]
    assert "before the correction only: τ = 0.2" in lines[0]
    assert "30% of its offers are not in the catalogue" in lines[1] and "off-catalogue text" in lines[1]
    worse_within = findings.ablation_sentences(ablation_table(-14, 0.001, 0.70, 0.50))
    assert "targets worse within it" in worse_within[1]
    nothing_in_catalogue = findings.ablation_sentences(ablation_table(-14, 0.001, 0.0, float("nan")))
    assert nothing_in_catalogue[1] == "simulated judge, negatives: hard: none of its offers is in the catalogue."
    not_significant = findings.ablation_sentences(ablation_table(-14, 0.2, 0.70, 0.65))
    assert "no variant differs from its counterpart" in not_significant[0] and len(not_significant) == 1


def test_a_scorer_row_is_read_against_the_main_recipes_scorer_not_the_main_recipe():
    table = ablation_table(-1, 0.9, 0.95, 0.60)
    row = {"judge": "simulated", "seeds": 1, "points_ci_low": None, "points_ci_high": None, "p_vs_main": None,
           "p_holm": None, "points_vs_main": None, "in_catalogue_probability": 0.6}
    table = pd.concat([table, pd.DataFrame([
        {**row, "system": "main recipe scorer: catalogue", "mean": 0.6, "in_catalogue": 1.0},
        {**row, "system": "λ = 1 scorer: catalogue", "mean": 0.42, "in_catalogue": 0.5, "points_vs_main": -18.0,
         "points_ci_low": -24.0, "points_ci_high": -12.0, "p_vs_main": 0.001, "p_holm": 0.004,
         "in_catalogue_probability": 0.7}])], ignore_index=True)
    lines = findings.ablation_sentences(table)
    assert "λ = 1 scorer: catalogue below the main recipe scorer: catalogue by 18.0 points" in lines[0]
    assert "(main recipe scorer: catalogue 0%)" in lines[1]
    assert "against the 0.600 of the main recipe scorer" in lines[1]


def alphas(counts: dict[int, dict[str, int]]) -> pd.DataFrame:
    rows = [{"seed": seed, "state": state, "layer": f"l{i}", "under_fitted": i < n}
            for seed, by_state in counts.items() for state, n in by_state.items() for i in range(20)]
    return pd.DataFrame(rows)


def test_layer_sentences_report_the_seeds_not_just_the_mean():
    mixed = alphas({0: {"initial": 17, "sft": 12, "contrastive": 8}, 1: {"initial": 18, "sft": 10, "contrastive": 13},
                    2: {"initial": 16, "sft": 14, "contrastive": 9}})
    line = findings.layer_sentences(mixed)[0]
    assert "-4, +3, -5" in line and "fewer in 2 of 3 seeds and more in 1" in line
    assert "not distinguishable from the spread between seeds" in line
    reverse = alphas({0: {"initial": 17, "sft": 8, "contrastive": 12}, 1: {"initial": 17, "sft": 9, "contrastive": 14}})
    assert "not the paper's direction" in findings.layer_sentences(reverse)[0]
    assert "in 2 of 2 seeds" in findings.layer_sentences(reverse)[1]


def test_domain_sentence_says_whether_the_models_beat_the_popular_offer():
    table = acceptance({("simulated", "popular"): 0.45, ("simulated", "sft"): 0.51, ("simulated", "contrastive"): 0.44})
    gain = gain_rows("simulated", {"thresholded rate": (-7, -12, -2)})
    line = findings.domain_sentences(table, gain, "ecommerce")[0]
    assert line.startswith("ecommerce, simulated judge") and "lower under the thresholded rate" in line
    assert "is beaten by sft." in line


def test_sweep_sentence_counts_the_thresholds_where_contrastive_is_above():
    sweep = pd.DataFrame([{"judge": "simulated", "system": s, "threshold": t, "rate": r}
                          for t, (sft, con) in {0.3: (0.6, 0.7), 0.5: (0.4, 0.5), 0.7: (0.3, 0.2)}.items()
                          for s, r in (("sft", sft), ("contrastive", con))])
    assert findings.sweep_sentence(sweep) == ("Threshold sweep (mean over seeds): simulated judge: contrastive above "
                                              "sft at 2 of 3 thresholds (0.3–0.7).")


def seed_gain(a: str, b: str, points: float, seed_low: float, seed_high: float, needed=None, judge="simulated"):
    return {"judge": judge, "metric": "expected acceptance", "a": a, "b": b, "a_value": 0.4,
            "b_value": 0.4 + points / 100, "points": points, "ci_low": seed_low / 2, "ci_high": seed_high / 2,
            "p": 0.01,
            "seed_ci_low": seed_low, "seed_ci_high": seed_high, "seed_p": 0.01, "seeds": 5, "seeds_needed": needed,
            "relative": points / 40}


def test_the_decision_rule_keeps_retracts_or_calls_inconclusive_on_the_seed_level_interval():
    keep = pd.DataFrame([seed_gain("sft", "contrastive", 4.0, 0.5, 7.5)])
    assert "the generator claim is kept" in findings.decision(keep)
    wide = pd.DataFrame([seed_gain("sft", "contrastive", 4.0, -0.5, 8.5, needed=9)])
    assert "inconclusive; about 9 seeds" in findings.decision(wide), "a bootstrap CI above 0 is not enough"
    small = pd.DataFrame([seed_gain("sft", "contrastive", -1.5, -4.0, 1.0)])
    assert "retracted" in findings.decision(small)
    between = pd.DataFrame([seed_gain("sft", "contrastive", 2.5, 0.5, 4.5, needed=3)])
    assert "inconclusive" in findings.decision(between)
    assert "cannot be applied" in findings.decision(pd.DataFrame([seed_gain("sft", "contrastive", 4, 1, 7, judge="x")]))


def test_scorer_and_control_sentences_follow_their_seed_level_intervals():
    gain = pd.DataFrame([seed_gain("sft", "sft+rerank", 20.0, 15.0, 25.0),
                         seed_gain("sft+rerank", "contrastive+rerank", 0.6, -2.4, 3.6),
                         seed_gain("sft, sampled", "contrastive", 5.0, 1.0, 9.0),
                         seed_gain("sft beams, random pick", "contrastive", -3.0, -6.0, -0.5)])
    scorer = findings.scorer_sentences(gain)
    assert len(scorer) == 2 and "higher, the seed-level interval above 0" in scorer[0]
    assert "not distinguishable at the seed level" in scorer[1]
    controls = findings.control_sentences(gain)
    assert len(controls) == 2 and "more than variety" in controls[0]
    assert "lower, the seed-level interval below 0" in controls[1] and "more than variety" not in controls[1]
