"""Tuning: both methods searched alike on validation, and training takes a choice only for the
exact setup it was made for."""

import dataclasses
import math

import pandas as pd
import pytest

from slm4offer.config import load_config
from slm4offer.experiments import tuning
from slm4offer.model import tuned
from slm4offer.model.training import kind_config
from slm4offer.report.tables import save_tuning


def grid_table(criteria: dict[tuple[str, float], float]) -> pd.DataFrame:
    return pd.DataFrame([{"kind": kind, "d_model": 64, "learning_rate": lr, "criterion": value, "best_epoch": 2.0,
                          "epochs_run": 2.0, "epoch_cap": 2, "train_seconds": 10.0, "seconds_per_epoch": 5.0}
                         for (kind, lr), value in criteria.items()])


def test_the_best_criterion_is_chosen_per_kind_first_in_grid_order_among_equals():
    table = tuning.choose(grid_table({("sft", 3e-4): 0.4, ("sft", 1e-3): 0.5, ("sft", 3e-3): 0.5,
                                      ("contrastive", 3e-4): 0.6, ("contrastive", 1e-3): 0.2,
                                      ("contrastive", 3e-3): 0.1}))
    chosen = table[table["chosen"]].set_index("kind")["learning_rate"]
    assert chosen.to_dict() == {"sft": 1e-3, "contrastive": 3e-4}


def test_training_takes_the_choice_for_its_exact_setup_only(project_root):
    cfg = load_config("smoke")
    save_tuning(cfg, tuning.choose(grid_table({("sft", 3e-4): 0.1, ("sft", 3e-3): 0.5,
                                               ("contrastive", 3e-4): 0.6, ("contrastive", 3e-3): 0.2})))
    assert (cfg.results_dir / "tuning.md").is_file() and (cfg.results_dir / "tuning.csv").is_file()
    assert kind_config(cfg, "sft").learning_rate == 3e-3
    assert kind_config(cfg, "contrastive").learning_rate == 3e-4
    assert kind_config(dataclasses.replace(cfg, train_seed=7), "sft").learning_rate == 3e-3, "any seed"
    assert kind_config(dataclasses.replace(cfg, tau=0.2), "contrastive").learning_rate == cfg.learning_rate, \
        "another setup keeps its own learning rate"
    assert kind_config(dataclasses.replace(cfg, tuning="off"), "sft").learning_rate == cfg.learning_rate
    assert kind_config(dataclasses.replace(cfg, n_personas=300), "sft").learning_rate == cfg.learning_rate, \
        "another world keeps its own"
    record = tuned.read_record(cfg)
    assert record["tuning_seed"] == tuning.TUNING_SEED and {c["kind"] for c in record["choices"]} == {"sft",
                                                                                                       "contrastive"}


def test_the_tuning_seed_is_never_an_evaluation_seed():
    with pytest.raises(ValueError, match="include the tuning seed"):
        tuning.search_config(load_config("smoke", train_seed=tuning.TUNING_SEED - 1, eval_seeds=5), 64,
                             tuning.points()[0])


def test_a_search_trains_each_kind_at_each_point_and_an_equal_compute_sft(smoke_data, monkeypatch):
    monkeypatch.setattr(tuning, "GRID", {"learning_rate": (3e-3,)})
    cfg = load_config("smoke", epochs=1)
    table = tuning.run_search(cfg, [cfg.d_model], progress=False)
    assert list(table["kind"]) == ["sft", "contrastive", tuning.EQUAL_COMPUTE] and table["chosen"].all()
    longer = table.set_index("kind").loc[tuning.EQUAL_COMPUTE]
    assert longer["flop_ratio"] > 1.5 and longer["epoch_cap"] == math.ceil(cfg.epochs * longer["flop_ratio"]), \
        "SFT gets the contrastive cap's training FLOPs"
    assert (table["best_epoch"] >= 1).all() and (table["epochs_run"] <= table["epoch_cap"]).all()
