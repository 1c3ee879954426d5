
import pytest

from slm4offer.config import Config, load_config


def test_profiles_are_overrides_of_the_defaults():
    assert load_config("default") == Config()
    smoke = load_config("smoke")
    assert smoke.n_personas < Config().n_personas and smoke.profile == "smoke"


def test_profile_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("SLM4OFFER_PROFILE", "smoke")
    assert load_config().profile == "smoke"
    assert load_config("paper").profile == "paper"  # an explicit profile wins


def test_none_overrides_are_ignored_so_notebook_parameters_pass_through():
    assert load_config("smoke", seed=None).seed == 0
    assert load_config("smoke", seed=7).seed == 7


def test_unknown_key_is_rejected_with_a_suggestion():
    with pytest.raises(KeyError, match="did you mean 'n_personas'"):
        load_config("smoke", n_persona=10)


@pytest.mark.parametrize("field, value", [("seed", "3"), ("seed", True), ("n_personas", 1.5),
                                          ("domain", 3)])
def test_wrong_types_are_rejected(field, value):
    with pytest.raises(TypeError, match=field):
        load_config("smoke", **{field: value})


@pytest.mark.parametrize("field, value", [("val_fraction", 0.0), ("n_personas", 0),
                                          ("generator", "gpt"), ("catalog_size", -1), ("study_seeds", 0)])
def test_bad_values_are_rejected(field, value):
    with pytest.raises(ValueError, match=field):
        load_config("smoke", **{field: value})


def test_an_opt_in_study_takes_its_own_seeds_unless_given_some():
    cfg = load_config("default")
    assert (cfg.for_study().eval_seeds, cfg.for_study(4).eval_seeds) == (cfg.study_seeds, 4)
    assert cfg.study_seeds < cfg.eval_seeds, "breadth gets fewer seeds than the headline"
    assert cfg.for_study().study_seeds == cfg.study_seeds and cfg.for_study().lam == cfg.lam
    assert load_config("smoke").for_study().eval_seeds == load_config("smoke").study_seeds


def test_yaml_file_then_keyword_overrides(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("seed: 5\nn_personas: 50\n")
    cfg = load_config("smoke", path, n_personas=60)
    assert (cfg.seed, cfg.n_personas) == (5, 60)
    path.write_text("sead: 5\n")
    with pytest.raises(KeyError, match="cfg.yaml: unknown config key 'sead'"):
        load_config("smoke", path)


def test_default_profile_writes_to_committed_folders_others_to_subfolders(project_root):
    assert load_config("default").figures_dir == project_root / "figures"
    assert load_config("smoke").results_dir == project_root / "results" / "smoke"
    assert load_config("smoke").dataset_dir.parent == project_root / "artifacts" / "smoke"


def test_stage_wall_times_are_recorded_in_the_manifest(project_root):
    import json

    from slm4offer.report.outputs import record_stage

    record_stage("01_data_synthesis", 12.34, profile="smoke")
    record_stage("02_sft_baseline", 80.0, profile="smoke")
    manifest = json.loads((project_root / "results" / "smoke" / "manifest.json").read_text())
    assert manifest["stages"]["01_data_synthesis"]["seconds"] == 12.3
    assert set(manifest["stages"]) == {"01_data_synthesis", "02_sft_baseline"} and "artifacts" in manifest


def test_summary_shows_the_settings_that_matter_and_what_else_changed():
    text = load_config("smoke", judge_samples=7).summary()
    for setting in ("profile=smoke", "domain='finance'", "lam=0.5", "tau=0.1", "epochs=2", "eval_seeds=2",
                    "judges='simulated,learned'", "accept_threshold=0.5", "d_model=64"):
        assert setting in text
    assert text.splitlines()[-1] == "other settings changed from the defaults: study_seeds=2 judge_samples=7"


def test_result_names_never_collide_across_domains_and_generators():
    from slm4offer.config import result_name

    names = {(d, g): (result_name(load_config("smoke", domain=d, generator=g), "acceptance"),
                      result_name(load_config("smoke", domain=d, generator=g), "data_card", with_domain=True))
             for d in ("finance", "ecommerce") for g in ("world", "openai")}
    assert names[("finance", "world")] == ("acceptance", "data_card_finance"), "the paper's keep the plain names"
    assert names[("ecommerce", "world")] == ("acceptance_ecommerce", "data_card_ecommerce")
    assert names[("finance", "openai")] == ("acceptance_openai", "data_card_finance_openai")
    assert len({n for pair in names.values() for n in pair}) == 8
