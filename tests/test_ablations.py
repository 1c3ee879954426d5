import pandas as pd
import pytest

from slm4offer.ablations import BASE, ablation_table, variants
from slm4offer.config import load_config


def test_variants_change_one_setting_each_and_skip_the_main_recipe():
    cfg = load_config("smoke")
    grid = variants(cfg, [0.0, 0.5, 1.0], ["hard+in_batch", "in_batch"], [0.1, 0.2])
    assert grid == {BASE: {}, "λ = 0 (SFT)": {"lam": 0.0}, "λ = 1": {"lam": 1.0},
                    "negatives: in_batch": {"negatives": "in_batch"}, "τ = 0.2": {"tau": 0.2}}
    with pytest.raises(ValueError, match="lam=1.5"):
        variants(cfg, [1.5], [], [])


def test_ablation_table_tests_each_variant_against_the_main_recipe_on_the_same_personas():
    def frame(system, accepts):
        return pd.DataFrame({"system": system, "seed": 0, "judge": "simulated",
                             "persona_id": [f"p{i}" for i in range(len(accepts))], "offer": "o", "accept": accepts,
                             "probability": 0.5, "reason": "r", "error": None})

    main = [True] * 10 + [False] * 10
    better = [True] * 18 + [False] * 2            # 8 personas gained, none lost
    same = list(main)
    decisions = pd.concat([frame(BASE, main), frame("λ = 0.8", better), frame("τ = 0.2", same)], ignore_index=True)
    decisions["seed"] = decisions["seed"].astype("Int64")
    table = ablation_table(decisions, {BASE: {}, "λ = 0.8": {"lam": 0.8}, "τ = 0.2": {"tau": 0.2}}).set_index("system")
    assert table.loc["λ = 0.8", "mcnemar_p_vs_main"] == pytest.approx(2 / 2 ** 8)
    assert table.loc["τ = 0.2", "mcnemar_p_vs_main"] == 1.0
    assert pd.isna(table.loc[BASE, "mcnemar_p_vs_main"])
    assert table.loc["λ = 0.8", "changes"] == "lam=0.8" and table.loc[BASE, "changes"] == "—"
    assert table.loc["λ = 0.8", "mean"] == pytest.approx(0.9)
