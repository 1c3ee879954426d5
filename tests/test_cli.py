"""The command line: each command's --help lists the settings it reads (grouped, with the chosen
profile's defaults); no abbreviations; committed results are kept unless asked; JSON logs."""

import json

import pytest

from slm4offer.cli import COMMAND_FIELDS, FIELD_GROUPS, main
from slm4offer.config import config_fields


def help_text(capsys, *argv) -> str:
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--help"])
    assert exit_.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # argparse wraps lines


def test_help_shows_the_chosen_profiles_defaults(capsys, monkeypatch):
    smoke = help_text(capsys, "train", "--kind", "sft", "--profile", "smoke")
    assert "--epochs EPOCHS" in smoke and "(default, profile smoke: 2)" in smoke
    default = help_text(capsys, "train", "--kind", "sft")
    assert "(default, profile default: 6)" in default
    monkeypatch.setenv("SLM4OFFER_PROFILE", "smoke")
    assert "(default, profile smoke: 2)" in help_text(capsys, "train", "--kind", "sft")


def test_each_command_lists_only_the_settings_it_reads(capsys):
    synth = help_text(capsys, "synthesize")
    assert "--n-personas" in synth and "--lam" not in synth and "--judges" not in synth
    train = help_text(capsys, "train", "--kind", "sft")
    assert "--lam" in train and "--judges" not in train and "--num-beams" not in train
    evaluate = help_text(capsys, "evaluate")
    assert {"--judges", "--baseline-candidates", "--eval-seeds", "--lam"} <= set(evaluate.split())
    assert "--judge-samples" not in evaluate
    every = {"--" + f.name.replace("_", "-") for f in config_fields()}
    assert every <= set(help_text(capsys, "config").split())
    names = {f.name for f in config_fields()}
    assert all(set(fields) <= names for fields in COMMAND_FIELDS.values())


def test_a_setting_another_command_reads_is_refused_clearly(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["synthesize", "--lam", "0.2"])
    assert exit_.value.code == 2 and "unrecognized arguments: --lam 0.2" in capsys.readouterr().err


def test_bool_settings_parse_true_and_false(capsys):
    assert main(["config", "--profile", "smoke", "--bf16", "true", "--device", "cpu"]) == 0
    assert "bf16=True" in capsys.readouterr().out
    assert main(["config", "--bf16", "no"]) == 0
    assert "bf16" not in capsys.readouterr().out  # the default: not listed as changed
    with pytest.raises(SystemExit) as exit_:
        main(["config", "--bf16", "maybe"])
    assert exit_.value.code == 2 and "'maybe': use true or false" in capsys.readouterr().err


def test_abbreviations_are_refused_not_guessed(capsys):
    for argv in (["train", "--kind", "sft", "--epoch", "1"], ["train", "--kind", "sft", "--learning-rat", "1e-4"],
                 ["--log-f=json", "config"]):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2 and "unrecognized arguments" in capsys.readouterr().err


def test_settings_are_grouped_and_every_field_has_one_group(capsys):
    grouped = [name for names in FIELD_GROUPS.values() for name in names]
    assert sorted(grouped) == sorted(f.name for f in config_fields()), "each field in exactly one group"
    text = help_text(capsys, "train", "--kind", "sft")
    order = [text.index(f"{group} settings:") for group in ("data", "model", "training")]
    assert order == sorted(order) and "judging settings:" not in text
    assert text.index("--lam LAM Weight") > text.index("training settings:") > text.index("--d-model D_MODEL Scratch")


def test_the_committed_results_are_not_rewritten_unless_asked(project_root, capsys):
    (project_root / "results").mkdir()
    assert main(["synthesize", "--profile", "default", "--n-personas", "30"]) == 2
    err = capsys.readouterr().err
    assert "rewrite the committed results" in err and "--write-results" in err
    assert not any((project_root / "results").iterdir())
    assert main(["evaluate", "--profile", "default", "--judge", "learned"]) == 2
    assert main(["synthesize", "--profile", "smoke", "--n-personas", "60"]) == 0, "other profiles: results/smoke/"


def test_json_log_format_gives_one_object_per_line(project_root, capsys):
    assert main(["--log-format", "json", "synthesize", "--profile", "smoke", "--n-personas", "60"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert records and records[-1]["cached"] is False and records[-1]["output"].endswith(
        tuple(p.name for p in (project_root / "artifacts" / "smoke").iterdir()))
    assert main(["--log-format", "json", "synthesize", "--profile", "smoke", "--n-personas", "60"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["cached"] is True
    assert main(["--log-format", "json", "offers", "--model", "nowhere", "--personas", "p.csv", "--out", "o.csv"]) == 2
    error = json.loads(capsys.readouterr().err.strip())
    assert error["command"] == "offers" and "p.csv" in error["error"]


def test_threads_setting_sets_torch_threads(capsys):
    import torch

    before = torch.get_num_threads()
    try:
        assert main(["config", "--profile", "smoke", "--threads", "1"]) == 0
        assert torch.get_num_threads() == 1 and "threads=1" in capsys.readouterr().out
    finally:
        torch.set_num_threads(before)
