"""`make check`: a rerun inside its tolerances passes; a number outside, or a flipped conclusion, fails."""

import dataclasses
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from slm4offer.report import check, reproduce

ROOT = Path(__file__).parents[1]


@pytest.fixture
def results(tmp_path):
    """A copy of the committed results, to perturb."""
    return Path(shutil.copytree(ROOT / "results", tmp_path / "results"))


def edit_csv(path: Path, where: dict, column: str, change) -> None:
    t = pd.read_csv(path)
    rows = pd.Series(True, index=t.index)
    for k, v in where.items():
        rows &= t[k] == v
    assert rows.sum() == 1, f"{where} names one row of {path.name}"
    t.loc[rows, column] = change(t.loc[rows, column].iloc[0])
    t.to_csv(path, index=False)


def number(report: check.Report, name: str) -> check.Number:
    return next(n for n in report.numbers if n.name == name)


def test_the_committed_results_pass_against_themselves(results):
    report = check.compare(ROOT / "results", results)
    assert report.ok and not report.failures()
    names = {n.name for n in report.numbers}
    for expected in ("acceptance: sft, simulated judge", "gain in points, learned judge", "Cohen's kappa",
                     "Table 1 under-fitted layers: contrastive", "ablation: negatives: in_batch, simulated judge"):
        assert expected in names
    assert {c.name for c in report.conclusions} >= {"contrastive vs SFT (95% interval over seeds), simulated judge",
                                                    "order of the systems, learned judge"}


def test_tolerances_follow_the_seed_spread():
    table = pd.read_csv(ROOT / "results" / "acceptance.csv").set_index(["judge", "system"])
    sft = table.loc[("simulated", "sft")]
    n = number(check.compare(ROOT / "results", ROOT / "results"), "acceptance: sft, simulated judge")
    binomial = (sft["mean"] * (1 - sft["mean"]) / (sft["judged"] // sft["seeds"])) ** 0.5
    assert n.tolerance == pytest.approx(3 * max(sft["std"], binomial) * (2 / sft["seeds"]) ** 0.5)
    assert check.seed_tolerance(0.0, 3, 0.5, 400) == pytest.approx(3 * 0.025 * (2 / 3) ** 0.5), "binomial floor"
    assert check.fixed_tolerance("simulated", 385) == 0 and check.fixed_tolerance("learned", 385) == 0.01
    report = check.compare(ROOT / "results", ROOT / "results")
    for system in ("sft+rerank", "contrastive+rerank", "catalog by similarity"):  # their offers come from training
        assert number(report, f"acceptance: {system}, simulated judge").tolerance > 0
    assert number(report, "acceptance: random, simulated judge").tolerance == 0
    expected = number(report, "acceptance (expected): sft, simulated judge")
    binomial = (sft["expected"] * (1 - sft["expected"]) / (sft["judged"] // sft["seeds"])) ** 0.5
    assert expected.tolerance == pytest.approx(3 * max(sft["expected_std"], binomial) * (2 / sft["seeds"]) ** 0.5)
    assert number(report, "ecommerce (sampled): contrastive, learned judge").tolerance > 0
    variant = pd.read_csv(ROOT / "results" / "ablations.csv").set_index(["judge", "system"]).loc[
        ("simulated", "negatives: in_batch")]  # its own seeds' spread; with one seed, the main table's
    spread = variant["std"] if variant["seeds"] > 1 else table.loc[("simulated", "contrastive"), "std"]
    seeds = int(variant["seeds"])
    assert number(report, "ablation: negatives: in_batch, simulated judge").tolerance == pytest.approx(
        check.seed_tolerance(spread, seeds, variant["mean"], int(variant["judged"] // seeds)))
    assert number(report, "ablation (expected): negatives: in_batch, simulated judge").tolerance > 0


def test_a_rerun_inside_the_tolerance_passes_and_outside_fails(results):
    name = "acceptance: contrastive, simulated judge"
    tol = number(check.compare(ROOT / "results", ROOT / "results"), name).tolerance
    where = {"judge": "simulated", "system": "contrastive"}
    edit_csv(results / "acceptance.csv", where, "mean", lambda m: m + 0.9 * tol)
    report = check.compare(ROOT / "results", results)
    assert number(report, name).ok
    edit_csv(results / "acceptance.csv", where, "mean", lambda m: m + 0.2 * tol)  # now 1.1 tolerances away
    report = check.compare(ROOT / "results", results)
    assert not report.ok
    committed = pd.read_csv(ROOT / "results" / "acceptance.csv").set_index(["judge", "system"]).loc[
        ("simulated", "contrastive"), "mean"]
    assert any(f.startswith(f"out of tolerance: {name}: committed {100 * committed:.1f}, now")
               for f in report.failures())


def test_a_flipped_conclusion_fails_with_a_clear_message(results):
    name = "contrastive vs SFT (95% interval over seeds), learned judge"
    committed = next(c.committed for c in check.compare(ROOT / "results", results).conclusions if c.name == name)
    flipped, interval = ("higher", (0.1, 1.0)) if committed == "lower" else ("lower", (-1.0, -0.1))
    row = {"judge": "learned", "a": "sft", "b": "contrastive", "metric": "thresholded rate"}
    for column, value in zip(("seed_ci_low", "seed_ci_high"), interval, strict=True):
        edit_csv(results / "acceptance_gain.csv", row, column, lambda _, v=value: v)
    contrastive = pd.read_csv(results / "acceptance.csv").set_index(["judge", "system"]).loc[
        ("learned", "contrastive"), "mean"]
    sft = contrastive + (0.001 if flipped == "lower" else -0.001)
    edit_csv(results / "acceptance.csv", {"judge": "learned", "system": "sft"}, "mean", lambda _: sft)
    failures = check.compare(ROOT / "results", results).failures()
    assert f"conclusion changed: {name}: committed '{committed}', now '{flipped}'" in failures
    assert any(f.startswith("conclusion changed: order of the systems, learned judge") for f in failures)


def test_a_difference_inside_the_seed_noise_is_a_tie_not_an_order():
    table = pd.DataFrame({"judge": "simulated", "system": ["random", "sft", "contrastive", "best"],
                          "mean": [0.1, 0.47, 0.46, 0.99]})
    gain = pd.DataFrame({"judge": ["simulated"], "a": ["sft"], "b": ["contrastive"], "metric": ["thresholded rate"],
                         "seed_ci_low": [-3.0], "seed_ci_high": [2.0], "ci_low": [-2.0], "ci_high": [1.0]})
    said = check.acceptance_conclusions(table, gain)
    assert said["contrastive vs SFT (95% interval over seeds), simulated judge"] == "not distinguishable"
    assert said["order of the systems, simulated judge"] == "random < contrastive ≈ sft < best"
    gain[["seed_ci_low", "seed_ci_high"]] = [[-3.0, -0.5]]
    said = check.acceptance_conclusions(table, gain)
    assert said["order of the systems, simulated judge"] == "random < contrastive < sft < best"


def test_an_ablation_sign_and_a_dataset_hash_are_checked(results, tmp_path):
    committed = Path(shutil.copytree(ROOT / "results", tmp_path / "committed"))
    table = pd.read_csv(committed / "ablations.csv")
    variant = table[(table["judge"] == "simulated") & (table["system"] != "main recipe")]["system"].iloc[0]
    main = table.set_index(["judge", "system"]).loc[("simulated", "main recipe"), "mean"]
    where = {"judge": "simulated", "system": variant}
    # the committed run found the variant worse after Holm's correction; this run finds it better
    edit_csv(committed / "ablations.csv", where, "mean", lambda m: main - 0.01)
    edit_csv(committed / "ablations.csv", where, "p_holm", lambda p: 0.01)
    edit_csv(results / "ablations.csv", where, "mean", lambda m: main + 0.01)
    # a scorer row is read against the main recipe's scorer of the same candidates, not the main recipe
    scorer, ref = "λ = 1 scorer: catalogue", "main recipe scorer: catalogue"
    ref_mean = table.set_index(["judge", "system"]).loc[("simulated", ref), "mean"]
    where = {"judge": "simulated", "system": scorer}
    edit_csv(committed / "ablations.csv", where, "mean", lambda m: ref_mean - 0.01)
    edit_csv(committed / "ablations.csv", where, "p_holm", lambda p: 0.01)
    edit_csv(results / "ablations.csv", where, "mean", lambda m: ref_mean + 0.01)
    for folder, digest in ((committed, "a" * 64), (results, "b" * 64)):
        path = folder / "data_card_finance.json"
        card = json.loads(path.read_text())
        card.setdefault("provenance", {})["dataset_sha256"] = digest
        path.write_text(json.dumps(card))
    failures = check.compare(committed, results).failures()
    assert (f"conclusion changed: ablation '{variant}' vs main recipe, simulated judge: committed 'worse', "
            "now 'better'") in failures
    assert (f"conclusion changed: ablation '{scorer}' vs {ref}, simulated judge: committed 'worse', "
            "now 'better'") in failures
    assert "conclusion changed: dataset content hash, finance: committed 'aaaaaaaaaaaaaaaa', now 'bbbbbbbbbbbbbbbb'" \
        in failures


def test_reproduce_keeps_the_text_unless_a_conclusion_changed(results, tmp_path):
    doc = tmp_path / "REPRODUCE.md"
    shutil.copy(ROOT / "REPRODUCE.md", doc)
    before = doc.read_text()
    edit_csv(results / "acceptance.csv", {"judge": "simulated", "system": "sft"}, "mean", lambda m: m + 0.002)
    assert reproduce.update(doc, results, committed=ROOT / "results").startswith("kept:")
    assert doc.read_text() == before
    name = "contrastive vs SFT (95% interval over seeds), simulated judge"
    committed = next(c.committed for c in check.compare(ROOT / "results", results).conclusions if c.name == name)
    flipped, interval = ("lower", (-1.0, -0.1)) if committed == "higher" else ("higher", (0.1, 1.0))
    row = {"judge": "simulated", "a": "sft", "b": "contrastive", "metric": "thresholded rate"}
    for column, value in zip(("seed_ci_low", "seed_ci_high"), interval, strict=True):
        edit_csv(results / "acceptance_gain.csv", row, column, lambda _, v=value: v)
    done = reproduce.update(doc, results, committed=ROOT / "results")
    assert done.startswith(f"updated (conclusions changed: {name}: {committed} -> {flipped}")
    assert doc.read_text() != before
    assert reproduce.update(doc, ROOT / "results") == "updated" and doc.read_text() == before, "--write restores it"


def test_committed_results_come_from_git_not_the_working_tree():
    folder = check.committed_results("HEAD", ROOT)
    assert (folder / "acceptance.csv").is_file() and folder != ROOT / "results"
    with pytest.raises(RuntimeError, match="no-such-ref"):
        check.committed_results("no-such-ref", ROOT)


def test_a_missing_result_fails_unless_the_rerun_is_partial(results):
    (results / "table1_layers.csv").unlink()
    full = check.compare(ROOT / "results", results)
    assert "missing in this run: results/table1_layers.csv (run make all)" in full.failures()
    partial = check.compare(ROOT / "results", results, partial=True)
    assert partial.ok and partial.missing == ["table1_layers.csv"]
    assert not any(n.name.startswith("Table 1") for n in partial.numbers)
    text = check.markdown(partial, "HEAD", results, {"device": "cpu"})
    assert "partial rerun" in text and "**Passed**" in text and "table1_layers.csv" in text


def test_opt_in_results_a_rerun_did_not_make_are_skipped_not_failed(results):
    for name in ("ablations.csv", "acceptance_ecommerce.csv", "data_card_ecommerce.json"):
        (results / name).unlink()
    report = check.compare(ROOT / "results", results)
    assert report.ok and not report.missing
    assert report.skipped == ["ablations.csv (make ablations)", "acceptance_ecommerce.csv (make new-domain)",
                              "data_card_ecommerce.json (make new-domain)"]
    assert "Opt-in results this run did not make (skipped)" in check.markdown(report, "HEAD", results)
    (results / "acceptance_paired.csv").unlink()  # the headline's, however its name reads: its absence fails
    assert "missing in this run: results/acceptance_paired.csv (run make all)" in check.compare(
        ROOT / "results", results).failures()
    (results / "acceptance.csv").unlink()  # the headline is make all's: its absence fails
    assert "missing in this run: results/acceptance.csv (run make all)" in check.compare(ROOT / "results",
                                                                                         results).failures()


def test_a_judge_missing_from_the_rerun_fails_unless_partial(results):
    t = pd.read_csv(results / "acceptance.csv")
    t[t["judge"] == "simulated"].to_csv(results / "acceptance.csv", index=False)
    failures = check.compare(ROOT / "results", results).failures()
    committed = t.set_index(["judge", "system"]).loc[("learned", "sft"), "mean"]
    missing_row = f"out of tolerance: acceptance: sft, learned judge: committed {100 * committed:.1f}, now —"
    assert any(f.startswith(missing_row) for f in failures)
    assert any(f.startswith("conclusion changed: contrastive vs SFT (95% interval over seeds), learned judge: "
                            "committed '") and f.endswith("now 'missing'") for f in failures)
    assert check.compare(ROOT / "results", results, partial=True).ok


def test_an_opt_in_result_made_by_other_code_says_so(results):
    from slm4offer.cache import stage_hash
    from slm4offer.config import load_config

    def record(cfg, commit="abcdef0123"):
        return {"config": dataclasses.asdict(cfg), "stage": "generate", "stage_hash": stage_hash(cfg, "generate"),
                "git_commit": commit}

    manifest = json.loads((results / "manifest.json").read_text())
    made = manifest["artifacts"]
    made["results/acceptance.csv"] = record(load_config("default"))
    made["results/ablations.csv"] = {**record(load_config("default")), "stage_hash": "other code"}
    made["results/acceptance_ecommerce.csv"] = record(load_config("default", domain="ecommerce"))  # other settings
    (results / "manifest.json").write_text(json.dumps(manifest))
    note = " (other code than the headline's: commit abcdef0, not rerun since)"
    names = ("ablations.csv", "acceptance_ecommerce.csv", "no_such_table.csv")
    notes = reproduce.other_code_notes(results, names)
    assert notes == {"ablations.csv": note}, "same code for another domain, and a missing table, get no note"
    made["results/acceptance.csv"].update(stage_hash="older code", git_commit="1234567890")  # code moved on since
    (results / "manifest.json").write_text(json.dumps(manifest))
    assert reproduce.other_code_notes(results, names)["ablations.csv"] == note, "told apart by commit"
    made["results/acceptance.csv"]["git_commit"] = "abcdef0123"
    (results / "manifest.json").write_text(json.dumps(manifest))
    assert reproduce.other_code_notes(results, names) == {}
