"""Your own data end to end, as a user would run it from a raw campaign log: customers who accepted
nothing, attribute columns and no persona text; validate-data with a persona template, train,
evaluate, offers (generated and ranked from the catalogue), an exported model with its card, and
that model loaded by plain transformers in a fresh process (smoke sizes). The synthetic world's
results are never touched."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from own_data_path import TEMPLATE, raw_campaign_log

from slm4offer.cli import main
from slm4offer.config import load_config
from slm4offer.data.userdata import offer_reader
from slm4offer.model.inference import pair_similarity
from slm4offer.model.modeling import load_trained
from slm4offer.report.release import seed_rates


def test_from_a_raw_log_to_ranked_offers_and_a_model_card(project_root, tmp_path, capsys):
    log, offers, table = raw_campaign_log(tmp_path, personas=200, refusers=3)
    dataset = tmp_path / "my_dataset"
    assert main(["validate-data", str(log), "--offers", str(offers), "--persona-template", TEMPLATE,
                 "--out", str(dataset)]) == 0
    assert "200 personas" in (out := capsys.readouterr().out) and "3 customer(s) dropped" in out
    card = json.loads((dataset / "data_card.json").read_text())
    assert card["personas"]["dropped_no_acceptance"] == 3 and card["personas"]["kept"] == 200

    flags = ["--profile", "smoke", "--data", str(dataset), "--epochs", "1"]
    exported = tmp_path / "exported"
    assert main(["train", "--kind", "sft", *flags]) == 0
    assert main(["train", "--kind", "contrastive", *flags, "--output-dir", str(exported)]) == 0
    assert "trained now" in capsys.readouterr().out
    assert main(["train", "--kind", "contrastive", *flags]) == 0
    assert "from the cache" in capsys.readouterr().out
    assert main(["evaluate", *flags, "--eval-seeds", "1", "--judge", "learned"]) == 0

    cfg = load_config("smoke", data=str(dataset), epochs=1)
    assert cfg.results_dir == project_root / "results" / "smoke" / "data" / "my_dataset"
    result = pd.read_csv(cfg.results_dir / "acceptance.csv")
    assert set(result["judge"]) == {"learned"} and "best" not in set(result["system"])
    gain = pd.read_csv(cfg.results_dir / "acceptance_gain.csv")
    assert "paper" not in result.columns and not gain["judge"].str.contains("paper").any(), "no paper numbers"
    assert not (project_root / "results" / "smoke" / "acceptance.csv").exists(), "the world's results untouched"
    models = sorted((project_root / "artifacts" / "smoke").glob("model-my_dataset-contrastive-*"))
    assert len(models) == 1, "named after the data, not the synthetic domain"
    info = json.loads((models[0] / "final" / "training_info.json").read_text())
    assert info["provenance"]["data"] == "my_dataset" and info["provenance"]["domain"] is None

    new = tmp_path / "new.csv"
    people = table.drop_duplicates("persona_id").head(6)
    people.drop(columns=["persona", "offer_id", "accepted"]).to_csv(new, index=False)
    ranked_file = tmp_path / "ranked.csv"
    assert main(["offers", "--model", str(exported), "--personas", str(new), "--persona-template", TEMPLATE,
                 "--catalog", str(offers), "--top-k", "3", "--out", str(ranked_file)]) == 0
    ranked = pd.read_csv(ranked_file)
    assert list(ranked["rank"]) == [1, 2, 3] * 6
    texts = [TEMPLATE.format(**{k: str(v) for k, v in row.items()}) for row in people.to_dict("records")]
    assert list(ranked["persona"].drop_duplicates()) == texts, "the template gives the text"
    catalogue = pd.read_csv(offers)
    model, tokenizer = load_trained(exported)
    for pid, rows in ranked.groupby("persona_id", sort=False):
        persona = rows["persona"].iloc[0]
        sims = pair_similarity(model, tokenizer, [persona] * len(catalogue), catalogue["offer"].tolist())
        best = np.argsort(-sims, kind="stable")[:3]
        assert list(rows["offer_id"]) == list(catalogue["offer_id"].iloc[best]), pid
        assert np.allclose(rows["similarity"], sims[best], atol=1e-5)

    generated_file = tmp_path / "generated.csv"
    assert main(["offers", "--model", str(exported), "--personas", str(new), "--persona-template", TEMPLATE,
                 "--out", str(generated_file)]) == 0
    generated = pd.read_csv(generated_file, keep_default_na=False)
    read = offer_reader(cfg)  # the acceptance table's rule: the same offer ids and in-catalogue flags
    assert list(generated["in_catalogue"]) == [read(o)[2] for o in generated["offer"]]
    assert list(generated["offer_id"]) == [read(o)[0] or "" for o in generated["offer"]]

    assert main(["release", *flags, "--output-dir", str(exported)]) == 0
    from huggingface_hub import ModelCard

    meta = ModelCard.load(exported / "README.md").data
    assert (meta.license, meta.library_name, meta.pipeline_tag) == ("mit", "transformers", "text2text-generation")
    assert "slm4offer" in meta.tags
    rates = seed_rates(cfg.results_dir, cfg.train_seed).set_index(["system", "judge"])
    scores = {r.metric_type: r.metric_value for r in meta.eval_results}
    row = rates.loc[("contrastive", "learned")]
    assert scores["acceptance"] == round(row["thresholded rate"], 4)
    assert (scores["acceptance_ci_low"], scores["acceptance_ci_high"]) == (round(row["ci_low"], 4),
                                                                           round(row["ci_high"], 4))
    assert all(r.dataset_name == "your data (my_dataset)" for r in meta.eval_results)
    text = (exported / "README.md").read_text()
    assert "model.generate(" in text and "score_offers(" in text and "Customer aged" in text

    # plain transformers, in a fresh process where slm4offer cannot be imported, ranks as slm4offer does
    first = ranked[ranked["persona_id"] == ranked["persona_id"].iloc[0]]
    script = f"""
import json, sys
sys.modules["slm4offer"] = None  # any import of the package fails: the folder must be enough
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer
model = AutoModelForSeq2SeqLM.from_pretrained({str(exported)!r}, trust_remote_code=True)
tokenizer = AutoTokenizer.from_pretrained({str(exported)!r})
assert model.projection is not None and model.similarity_trained
offers = [json.loads(line)["offer"] for line in open({str(exported / "catalog.jsonl")!r})]
print(json.dumps(model.score_offers(tokenizer, {first["persona"].iloc[0]!r}, offers)))
"""
    env = {"HF_HOME": str(tmp_path / "hf"), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    scores = np.array(json.loads(done.stdout.strip().splitlines()[-1]))
    assert np.allclose(np.sort(scores)[::-1][:3], first["similarity"], atol=1e-5)


def test_data_must_be_a_dataset_folder(tmp_path):
    with pytest.raises(ValueError, match="not a dataset folder"):
        load_config("smoke", data=str(tmp_path))


def test_world_settings_are_refused_with_your_own_data(tmp_path, capsys):
    log, offers, _ = raw_campaign_log(tmp_path, personas=40, refusers=0)
    dataset = tmp_path / "ds"
    assert main(["validate-data", str(log), "--offers", str(offers), "--persona-template", TEMPLATE,
                 "--out", str(dataset)]) == 0
    assert main(["train", "--kind", "sft", "--profile", "smoke", "--data", str(dataset), "--n-personas", "50",
                 "--seed", "3"]) == 2
    assert "--seed, --n-personas: settings of the synthetic world" in capsys.readouterr().err
