import json

import pytest
import torch
from conftest import copy_smoke_artifacts
from transformers import TrainerCallback

from slm4offer.config import load_config
from slm4offer.data.dataset import build_dataset
from slm4offer.model.modeling import ModelSource, build_model, resolve_source, train_tokenizer
from slm4offer.model.training import OfferCollator, make_examples, model_dir, offer_keys, train


def smoke(**overrides):
    return load_config("smoke", init="scratch", **overrides)


class CrashAt(TrainerCallback):
    """Raises mid-epoch, after a checkpoint exists: what a killed run leaves behind."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt(f"simulated kill at step {self.step}")


def _eval_logs(result):
    return [{k: v for k, v in log.items() if not k.endswith(("runtime", "per_second"))}
            for log in result.log_history if "eval_loss" in log]


def test_examples_one_per_accepted_offer_with_own_rejected_as_negatives():
    cfg = smoke(hard_negatives=2)
    dd = build_dataset(cfg, progress=False)
    tok = train_tokenizer(list(dd["train"]["persona"]), vocab_size=300)
    keys = offer_keys(dd)
    examples = make_examples(dd["train"], tok, keys, cfg)
    assert len(examples) == sum(len(r) for r in dd["train"]["accepted_offer_ids"])
    rows = {r["persona_id"]: r for r in dd["train"]}
    for e in examples:
        row = rows[e["persona_id"]]
        assert set(e["negative_keys"]) <= {keys[o] for o in row["rejected_offer_ids"]}
        assert len(e["negative_keys"]) == min(2, len(row["rejected_offer_ids"]))
        assert e["offer_key"] in e["accepted_keys"]
    assert examples == make_examples(dd["train"], tok, keys, cfg)  # pre-sampled with the seed
    batch = OfferCollator(tok.pad_token_id)(examples[:5])
    assert batch["negative_owner"].tolist() == [i for i, e in enumerate(examples[:5]) for _ in e["negative_keys"]]
    for row, e in zip(batch["labels"].tolist(), examples[:5], strict=True):
        assert [t for t in row if t != -100] == e["labels"]
    assert batch["attention_mask"].sum(1).tolist() == [len(e["input_ids"]) for e in examples[:5]]


@pytest.mark.parametrize("overrides, error, match", [
    ({"lam": 1.5}, ValueError, r"lam=1.5: the InfoNCE weight must be in \[0, 1\]"),
    ({"lam": -0.1}, ValueError, "InfoNCE weight"),
    ({"tau": 0.0}, ValueError, "tau=0.0: the temperature must be > 0"),
    ({"negatives": "all"}, ValueError, "negatives='all': must be one of"),
    ({"hard_negatives": 0}, ValueError, "needs hard_negatives >= 1"),
])
def test_bad_loss_settings_fail_when_the_config_is_made(overrides, error, match):
    with pytest.raises(error, match=match):
        smoke(**overrides)


def test_more_hard_negatives_than_available_fails_before_training(project_root):
    cfg = smoke(hard_negatives=50)
    with pytest.raises(ValueError, match="hard_negatives=50: no training persona has more than"):
        train(cfg, "contrastive", progress=False)
    assert not model_dir(cfg, resolve_source(cfg)).exists()


def test_missing_model_path_fails_before_training(project_root):
    cfg = load_config("smoke", pretrained_model=str(project_root / "missing"))
    with pytest.raises(FileNotFoundError, match="no such folder"):
        train(cfg, "sft", progress=False)
    assert not (project_root / "artifacts").exists()


def test_contrastive_logs_its_loss_parts_and_is_cached(smoke_data):
    result = train(smoke(), "contrastive", progress=False)
    steps = [log for log in result.log_history if "loss" in log and "eval_loss" not in log]
    assert steps and all({"ce", "infonce"} <= log.keys() for log in steps)
    for log in _eval_logs(result):
        assert {"eval_ce", "eval_infonce", "train_epoch_loss", "train_epoch_ce", "train_epoch_infonce"} <= log.keys()
        assert log["eval_loss"] == pytest.approx(0.5 * log["eval_ce"] + 0.5 * log["eval_infonce"], rel=1e-5)
    assert len(_eval_logs(result)) == 2  # one per epoch
    info = json.loads((result.path / "training_info.json").read_text())
    assert info["source_kind"] == "scratch" and info["label"] == "contrastive"
    assert info["provenance"]["config"]["lam"] == 0.5 and (result.path.parent / "initial").is_dir()
    assert train(smoke(), "contrastive", progress=False).path == result.path  # read back, not retrained


def test_sft_is_lambda_zero_and_probes_infonce_on_validation(smoke_data):
    result = train(smoke(), "sft", progress=False)
    assert result.info["provenance"]["config"]["lam"] == 0.0
    assert not any("infonce" in log for log in result.log_history if "loss" in log and "eval_loss" not in log)
    for log in _eval_logs(result):
        assert log["eval_loss"] == pytest.approx(log["eval_ce"], rel=1e-6) and "eval_infonce" in log


def test_same_seed_same_result(tmp_path, monkeypatch, smoke_data_template):
    runs = []
    for name in ("a", "b"):
        copy_smoke_artifacts(smoke_data_template, tmp_path / name)
        monkeypatch.setenv("SLM4OFFER_ROOT", str(tmp_path / name))
        runs.append(train(smoke(epochs=1), "contrastive", progress=False))
    assert _eval_logs(runs[0]) == _eval_logs(runs[1])
    other = train(smoke(epochs=1, train_seed=1), "contrastive", progress=False)
    assert _eval_logs(other) != _eval_logs(runs[0])


def test_interrupted_run_resumes_to_the_same_result(tmp_path, monkeypatch, smoke_data_template):
    for name in ("whole", "killed"):
        copy_smoke_artifacts(smoke_data_template, tmp_path / name)
    monkeypatch.setenv("SLM4OFFER_ROOT", str(tmp_path / "whole"))  # both checkpoint and evaluate every 10 steps
    whole = train(smoke(), "contrastive", progress=False, checkpoint_every=10)
    monkeypatch.setenv("SLM4OFFER_ROOT", str(tmp_path / "killed"))
    with pytest.raises(KeyboardInterrupt):  # killed mid-epoch 1, after the step-10 checkpoint
        train(smoke(), "contrastive", progress=False, checkpoint_every=10, callbacks=[CrashAt(15)])
    resumed = train(smoke(), "contrastive", progress=False, checkpoint_every=10)
    assert resumed.info["resumed_from"] == "checkpoint-10"
    assert _eval_logs(resumed) == _eval_logs(whole) and len(_eval_logs(whole)) > 2
    assert resumed.info["selection"] == whole.info["selection"]
    for (name, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_the_kept_model_is_the_best_epoch_on_the_validation_criterion(smoke_data, caplog):
    """Selection keeps the epoch with the highest criterion (the first of equals), the kept weights
    score exactly that, and early stopping ends the run `early_stopping_patience` epochs later."""
    from slm4offer.model.selection import CRITERION, ValidationCriterion

    cfg = smoke(epochs=6, early_stopping_patience=1, learning_rate=3e-3)
    result = train(cfg, "contrastive", progress=False)
    selection = result.info["selection"]
    values = [e[CRITERION] for e in selection["per_epoch"]]
    best = values.index(max(values))
    assert selection["best_value"] == max(values) and selection["best_epoch"] == best + 1
    assert len(values) == min(6, best + 2)  # stopped one epoch after the last gain, if before the cap
    assert ValidationCriterion(cfg)(result.model, result.tokenizer) == pytest.approx(selection["best_value"], abs=1e-9)
    # the best checkpoint was loaded back, and its tied embeddings were not reported as missing keys
    assert not [r for r in caplog.records if "missing keys" in r.getMessage()]


def test_only_the_tied_embedding_copies_are_kept_quiet():
    import logging

    from slm4offer.model.training import TiedCopiesFilter

    model, _ = build_model(smoke(), ModelSource("scratch", "", "test"), tokenizer_texts=["a b c"] * 20)
    quiet = TiedCopiesFilter(model)
    assert quiet.tied == {"encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "lm_head.weight"}

    def record(keys):
        return logging.LogRecord("transformers.trainer", logging.WARNING, "", 0, quiet.PREFIX + f"{keys}.", None, None)
    assert not quiet.filter(record(sorted(quiet.tied)))
    assert quiet.filter(record([*sorted(quiet.tied), "projection.weight"])), "a key really missing is reported"
    assert quiet.filter(logging.LogRecord("t", logging.WARNING, "", 0, "something else", None, None))
