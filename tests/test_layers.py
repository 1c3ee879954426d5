import pandas as pd
import pytest

from slm4offer import paper
from slm4offer.config import load_config
from slm4offer.experiments.layers import layer_alphas, underfit_summary
from slm4offer.model.training import load_initial, train


def test_each_t5_matrix_is_analysed_once_and_the_projection_is_left_out(smoke_models):
    model = load_initial(train(load_config("smoke"), "sft", progress=False))[0]
    alphas = layer_alphas(model, threshold=6.0)
    # smoke T5: the tied embedding + 2 encoder blocks x 6 matrices + 2 decoder blocks x 10 matrices;
    # the 32 x 2 relative-position biases have too few eigenvalues to fit
    assert len(alphas) == 1 + 2 * 6 + 2 * 10 and alphas["layer"].is_unique
    assert "shared" in set(alphas["layer"]) and not alphas["layer"].str.contains("embed_tokens|lm_head").any()
    assert "projection" not in set(alphas["layer"])
    assert (alphas["under_fitted"] == (alphas["alpha"] > 6.0)).all() and (alphas["alpha"] > 1).all()


def test_underfit_summary_counts_per_seed_and_shows_the_paper():
    rows = [{"state": state, "seed": seed, "layer": f"l{i}", "alpha": 7.0 if i < under else 3.0,
             "under_fitted": i < under}
            for state, counts in {"sft": (4, 6), "contrastive": (2, 2)}.items()
            for seed, under in enumerate(counts) for i in range(10)]
    summary = underfit_summary(pd.DataFrame(rows))
    assert summary.loc["sft", "under-fitted (mean)"] == 5
    assert summary.loc["sft", "under-fitted (std)"] == pytest.approx(2 ** 0.5)
    assert summary.loc["contrastive", "share under-fitted"] == pytest.approx(0.2)
    assert summary.loc["sft", "paper (T5-Small)"] == paper.UNDERFIT_LAYERS["sft"]
    assert list(summary.index) == ["sft", "contrastive"]
