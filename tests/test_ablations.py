import pandas as pd
import pytest

from slm4offer.config import load_config
from slm4offer.experiments.ablations import BASE, ablation_gains, ablation_table, scorer_variants, variants


def test_variants_change_one_setting_each_and_skip_the_main_recipe():
    cfg = load_config("smoke")
    grid = variants(cfg, [0.0, 0.5, 1.0], ["hard+in_batch", "in_batch"], [0.1, 0.2])
    assert grid == {BASE: {}, "λ = 0 (SFT)": {"lam": 0.0}, "λ = 1": {"lam": 1.0},
                    "negatives: in_batch": {"negatives": "in_batch"}, "τ = 0.2": {"tau": 0.2}}
    with pytest.raises(ValueError, match="lam=1.5"):
        variants(cfg, [1.5], [], [])


def frame(system, accepts):
    return pd.DataFrame({"system": system, "seed": 0, "judge": "simulated",
                         "persona_id": [f"p{i:02d}" for i in range(len(accepts))], "offer": "o", "offer_id": "x",
                         "parsed": True, "in_catalogue": True, "u": 0.5, "accept": accepts,
                         "probability": [0.9 if a else 0.1 for a in accepts], "reason": "r", "error": None})


def test_scorer_rows_run_the_scoring_systems_and_are_compared_with_the_main_recipes_scorer():
    grid, systems = scorer_variants(load_config("smoke"), [1.0])
    assert systems == {"main recipe scorer: SFT beams": "sft+rerank", "main recipe scorer: catalogue":
                       "catalog by similarity", "λ = 1 scorer: SFT beams": "sft+rerank",
                       "λ = 1 scorer: catalogue": "catalog by similarity"}
    assert grid["λ = 1 scorer: catalogue"] == {"lam": 1.0} and grid["main recipe scorer: catalogue"] == {}
    with pytest.raises(ValueError, match="needs a trained similarity"):
        scorer_variants(load_config("smoke"), [0.0])
    main, worse = [True] * 30 + [False] * 10, [True] * 10 + [False] * 30
    decisions = pd.concat([frame(BASE, main), frame("main recipe scorer: catalogue", main),
                           frame("λ = 1 scorer: catalogue", worse)], ignore_index=True)
    decisions["seed"] = decisions["seed"].astype("Int64")
    gains = ablation_gains(decisions)
    # the main recipe's scorer is the acceptance table's comparison, not an ablation
    pairs = set(zip(gains["a"], gains["b"], strict=True))
    assert pairs == {("main recipe scorer: catalogue", "λ = 1 scorer: catalogue")}
    rate = gains[(gains["metric"] == "thresholded rate") & (gains["b"] == "λ = 1 scorer: catalogue")].iloc[0]
    assert rate["points"] == pytest.approx(-50.0) and rate["p_holm"] >= rate["p"]


def test_ablation_table_tests_each_variant_against_the_main_recipe_on_the_same_personas():
    main = [True] * 20 + [False] * 20
    better = [True] * 36 + [False] * 4            # 16 personas gained, none lost
    same = list(main)
    decisions = pd.concat([frame(BASE, main), frame("λ = 0.8", better), frame("τ = 0.2", same)], ignore_index=True)
    decisions["seed"] = decisions["seed"].astype("Int64")
    table = ablation_table(decisions, {BASE: {}, "λ = 0.8": {"lam": 0.8}, "τ = 0.2": {"tau": 0.2}}).set_index("system")
    assert table.loc["λ = 0.8", "points_vs_main"] == pytest.approx(40.0)
    assert table.loc["λ = 0.8", "points_ci_low"] > 0 and table.loc["λ = 0.8", "p_holm"] < 0.05
    assert table.loc["τ = 0.2", "points_vs_main"] == 0 and table.loc["τ = 0.2", "p_holm"] == 1.0
    assert table.loc["λ = 0.8", "p_holm"] == pytest.approx(min(1, 2 * table.loc["λ = 0.8", "p_vs_main"])), "2 tests"
    assert pd.isna(table.loc[BASE, "p_vs_main"]) and pd.isna(table.loc[BASE, "p_holm"])
    assert table.loc["λ = 0.8", "changes"] == "lam=0.8" and table.loc[BASE, "changes"] == "—"
    assert table.loc["λ = 0.8", "mean"] == pytest.approx(0.9)
