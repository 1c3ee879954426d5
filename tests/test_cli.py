"""Each command's --help lists the settings it reads, with the chosen profile's defaults."""

import pytest

from slm4offer.cli import COMMAND_FIELDS, main
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
