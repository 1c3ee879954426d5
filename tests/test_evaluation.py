"""The systems of the acceptance table on the smoke profile: the oracle is the ceiling, the files are
written, the tables follow from the saved decisions, the CLI (also with an LLM judge) agrees."""

import numpy as np
import pandas as pd
from fault_server import rule_judge, rule_judge_without_probability, serving

from slm4offer.cli import main
from slm4offer.config import load_config
from slm4offer.data.dataset import build_dataset
from slm4offer.experiments import metrics
from slm4offer.experiments.acceptance import AcceptanceResults, evaluate
from slm4offer.experiments.systems import SYSTEMS
from slm4offer.report.check import recompute
from slm4offer.report.tables import formatted, save_acceptance


def test_smoke_run_oracle_is_the_ceiling_and_outputs_are_written(smoke_models, monkeypatch, capsys):
    cfg = load_config("smoke", eval_seeds=1)
    run = evaluate(cfg, judges=["simulated"], progress=False)
    d = run.decisions
    n = run.n_personas
    assert len(d) == len(SYSTEMS) * n and set(d["system"]) == set(SYSTEMS)
    assert d["error"].isna().all() and run.model_source == "scratch" and run.seeds == [0]
    wide = d.pivot(index="persona_id", columns="system", values="accept").astype(bool)
    for system in set(SYSTEMS) - {"best"}:
        assert not (wide[system] & ~wide["best"]).any(), f"{system} beats the oracle for some persona"
    assert d.loc[d["system"] == "popular", "offer"].nunique() == 1
    catalog = d[d["system"].isin(["random", "popular", "best", "catalog by similarity"])]
    assert catalog["in_catalogue"].all() and catalog["parsed"].all(), "catalog systems only offer catalog offers"
    off = d[~d["in_catalogue"].astype(bool)]
    assert (~off["accept"].astype(bool)).all() and off["probability"].isna().all(), "off-catalogue: a reject"
    assert d.groupby("persona_id")["u"].nunique().eq(1).all(), "one draw per persona, shared by every system"
    best_p = d.loc[d["system"] == "best", "probability"].to_numpy()
    random_p = d.loc[d["system"] == "random", "probability"].to_numpy()
    assert np.all(best_p >= random_p - 1e-12), "the best catalog offer has the highest P for each persona"

    table = metrics.acceptance_table(d)
    gain = pd.concat([metrics.comparisons(d), pd.DataFrame([metrics.paper_gain()])], ignore_index=True)
    res = AcceptanceResults(run, table, metrics.paired_tests(d), gain, metrics.threshold_sweep(d))
    save_acceptance(cfg, res)
    out = cfg.results_dir
    md = (out / "acceptance.md").read_text()
    assert "profile smoke" in md and "T5 scratch" in md and "training seeds 0" in md and "| paper" in md
    tex = (out / "acceptance.tex").read_text()
    assert r"\caption{" in tex and r"\label{tab:acceptance}" in tex and r"$\pm$" in tex
    csv = pd.read_csv(out / "acceptance.csv")
    assert len(csv) == len(SYSTEMS) and set(csv.columns) >= {"mean", "std", "ci_low", "ci_high", "expected",
                                                             "sampled", "in_catalogue", "distinct_offers", "paper"}
    for name in ("acceptance", "acceptance_threshold_sweep"):
        assert (cfg.figures_dir / f"{name}.png").is_file() and (cfg.figures_dir / f"{name}.pdf").is_file()
    manifest = (out / "manifest.json").read_text()
    assert '"results/acceptance.md"' in manifest and '"figures/acceptance"' in manifest
    assert '"results/decisions/acceptance.csv"' in manifest
    assert "expected acceptance" in md and "catalog by similarity" in md
    assert formatted(table).loc["best", "simulated judge"].startswith(f"{100 * table['mean'].max():.1f} [")
    assert recompute(out) == [], "the saved tables follow from the saved decisions"

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
    assert len(table) == len(SYSTEMS) and ((table["errors"] + table["judged"]) == n_test).all(), "each item ends once"
    errors, judged = int(table["errors"].sum()), int(table["judged"].sum())
    printed = capsys.readouterr().out
    assert f"llm judge: {errors} of {errors + judged} items ended in an error (" in printed

    # a clean endpoint whose verdicts carry no probability: thresholded tables, no crash
    with serving(rule_judge_without_probability) as server:
        assert main(["evaluate", "--profile", "smoke", "--eval-seeds", "1", "--judge", "llm",
                     "--judge-base-url", server.base_url, "--judge-model", "no-probabilities"]) == 0  # not cached
        assert server.log, "asked the endpoint, not the cache"
    out = load_config("smoke").results_dir
    table = pd.read_csv(out / "acceptance.csv")
    assert table["mean"].notna().all() and table["expected"].isna().all() and table["sampled"].isna().all()
    gain = pd.read_csv(out / "acceptance_gain.csv")
    assert set(gain.loc[gain["judge"] == "llm", "metric"]) == {"thresholded rate"}
    assert "The llm judge gave no probabilities: its expected acceptance and sampled rate are not defined" in \
        (out / "acceptance.md").read_text()
    assert pd.read_csv(out / "acceptance_threshold_sweep.csv").empty


def test_two_domains_evaluated_from_the_cli_keep_their_own_tables(smoke_models):
    out = load_config("smoke").results_dir
    assert main(["evaluate", "--profile", "smoke", "--eval-seeds", "1", "--judge", "simulated"]) == 0
    main_table = (out / "acceptance.csv").read_bytes()
    assert main(["evaluate", "--profile", "smoke", "--eval-seeds", "1", "--judge", "simulated",
                 "--domain", "ecommerce"]) == 0
    assert (out / "acceptance.csv").read_bytes() == main_table, "the ecommerce run left the main table alone"
    ecommerce = pd.read_csv(out / "acceptance_ecommerce.csv")
    assert len(ecommerce) == len(SYSTEMS) and not ecommerce.equals(pd.read_csv(out / "acceptance.csv"))
    for name in ("acceptance_ecommerce.md", "acceptance_ecommerce_gain.csv", "decisions/acceptance_ecommerce.csv"):
        assert (out / name).is_file(), name
