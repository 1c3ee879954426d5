import pandas as pd
import pytest

from slm4offer.config import load_config
from slm4offer.experiments import metrics
from slm4offer.experiments.size_study import (
    label,
    size_gain_differences,
    size_gains,
    size_grid,
    size_table,
    widths_around,
)
from slm4offer.report.findings import size_difference_sentences, size_sentences


def test_the_grid_scales_width_like_t5_and_keeps_the_profiles_own_models():
    cfg = load_config("default")
    assert widths_around(cfg) == [64, 128, 256]
    grid = size_grid(cfg, [256, 64, 128])
    assert list(grid) == [label(k, w) for w in (64, 128, 256) for k in ("sft", "contrastive")]
    assert grid[label("contrastive", 256)] == {"d_model": 256, "d_ff": 1024, "d_kv": 64}
    assert grid[label("sft", 64)] == {"d_model": 64, "d_ff": 256, "d_kv": 16, "lam": 0.0}
    # the middle width changes nothing: the main table's models are reused from the cache
    assert all(getattr(cfg, k) == v for k, v in grid[label("contrastive", 128)].items())
    smoke = load_config("smoke")  # d_ff = 2·d_model there: the ratio is the profile's
    middle = size_grid(smoke, widths_around(smoke))[label("contrastive", smoke.d_model)]
    assert all(getattr(smoke, k) == v for k, v in middle.items())
    with pytest.raises(ValueError, match="at least two"):
        size_grid(cfg, [128, 128])
    with pytest.raises(ValueError, match="multiple of num_heads"):
        size_grid(cfg, [64, 66])


def frame(system: str, seed: int, accepts: list[bool]) -> pd.DataFrame:
    return pd.DataFrame({"system": system, "seed": seed, "judge": "simulated",
                         "persona_id": [f"p{i:02d}" for i in range(len(accepts))], "offer": "o", "offer_id": "x",
                         "parsed": True, "in_catalogue": True, "u": 0.5, "accept": accepts,
                         "probability": [0.9 if a else 0.1 for a in accepts], "reason": "r", "error": None})


def test_the_gain_is_paired_within_each_width_and_the_sentences_follow_the_intervals():
    n = 60
    base = [True] * 20 + [False] * 40
    gained = [True] * 50 + [False] * 10          # 30 personas gained over `base`, none lost
    frames = []
    for seed in (0, 1, 2):
        frames += [frame(label("sft", 64), seed, base), frame(label("contrastive", 64), seed, base),
                   frame(label("sft", 128), seed, base), frame(label("contrastive", 128), seed, gained)]
    decisions = pd.concat(frames, ignore_index=True)
    decisions["seed"] = decisions["seed"].astype("Int64")
    models = pd.DataFrame({"d_model": [64, 64, 128, 128], "kind": ["sft", "contrastive"] * 2, "seed": 0,
                           "parameters": [1000, 1000, 4000, 4000], "train_seconds": 1.0})
    table = size_table(metrics.acceptance_table(decisions), size_gains(decisions), models)
    rate = table[table["metric"] == "thresholded rate"].set_index("d_model")
    assert rate.loc[64, "gain_points"] == 0 and rate.loc[128, "gain_points"] == pytest.approx(100 * 30 / n)
    assert rate.loc[128, "gain_ci_low"] > 0 and rate.loc[64, "gain_ci_low"] <= 0 <= rate.loc[64, "gain_ci_high"]
    assert rate.loc[128, "contrastive"] == pytest.approx(50 / n) and rate.loc[128, "sft_std"] == 0
    assert rate.loc[128, "parameters"] == 4000 and rate.loc[128, "seeds"] == 3
    assert set(table["metric"]) == {"thresholded rate", "expected acceptance", "sampled rate"}
    (line,) = size_sentences(table)
    assert "The CI excludes zero at d_model 128;" in line
    assert "at the largest width the gain is larger than at the smallest (intervals do not overlap)." in line
    # a third width: the gain is 128's at a middle width, and none again at the largest
    three = pd.concat([decisions, decisions[decisions["system"].str.endswith(" 64")].assign(
        system=lambda d: d["system"].str.replace(" 64", " 256"))], ignore_index=True)
    three["system"] = three["system"].str.replace(" 128", " 96")
    models = pd.DataFrame({"d_model": [64, 96, 256], "kind": "contrastive", "seed": 0,
                           "parameters": [1000, 2000, 8000], "train_seconds": 1.0})
    (line,) = size_sentences(size_table(metrics.acceptance_table(three), size_gains(three), models))
    assert "the gain is the same as at the smallest (intervals overlap)" in line
    assert "; the gain peaks at d_model 96, whose interval and the largest width's do not overlap." in line

    # the gains' differences: paired, one family of pairs of widths per judge and metric
    two = size_gain_differences(decisions)
    rate2 = two[two["metric"] == "thresholded rate"].iloc[0]
    assert (rate2["second"], rate2["first"]) == ("d_model 128", "d_model 64")
    assert rate2["points"] == pytest.approx(100 * 30 / n) and rate2["ci_low"] > 0 and rate2["p_holm"] == rate2["p"]
    assert rate2["seed_ci_low"] == rate2["seed_ci_high"] == pytest.approx(100 * 30 / n), "the same in every seed"
    pairs = size_gain_differences(three)
    pairs = pairs[pairs["metric"] == "thresholded rate"].set_index(["second", "first"])
    assert len(pairs) == 3 and (pairs["p_holm"] >= pairs["p"]).all()
    assert pairs.loc[("d_model 256", "d_model 96"), "points"] == pytest.approx(-100 * 30 / n)
    assert pairs.loc[("d_model 256", "d_model 64"), "points"] == 0
    (said,) = size_difference_sentences(size_gain_differences(three))
    assert "The gains differ for d_model 96 vs d_model 64, d_model 256 vs d_model 96." in said
