import pytest

from slm4offer.experiments.curves import epoch_table


def test_epoch_table_keeps_one_row_per_evaluation_with_train_and_eval_parts():
    logs = [{"loss": 3.0, "ce": 2.0, "epoch": 0.5},
            {"eval_loss": 1.5, "eval_ce": 1.0, "eval_infonce": 2.0, "eval_runtime": 0.3,
             "eval_samples_per_second": 99.0, "train_epoch_loss": 2.5, "train_epoch_ce": 2.0, "epoch": 1.0},
            {"eval_loss": 1.25, "eval_ce": 0.75, "eval_infonce": 1.75, "epoch": 2.0000001},
            {"train_runtime": 10.0, "epoch": 2.0}]
    table = epoch_table(logs)
    assert table.index.tolist() == [1, 2]
    assert table.loc[1, "eval_infonce"] == 2.0 and table.loc[1, "train_epoch_ce"] == 2.0
    assert "eval_runtime" not in table and "eval_samples_per_second" not in table
    assert table.loc[2, "eval_loss"] == pytest.approx(1.25)


def test_stable_epoch_is_the_first_epoch_the_curve_stays_within_tolerance():
    import pandas as pd

    from slm4offer.experiments.curves import stable_epoch

    falling = pd.Series([4.0, 2.0, 1.5, 1.3, 1.2], index=range(1, 6))
    assert stable_epoch(falling) is None, "still falling by more than 1% an epoch"
    settled = pd.Series([4.0, 2.0, 1.01, 1.005, 1.0, 1.002], index=range(1, 7))
    assert stable_epoch(settled, tol=0.01) == 3
    assert stable_epoch(settled, window=3) == 3 and stable_epoch(settled, window=4) is None, "3 epochs follow"
    assert stable_epoch(falling, tol=0.5) == 2


def test_the_selection_record_counts_the_models_that_kept_the_cap(project_root):
    import pandas as pd

    from slm4offer.config import load_config
    from slm4offer.report.tables import save_selection

    cfg = load_config("smoke")
    table = pd.DataFrame({"kind": ["sft", "sft", "contrastive"], "seed": [0, 1, 0], "learning rate": 1e-3,
                          "searched": True, "kept epoch": [2.0, 1.0, 2.0], "criterion": [0.4, 0.3, 0.5],
                          "epochs run": [2.0, 2.0, 2.0], "cap": cfg.epochs})
    save_selection(cfg, table)
    text = (cfg.results_dir / "selection.md").read_text()
    assert "2 of 3 models kept the cap's last epoch" in text and "validation criterion" in text
    assert pd.read_csv(cfg.results_dir / "selection.csv")["kept epoch"].tolist() == [2.0, 1.0, 2.0]
