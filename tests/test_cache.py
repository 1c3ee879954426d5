"""Cache keys: they follow their inputs, only their inputs, and every input a stage reads."""

import ast
import dataclasses
import shutil

import pytest
from package_graph import PACKAGE, closure, module_path, relative_file

from slm4offer import cache
from slm4offer.cache import LLM_GENERATOR_CODE, LLM_GENERATOR_FIELDS, STAGE_CODE, STAGE_FIELDS, stage_hash
from slm4offer.config import Config, load_config
from slm4offer.domains import BUILTIN_DIR

# The module each stage's cached output is made by.
STAGE_ENTRY = {"dataset": "slm4offer.data.dataset", "train": "slm4offer.model.training",
               "generate": "slm4offer.model.generation", "judge": "slm4offer.judges.learned"}
# Modules a stage imports whose code cannot change what it caches, and why.
CODE_ALLOWED = {
    "__init__.py": "the package version and its two re-exports",
    "config.py": "settings only: the fields a stage reads are in its key (checked below)",
    "cache.py": "computes the key",
    "runtime.py": "the device and progress bars: where and how quietly code runs, not what it computes",
    "errors.py": "exception classes: an edit changes a message, never an output",
    "files.py": "writes atomically what the stage decided",
    "provenance.py": "the record written beside an output, never read back into it",
    "stats.py": "the dataset module's segment table for figures, which is not cached",
    "model/tuned.py": "picks the learning rate, which is in the key",
    "judges/simulated.py": "a judge training's validation criterion does not ask for (it uses the learned one)",
    "judges/llm_judge.py": "a judge training's validation criterion does not ask for (it uses the learned one)",
    **dict.fromkeys(LLM_GENERATOR_CODE, "in the key where the dataset came from an LLM (generator='openai')"),
}
# Config fields a stage's code reads that cannot change what it caches, and why.
FIELDS_ALLOWED = {
    "profile": "names the artifacts folder, not what is in it",
    "data": "your own dataset: its content's fingerprint is in the key instead",
    "device": "where the model runs (provenance records the numerics of each machine)",
    "report_to": "where training logs are also sent",
    "threads": "CPU threads, like the device: provenance records each run's numerics, threads included",
    "generation_batch_size": "personas per generation batch; padding is masked",
    "accept_threshold": "the learned judge applies it when it is loaded, after the cache",
    "tuning": "replaced by the learning rate it chooses, which is in the key",
    **dict.fromkeys(("llm_base_url", "llm_concurrency", "llm_max_attempts", "llm_timeout_s", "llm_backoff_s",
                     "llm_max_error_share"), "how the endpoint is asked, not what: model and temperature are keyed"),
}


def _docstring_only(path) -> bool:
    body = ast.parse(path.read_text()).body
    return len(body) <= 1 and all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body)


@pytest.mark.parametrize("stage", STAGE_FIELDS)
def test_every_module_a_stage_imports_is_in_its_key_or_allowed(stage):
    reached = {relative_file(m) for m in closure(STAGE_ENTRY[stage])
               if not _docstring_only(module_path(m))}
    unkeyed = reached - set(STAGE_CODE[stage]) - set(CODE_ALLOWED)
    assert not unkeyed, f"stage {stage!r} imports {sorted(unkeyed)}: add them to cache.STAGE_CODE or CODE_ALLOWED"
    assert set(STAGE_CODE[stage]) <= reached, f"cache.STAGE_CODE[{stage!r}] lists modules the stage never imports"


def _fields_read(files) -> set[str]:
    """Config fields read as `cfg.<field>` in `files`."""
    names = {f.name for f in dataclasses.fields(Config)}
    out = set()
    for f in files:
        for node in ast.walk(ast.parse((PACKAGE / f).read_text())):
            if (isinstance(node, ast.Attribute) and node.attr in names and isinstance(node.value, ast.Name)
                    and node.value.id == "cfg"):
                out.add(node.attr)
    return out


@pytest.mark.parametrize("stage", STAGE_FIELDS)
def test_every_field_a_stage_reads_is_in_its_key_or_allowed(stage):
    read = _fields_read(STAGE_CODE[stage] + LLM_GENERATOR_CODE)
    unkeyed = read - set(STAGE_FIELDS[stage]) - set(LLM_GENERATOR_FIELDS) - set(FIELDS_ALLOWED)
    assert not unkeyed, f"stage {stage!r} reads {sorted(unkeyed)}: add them to cache.STAGE_FIELDS or FIELDS_ALLOWED"


def test_the_field_check_sees_a_field_read_in_a_stages_code(tmp_path, monkeypatch):
    copy = tmp_path / "slm4offer"
    shutil.copytree(PACKAGE, copy)
    (copy / "model" / "losses.py").write_text((copy / "model" / "losses.py").read_text()
                                               + "\n\ndef extra(cfg):\n    return cfg.judge_samples\n")
    monkeypatch.setattr("test_cache.PACKAGE", copy)
    assert "judge_samples" in _fields_read(STAGE_CODE["train"])


def test_comments_and_docstrings_do_not_change_the_key_but_code_does(tmp_path, monkeypatch):
    cfg = load_config("smoke")
    before = stage_hash(cfg, "train")
    copy = tmp_path / "slm4offer"
    shutil.copytree(PACKAGE, copy)
    monkeypatch.setattr(cache, "PACKAGE", copy)
    losses = copy / "model" / "losses.py"
    text = losses.read_text()
    assert '"""The paper\'s loss' in text
    statement = "total = term if total is None else total + term"
    assert statement in text
    losses.write_text(text.replace('"""The paper\'s loss', '"""Reworded: the paper\'s loss', 1)
                      .replace(statement, statement + "  # a new comment"))
    assert stage_hash(cfg, "train") == before
    losses.write_text(text.replace(statement, "total = term if total is None else term + total"))
    assert stage_hash(cfg, "train") != before
    assert stage_hash(cfg, "dataset") == stage_hash(load_config("smoke"), "dataset")  # not the dataset's code


def test_dataset_hash_follows_its_inputs_only(tmp_path):
    base = load_config("smoke")
    assert stage_hash(base, "dataset") == stage_hash(load_config("smoke"), "dataset")
    assert stage_hash(base, "dataset") != stage_hash(load_config("smoke", seed=1), "dataset")
    # LLM settings do not matter while the world generator is used
    assert stage_hash(base, "dataset") == stage_hash(load_config("smoke", llm_model="x"), "dataset")
    # editing the domain file changes the hash
    copy = tmp_path / "finance.yaml"
    shutil.copy(BUILTIN_DIR / "finance.yaml", copy)
    before = stage_hash(load_config("smoke", domain=str(copy)), "dataset")
    copy.write_text(copy.read_text().replace("noise_sd: 0.6", "noise_sd: 0.7"))
    assert stage_hash(load_config("smoke", domain=str(copy)), "dataset") != before


def test_the_llm_client_code_counts_only_for_llm_generated_datasets(monkeypatch):
    world, llm = load_config("smoke"), load_config("smoke", generator="openai")
    before = stage_hash(world, "dataset"), stage_hash(llm, "dataset")
    monkeypatch.setattr(cache, "LLM_GENERATOR_CODE", ("llm.py",))  # as if llm_generator.py were edited away
    assert stage_hash(world, "dataset") == before[0]
    assert stage_hash(llm, "dataset") != before[1]


def test_an_unknown_stage_is_refused():
    with pytest.raises(ValueError, match="unknown stage 'trian'"):
        stage_hash(load_config("smoke"), "trian")
