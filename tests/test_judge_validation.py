"""Judge validation: human-label files are checked row by row; agreement is computed on what was judged."""

import json

import pandas as pd
import pytest

from slm4offer.config import load_config
from slm4offer.data.dataset import build_dataset, load_catalog
from slm4offer.experiments.judge_validation import contingency_table, load_labels, validate_judge, validation_sample
from slm4offer.judges import make_judge
from slm4offer.report.tables import write_validation


@pytest.fixture
def smoke(smoke_models):
    cfg = load_config("smoke")
    dd = build_dataset(cfg, progress=False)
    return cfg, dd, {row["persona_id"]: row for split in dd.values() for row in split}


def write_csv(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_valid_label_file_is_read(smoke, tmp_path):
    _, dd, personas = smoke
    a, b = dd["test"]["persona_id"][:2]
    path = write_csv(tmp_path / "labels.csv", ["persona_id,offer,label", f"{a},Offer one.,accept",
                                               f"{b},Offer two.,0", f"{a},Offer two.,REJECT"])
    labels = load_labels(path, personas)
    assert labels["reference"].tolist() == [True, False, False]
    assert labels["persona"].tolist()[0] == personas[a]["persona"]


@pytest.mark.parametrize("lines, match", [
    (["persona_id,offer", "x,y"], r"line 1, field 'label': missing column"),
    (["persona_id,offer,label", "{a},Some offer.,maybe"], r"line 2, field 'label': 'maybe' is not an outcome"),
    (["persona_id,offer,label", "{a},Some offer.,1", "nobody,Some offer.,1"],
     r"line 3, field 'persona_id': 'nobody' is not a persona"),
    (["persona_id,offer,label", "{a},Some offer.,1", "{a},Other.,0", "", "{a},Some offer.,0"],
     r"line 5: duplicate of line 2"),
    (["persona_id,offer,label", "{a},,1"], r"line 2, field 'offer': empty"),
    (["persona_id,offer,label"], "header but no rows"),
    (["persona_id,offer,label", "{a},Some offer.,1"], r"1 labelled row\(s\): agreement needs at least 2"),
    (["persona_id,offer,label,label", "{a},Some offer.,1,0"], r"line 1, field 'label': the header names this column"),
    (["persona_id,offer,label", "{train},Some offer.,1"], r"line 2, field 'persona_id': .* training persona"),
])
def test_bad_label_files_name_the_line_and_field(smoke, tmp_path, lines, match):
    _, dd, personas = smoke
    fill = {"a": dd["test"]["persona_id"][0], "train": dd["train"]["persona_id"][0]}
    path = write_csv(tmp_path / "labels.csv", [line.format(**fill) for line in lines])
    with pytest.raises(ValueError, match=match) as info:
        load_labels(path, personas, training_ids=set(dd["train"]["persona_id"]))
    assert str(info.value).startswith(str(path))


def test_labels_in_jsonl_latin1_bytes_and_a_missing_file(smoke, tmp_path):
    _, dd, personas = smoke
    a, b = dd["test"]["persona_id"][:2]
    path = tmp_path / "labels.jsonl"
    path.write_text(f'{{"persona_id": "{a}", "offer": "One.", "label": "Y"}}\n'
                    f'{{"persona_id": "{b}", "offer": "Two.", "label": "n"}}\n')
    assert load_labels(path, personas)["reference"].tolist() == [True, False]
    latin = tmp_path / "latin.csv"
    latin.write_bytes(f"persona_id,offer,label\n{a},Café offer,1\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin.csv, line 2: byte \d+: b'\\xe9' is not UTF-8 text"):
        load_labels(latin, personas)
    with pytest.raises(ValueError, match="nope.csv: file not found"):
        load_labels(tmp_path / "nope.csv", personas)


def test_agreement_with_labels_that_match_or_contradict_the_judge(smoke, tmp_path):
    cfg, dd, personas = smoke
    catalog = load_catalog(cfg.dataset_dir)
    test = list(dd["test"])[:30]
    offers = [catalog[i * 7 % len(catalog)].text for i in range(len(test))]
    truth = [d.accept for d in make_judge(cfg, "simulated")(test, offers)]
    assert 0 < sum(truth) < len(truth)

    def labels_file(name, flip):
        rows = [f'{p["persona_id"]},"{o}",{"accept" if t != flip else "reject"}'
                for p, o, t in zip(test, offers, truth, strict=True)]
        return write_csv(tmp_path / name, ["persona_id,offer,label", *rows])

    same = validate_judge(cfg, "simulated", labels_file("same.csv", flip=False), progress=False)
    assert same.result.raw_agreement == 1.0 and same.result.kappa == pytest.approx(1.0)
    assert same.result.table.trace() == len(test) and same.reference == "same.csv"
    margins = contingency_table(same)
    assert margins.loc["total", "total"] == len(test) and margins.iloc[0, 2] == sum(truth)
    flipped = validate_judge(cfg, "simulated", labels_file("flipped.csv", flip=True), progress=False)
    p = sum(truth) / len(truth)  # kappa of total disagreement: -pe / (1 - pe) with pe = 2p(1 - p)
    assert flipped.result.raw_agreement == 0.0
    assert flipped.result.kappa == pytest.approx(-2 * p * (1 - p) / (1 - 2 * p * (1 - p)))
    assert flipped.result.chi2_pvalue == pytest.approx(same.result.chi2_pvalue), "association either way"

    paths = write_validation(cfg, flipped)
    record = json.loads((cfg.results_dir / "judge_validation.json").read_text())
    assert record["raw_agreement"] == 0.0 and record["table"] == [[0, len(test) - sum(truth)], [sum(truth), 0]]
    sheet = (cfg.results_dir / "judge_labelling_sheet.csv").read_text().splitlines()
    assert sheet[0] == "persona_id,persona,offer,label" and len(paths) == 3


def test_default_sample_is_drawn_from_both_models_generations(smoke):
    cfg = smoke[0]
    sample = validation_sample(cfg, progress=False)
    test_ids = set(smoke[1]["test"]["persona_id"])
    assert len(sample) == cfg.judge_samples and set(sample["persona_id"]) <= test_ids
    assert set(sample["source"]) == {"sft", "contrastive"}
    again = validation_sample(cfg, progress=False)
    assert sample.equals(again), "the same seed draws the same sample"


def test_cli_reports_a_bad_label_file_and_exits_2(smoke, tmp_path, capsys):
    from slm4offer.cli import main

    path = write_csv(tmp_path / "labels.csv", ["persona_id,offer,label", "nobody,An offer.,accept"])
    assert main(["validate-judge", "--profile", "smoke", "--judge", "simulated", "--labels", str(path)]) == 2
    err = capsys.readouterr().err
    assert "slm4offer validate-judge: error:" in err and "labels.csv, line 2, field 'persona_id'" in err


def test_pool_agreement_counts_every_pair_both_judges_judged_and_reads_per_system():
    from slm4offer.experiments.judge_validation import pool_agreement

    rows = []
    truth = [True, True, False, False, True, False]
    learned = {"sft": [True, False, False, False, True, True], "contrastive": [True, True, True, True, True, False]}
    for system, verdicts in learned.items():
        for i, (t, v) in enumerate(zip(truth, verdicts, strict=True)):
            for judge, accept in (("simulated", t), ("learned", v)):
                rows.append({"system": system, "seed": 0, "persona_id": f"p{i}", "judge": judge, "accept": accept,
                             "error": "timeout" if (judge == "learned" and system == "sft" and i == 5) else None})
    pool = pool_agreement(pd.DataFrame(rows))
    assert pool.result.n == 11, "the pair the learned judge gave no verdict on is left out"
    by = pool.by_system.set_index("system")
    assert by.loc["sft", "pairs"] == 5 and by.loc["sft", "agreement"] == pytest.approx(4 / 5)
    assert by.loc["sft", "sensitivity"] == pytest.approx(2 / 3) and by.loc["sft", "specificity"] == 1.0
    assert by.loc["contrastive", "specificity"] == pytest.approx(1 / 3) and by.loc["contrastive", "sensitivity"] == 1
    assert pool.result.raw_agreement == pytest.approx(8 / 11)
    with pytest.raises(ValueError, match="need llm and simulated"):
        pool_agreement(pd.DataFrame(rows), judge="llm")
