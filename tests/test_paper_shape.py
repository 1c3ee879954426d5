"""The `paper` profile's model shape (T5-Small: d_model 512, 6+6 layers, 8 heads) on a tiny world,
so that a GPU user's `make all PROFILE=paper` does not fail hours in on a path nobody ran: both
losses train for a few steps in fp32, generation, reranking, catalogue ranking, judging and the
acceptance table run as in `make all`. bf16 autocast is tested on the smoke shape (test_distributed):
on a CPU without native bf16 two steps of this shape take over a minute."""

import math

import pandas as pd

from slm4offer.config import PROFILES, load_config
from slm4offer.experiments.acceptance import acceptance_results
from slm4offer.model.training import train
from slm4offer.report.tables import save_acceptance

# Only the world, the sequences and the step count shrink; every model setting is the paper profile's.
TINY_WORLD = dict(n_personas=30, catalog_size=16, batch_size=8, epochs=1, max_persona_tokens=48,
                  max_offer_tokens=24, eval_seeds=1, judges="simulated", baseline_candidates=2)


def test_the_paper_shape_trains_and_writes_a_table(project_root):
    cfg = load_config("paper", **TINY_WORLD)
    assert {k: getattr(cfg, k) for k in ("d_model", "d_ff", "num_layers", "num_heads", "d_kv")} == {
        k: PROFILES["paper"][k] for k in ("d_model", "d_ff", "num_layers", "num_heads", "d_kv")}

    res = acceptance_results(cfg, progress=False)
    save_acceptance(cfg, res)
    table = pd.read_csv(cfg.results_dir / "acceptance.csv")
    assert {"sft", "contrastive", "sft+rerank", "contrastive+rerank", "catalog by similarity"} <= set(table["system"])
    assert table["judged"].gt(0).all() and table["mean"].between(0, 1).all()

    for kind in ("sft", "contrastive"):
        model = train(cfg, kind, progress=False)
        assert model.info["model_config"]["num_layers"] == 6 and model.info["parameters"] > 30_000_000
        assert all(math.isfinite(log["loss"]) for log in model.log_history if "loss" in log)

