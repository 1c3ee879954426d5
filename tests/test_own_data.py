"""Your own data end to end, as a user would run it: validate-data --out D, then train, evaluate and
offers with --data D (smoke sizes). The synthetic world's results are never touched."""

import pandas as pd
import pytest

from slm4offer.cli import main
from slm4offer.config import load_config
from slm4offer.data.userdata import export_campaign_log


def test_validate_train_evaluate_and_offers_on_your_own_data(project_root, tmp_path, capsys):
    log, offers = export_campaign_log(load_config("smoke"), tmp_path / "export", personas=200)
    dataset = tmp_path / "my_dataset"
    assert main(["validate-data", str(log), "--offers", str(offers), "--out", str(dataset)]) == 0
    flags = ["--profile", "smoke", "--data", str(dataset), "--epochs", "1"]
    for kind in ("sft", "contrastive"):
        assert main(["train", "--kind", kind, *flags]) == 0
    assert main(["evaluate", *flags, "--eval-seeds", "1", "--judge", "learned"]) == 0

    cfg = load_config("smoke", data=str(dataset), epochs=1)
    assert cfg.results_dir == project_root / "results" / "smoke" / "data" / "my_dataset"
    table = pd.read_csv(cfg.results_dir / "acceptance.csv")
    assert set(table["judge"]) == {"learned"} and "best" not in set(table["system"])
    assert {"sft", "contrastive", "random", "popular"} <= set(table["system"])
    assert (table["judged"] == 20).all(), "the 10% test split of 200 personas"
    decisions = pd.read_csv(cfg.results_dir / "decisions" / "acceptance.csv")
    catalog = set(pd.read_csv(offers)["offer"])
    assert decisions["in_catalogue"].eq(decisions["offer"].isin(catalog)).all(), "in catalogue = a catalogue text"
    assert not (project_root / "results" / "smoke" / "acceptance.csv").exists(), "the world's results untouched"
    assert "your data (my_dataset)" in (cfg.results_dir / "acceptance.md").read_text()

    assert main(["evaluate", *flags, "--judge", "simulated"]) == 2
    assert "does not exist for your own data" in capsys.readouterr().err

    models = sorted((project_root / "artifacts" / "smoke").glob("model-*-contrastive-*"))
    assert len(models) == 1
    new = tmp_path / "new.csv"
    pd.DataFrame({"persona_id": ["n1", "n2"], "persona": ["A 30-year-old who travels a lot.",
                                                          "A retired teacher saving for a house."]}).to_csv(new,
                                                                                                           index=False)
    assert main(["offers", "--model", str(models[0]), "--personas", str(new), "--out", str(tmp_path / "o.csv")]) == 0
    assert pd.read_csv(tmp_path / "o.csv")["offer"].str.len().gt(0).all()


def test_data_must_be_a_dataset_folder(tmp_path):
    with pytest.raises(ValueError, match="not a dataset folder"):
        load_config("smoke", data=str(tmp_path))
