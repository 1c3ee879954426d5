"""`slm4offer offers`: offers for a file of new personas, equal to the pipeline's own generations."""

import json

import numpy as np
import pandas as pd
import pytest

from slm4offer.cli import main
from slm4offer.config import load_config
from slm4offer.data.dataset import build_dataset
from slm4offer.data.userdata import DataValidationError
from slm4offer.model.generation import generate
from slm4offer.model.offers import offers_for, read_personas, write_offers
from slm4offer.model.training import train


def test_offers_equal_the_pipelines_generations_and_the_cli_writes_them(smoke_models, tmp_path, capsys):
    cfg = load_config("smoke")
    model = train(cfg, "contrastive", progress=False)  # trained once: the CLI part below reuses it
    test = build_dataset(cfg, progress=False)["test"]
    personas = tmp_path / "new.csv"
    pd.DataFrame({"persona_id": test["persona_id"], "persona": test["persona"], "segment": "x"}).to_csv(personas,
                                                                                                      index=False)
    rows = offers_for(model.path.parent, read_personas(personas), progress=False)
    expected = {r["persona_id"]: r["offer"] for r in generate(cfg, "contrastive", progress=False)}
    assert [r["offer"] for r in rows] == [expected[pid] for pid in test["persona_id"]]
    assert {r["segment"] for r in rows} == {"x"}

    reranked = offers_for(model.path, read_personas(personas)[:5], rerank_candidates=3, progress=False)
    for r in reranked:
        assert len(r["candidates"]) == 3 and r["offer"] in r["candidates"]
    out = write_offers(reranked, tmp_path / "out.jsonl")
    back = [json.loads(line) for line in out.read_text().splitlines()]
    assert back == json.loads(json.dumps(reranked))

    personas = tmp_path / "new.jsonl"
    personas.write_text("".join(json.dumps({"persona_id": p, "persona": t}) + "\n"
                                for p, t in zip(test["persona_id"][:4], test["persona"][:4], strict=True)))
    assert main(["offers", "--model", str(model.path.parent), "--personas", str(personas), "--out",
                 str(tmp_path / "o.csv"), "--rerank", "2"]) == 0
    table = pd.read_csv(tmp_path / "o.csv")
    assert list(table["persona_id"]) == test["persona_id"][:4] and table["offer"].str.len().gt(0).all()
    assert {"similarity", "candidates"} <= set(table.columns)

    bad = tmp_path / "bad.csv"
    bad.write_text("persona_id,persona\na,likes travel\nb,\n")
    assert main(["offers", "--model", str(model.path.parent), "--personas", str(bad), "--out",
                 str(tmp_path / "x.csv")]) == 2
    assert f"{bad}, line 3, field 'persona': is empty" in capsys.readouterr().err
    assert main(["offers", "--model", str(tmp_path), "--personas", str(personas), "--out", "x.csv"]) == 2
    assert "no trained model here" in capsys.readouterr().err


def test_read_personas_rejects_duplicates_and_missing_columns(tmp_path):
    dup = tmp_path / "dup.csv"
    dup.write_text("persona_id,persona\na,one\na,two\n")
    with pytest.raises(DataValidationError, match=r"line 3, field 'persona_id': duplicate persona_id 'a' \(first"):
        read_personas(dup)
    missing = tmp_path / "missing.csv"
    missing.write_text("id,persona\na,one\n")
    with pytest.raises(DataValidationError, match="field 'persona_id': missing column"):
        read_personas(missing)
    with pytest.raises(ValueError, match="must end in .csv or .jsonl"):
        write_offers([{"offer": "x"}], tmp_path / "o.txt")


def test_catalogue_similarity_equals_pair_scores_in_any_block_size(smoke_models):
    from slm4offer.data.dataset import load_catalog
    from slm4offer.model.inference import catalogue_similarity, pair_similarity

    cfg = load_config("smoke")
    model = train(cfg, "contrastive", progress=False)
    personas = build_dataset(cfg, progress=False)["test"]["persona"][:3]
    offers = [o.text for o in load_catalog(cfg.dataset_dir)][:7]
    expected = pair_similarity(model.model, model.tokenizer, [p for p in personas for _ in offers], offers * 3)
    for pairs in (2048, 5, 1):  # one block; offers split in blocks of 5; one pair at a time
        got = catalogue_similarity(model.model, model.tokenizer, personas, offers, pairs_per_batch=pairs)
        assert got.shape == (3, 7) and np.allclose(got.ravel(), expected, atol=1e-5), pairs


def test_ranking_and_reranking_refuse_an_sft_model(smoke_models, tmp_path, capsys):
    cfg = load_config("smoke")
    sft = train(cfg, "sft", progress=False)
    personas = tmp_path / "p.csv"
    personas.write_text("persona_id,persona\na,likes travel\n")
    for extra in (["--rerank", "2"], ["--catalog", str(tmp_path / "unused.csv")]):
        assert main(["offers", "--model", str(sft.path), "--personas", str(personas), "--out",
                     str(tmp_path / "o.csv"), *extra]) == 2
        assert "the SFT baseline, whose similarity comes from an untrained projection" in capsys.readouterr().err
    assert not (tmp_path / "o.csv").exists()
