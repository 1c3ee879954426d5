"""The systems' registry: a new system is one entry, and the run, tables, figures, findings and
`make check` pick it up."""

import pandas as pd
import pytest

from slm4offer.config import load_config
from slm4offer.data.dataset import build_dataset, load_catalog
from slm4offer.experiments import metrics
from slm4offer.experiments.acceptance import evaluate
from slm4offer.experiments.systems import SYSTEMS, System, system_offers
from slm4offer.report import check, findings
from slm4offer.report.figures import system_color


def _first_offer(cfg, seed, progress):
    """Everyone gets the catalogue's first offer: a system that needs no model."""
    n = len(build_dataset(cfg, progress=progress)["test"])
    return [load_catalog(cfg.dataset_dir)[0].text] * n


def test_a_new_system_is_one_registry_entry(project_root, monkeypatch):
    monkeypatch.setitem(SYSTEMS, "first offer", System(_first_offer, seeded=False, trained=False, color="#123456"))
    cfg = load_config("smoke", eval_seeds=1)
    run = evaluate(cfg, judges=["simulated"], systems=("random", "popular", "first offer"), progress=False)
    assert set(run.decisions["system"]) == {"random", "popular", "first offer"}
    assert run.decisions.loc[run.decisions["system"] == "first offer", "seed"].isna().all(), "unseeded: judged once"
    table = metrics.acceptance_table(run.decisions)
    assert list(table["system"].astype(str)) == ["random", "popular", "first offer"], "in registry order"
    assert system_color("first offer") == "#123456"
    number = next(n for n in check.acceptance_numbers(table, table, "acceptance") if n.key[2] == "first offer")
    assert number.basis == "no training: same data, same verdicts"
    facts = table.assign(system=table["system"].astype(str))
    assert "first offer" in findings.targeting_sentences(facts, pd.DataFrame(columns=["judge", "a", "b", "metric"]))[0]


def test_an_unknown_system_is_refused():
    with pytest.raises(ValueError, match="system='oracle2': must be one of random, popular"):
        system_offers(load_config("smoke"), "oracle2", 0)


def test_world_only_systems_are_left_out_for_your_own_data():
    assert [name for name, s in SYSTEMS.items() if s.world_only] == ["best"]
    assert [name for name, s in SYSTEMS.items() if not s.seeded] == ["popular", "best"]
