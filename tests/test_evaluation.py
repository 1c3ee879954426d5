"""Acceptance table, paired tests and improvement: known inputs give known numbers; the smoke run is consistent."""

import numpy as np
import pandas as pd
import pytest
from fault_server import rule_judge, serving

from slm4offer import paper
from slm4offer.cli import main
from slm4offer.config import load_config
from slm4offer.data import build_dataset
from slm4offer.evaluation import (
    AcceptanceResults,
    acceptance_table,
    evaluate,
    formatted,
    improvement,
    paired_tests,
    save_acceptance,
)
from slm4offer.stats import wilson_ci


def decisions_frame(accepts: dict[tuple[str, int | None], list[bool]], judge="simulated") -> pd.DataFrame:
    frames = [pd.DataFrame({"system": system, "seed": seed, "judge": judge,
                            "persona_id": [f"p{i}" for i in range(len(values))], "offer": "o",
                            "accept": values, "probability": 0.5, "reason": "r", "error": None})
              for (system, seed), values in accepts.items()]
    out = pd.concat(frames, ignore_index=True)
    out["seed"] = out["seed"].astype("Int64")
    return out


def test_table_tests_and_improvement_from_known_decisions():
    sft0 = [True] * 8 + [False] * 12            # 40%
    sft1 = [True] * 10 + [False] * 10           # 50%
    con0 = [True] * 8 + [True] * 6 + [False] * 6   # 70%: 6 personas only contrastive accepts
    con1 = [True] * 10 + [False] * 10           # 50%: identical to sft1
    decisions = decisions_frame({("sft", 0): sft0, ("sft", 1): sft1, ("contrastive", 0): con0,
                                 ("contrastive", 1): con1, ("popular", None): [True] * 5 + [False] * 15})
    table = acceptance_table(decisions).set_index("system")
    assert list(table.index) == ["popular", "sft", "contrastive"], "ordered as SYSTEMS"
    assert table.loc["sft", "mean"] == pytest.approx(0.45) and table.loc["sft", "std"] == pytest.approx(0.0707107)
    assert table.loc["contrastive", "mean"] == pytest.approx(0.60)
    assert (table.loc["sft", "accepted"], table.loc["sft", "judged"]) == (18, 40)
    ci = wilson_ci(18, 40)
    assert (table.loc["sft", "ci_low"], table.loc["sft", "ci_high"]) == pytest.approx((ci.low, ci.high))
    assert table.loc["popular", "seeds"] == 1 and table.loc["popular", "std"] == 0
    assert table.loc["sft", "paper"] == paper.ACCEPTANCE["sft"] and np.isnan(table.loc["popular", "paper"])

    tests = paired_tests(decisions).set_index("seed")
    assert tests.loc[0, ["both", "only_sft", "only_contrastive", "neither"]].tolist() == [8, 0, 6, 6]
    assert tests.loc[0, "mcnemar_p"] == pytest.approx(2 / 2 ** 6)  # 6 discordant, all one way
    assert tests.loc[1, "mcnemar_p"] == 1.0

    gain = improvement(acceptance_table(decisions)).set_index("judge")
    assert gain.loc["simulated", "points"] == pytest.approx(15.0)
    assert gain.loc["simulated", "relative"] == pytest.approx(0.15 / 0.45)
    assert gain.loc["paper (LLM judge)", "relative"] == pytest.approx(0.175)

    wide = formatted(acceptance_table(decisions))
    assert wide.loc["sft", "simulated judge"].startswith("45.0 ± 7.1 [")
    assert wide.loc["contrastive", "paper"] == "94"


def test_judge_errors_are_counted_and_left_out_of_the_rate():
    decisions = decisions_frame({("sft", 0): [True, True, False, False]}, judge="llm")
    decisions["accept"] = decisions["accept"].astype(object)  # as evaluate() builds it when a judge errs
    decisions.loc[0, ["accept", "error"]] = [None, "HTTP 500: boom"]
    row = acceptance_table(decisions).iloc[0]
    assert (row["errors"], row["judged"], row["accepted"]) == (1, 3, 1)
    assert row["mean"] == pytest.approx(1 / 3)


def test_smoke_run_oracle_is_the_ceiling_and_outputs_are_written(project_root, monkeypatch, capsys):
    cfg = load_config("smoke", eval_seeds=1)
    run = evaluate(cfg, judges=["simulated"], progress=False)
    d = run.decisions
    n = run.n_personas
    assert len(d) == 5 * n and set(d["system"]) == {"random", "popular", "sft", "contrastive", "best"}
    assert d["error"].isna().all() and run.model_source == "scratch" and run.seeds == [0]
    wide = d.pivot(index="persona_id", columns="system", values="accept").astype(bool)
    for system in ("random", "popular", "sft", "contrastive"):
        assert not (wide[system] & ~wide["best"]).any(), f"{system} beats the oracle for some persona"
    assert d.loc[d["system"] == "popular", "offer"].nunique() == 1
    best_p = d.loc[d["system"] == "best", "probability"].to_numpy()
    random_p = d.loc[d["system"] == "random", "probability"].to_numpy()
    assert np.all(best_p >= random_p - 1e-12), "the best catalog offer has the highest P for each persona"

    table = acceptance_table(d)
    res = AcceptanceResults(run, table, paired_tests(d), improvement(table))
    save_acceptance(cfg, res)
    out = cfg.results_dir
    md = (out / "acceptance.md").read_text()
    assert "profile smoke" in md and "T5 scratch" in md and "training seeds 0" in md and "| paper" in md
    tex = (out / "acceptance.tex").read_text()
    assert r"\caption{" in tex and r"\label{tab:acceptance}" in tex and r"$\pm$" in tex
    csv = pd.read_csv(out / "acceptance.csv")
    assert len(csv) == 5 and set(csv.columns) >= {"mean", "std", "ci_low", "ci_high", "paper"}
    assert (cfg.figures_dir / "acceptance.png").is_file() and (cfg.figures_dir / "acceptance.pdf").is_file()
    manifest = (out / "manifest.json").read_text()
    assert '"results/acceptance.md"' in manifest and '"figures/acceptance"' in manifest

    (out / "acceptance.csv").unlink()
    assert main(["evaluate", "--profile", "smoke", "--eval-seeds", "1", "--judge", "simulated"]) == 0
    assert pd.read_csv(out / "acceptance.csv").equals(csv), "the CLI writes the same table from the cache"

    # the same models judged by an LLM behind a hostile endpoint (40% of requests faulty)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with serving(rule_judge, rate=0.4, seed=5, hang_s=0.6) as server:
        assert main(["evaluate", "--profile", "smoke", "--eval-seeds", "1", "--judge", "llm",
                     "--judge-base-url", server.base_url, "--llm-timeout-s", "0.3", "--llm-backoff-s", "0.001",
                     "--llm-concurrency", "8"]) == 0
        faulty = sum(f != "ok" for _, _, f in server.log) / len(server.log)
    assert 0.3 < faulty < 0.5
    table = pd.read_csv(load_config("smoke").results_dir / "acceptance.csv")
    n_test = len(build_dataset(load_config("smoke"), progress=False)["test"])
    assert len(table) == 5 and ((table["errors"] + table["judged"]) == n_test).all(), "every item ends once"
    errors, judged = int(table["errors"].sum()), int(table["judged"].sum())
    printed = capsys.readouterr().out
    assert f"llm judge: {errors} of {errors + judged} items ended in an error (" in printed
