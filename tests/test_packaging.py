"""The set-up files agree with each other: pins, the torch pin in the Makefile, CI = README."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).parents[1]


def pyproject_pins():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"] + [d for group in project["optional-dependencies"].values() for d in group]
    return dict(d.split("==") for d in deps if "==" in d), deps


def test_every_dependency_is_pinned_exactly():
    pins, deps = pyproject_pins()
    assert len(pins) == len(deps) and "torch" in pins and "mypy" in pins


def test_environment_yml_agrees_with_pyproject():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    env_pins = dict(p.split("==") for p in pip if "==" in p)
    pins, _ = pyproject_pins()
    assert env_pins == pins
    assert "python=3.11" in env["dependencies"]


def test_makefile_installs_the_pyproject_torch_first():
    makefile = (ROOT / "Makefile").read_text()
    assert "grep -o '\"torch==[0-9.]*\"' pyproject.toml" in makefile
    torch_line = makefile.index('pip install --quiet "$(TORCH_PIN)"')
    assert torch_line < makefile.index('uv pip install --quiet --compile-bytecode --python $(BIN)/python -e ".[dev]"')


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"^\s*(make \w+)\s*(?:#.*)?$", readme, flags=re.M)
    assert "make test" in commands
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.startswith("#") and not line.startswith(("set ", "cd "))]
    assert ci == ["make test"]


def test_reproduce_numbers_are_the_committed_results():
    from slm4offer.report.reproduce import END, START, numbers_block

    text = (ROOT / "REPRODUCE.md").read_text()
    block = START + text.split(START, 1)[1].split(END, 1)[0] + END
    assert block == numbers_block(ROOT / "results"), "run `slm4offer reproduce` (make all does)"


def test_committed_tables_follow_from_the_committed_per_persona_decisions():
    from slm4offer.report.check import recompute

    names = sorted(p.stem for p in (ROOT / "results" / "decisions").glob("*.csv"))
    assert {"acceptance", "acceptance_ecommerce", "ablations"} <= set(names)
    for name in names:
        assert recompute(ROOT / "results", name) == [], f"slm4offer recompute: {name}"


def make_commands(profile: str, target: str = "all") -> list[str]:
    """What `make TARGET PROFILE=...` would run, every notebook included (dry run, nothing executed)."""
    import subprocess

    out = subprocess.run(["make", "-n", "-B", target, f"PROFILE={profile}"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    return out.replace("\\\n", " ").splitlines()


def test_the_profile_is_a_papermill_parameter_and_only_default_replaces_the_committed_notebooks():
    every = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    # their own targets: with five seeds per model, the headline fills make all's budget
    targets = {"ablations": "07_ablations", "new-domain": "08_new_domain", "size-study": "10_model_size"}
    opt_in = list(targets.values())
    for target, notebooks in (("all", [n for n in every if n not in opt_in]),
                              *((t, [n]) for t, n in targets.items())):
        for profile, folder in (("smoke", "figures/smoke/notebooks"), ("default", "notebooks")):
            commands = make_commands(profile, target)
            runs = [c for c in commands if "papermill" in c]
            moves = [c.split()[-1] for c in commands if c.startswith("mv notebooks/.")]
            assert len(runs) == len(notebooks) and all(f"-p profile {profile}" in c for c in runs)
            assert moves == [f"{folder}/{name}.ipynb" for name in notebooks]


def test_committed_notebooks_record_the_default_profile_and_nbval_skips_that_record(tmp_path):
    import json
    import shutil

    from slm4offer.report.notebooks import mark_injected_parameters

    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        nb = json.loads(path.read_text())
        injected = [c for c in nb["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
        assert len(injected) == 1 and 'profile = "default"' in "".join(injected[0]["source"]), path.name
        assert "nbval-skip" in injected[0]["metadata"]["tags"], f"{path.name}: make test would run the default profile"
        assert nb["metadata"]["papermill"]["parameters"] == {"profile": "default"}
    copy = Path(shutil.copy(ROOT / "notebooks" / "03_contrastive_finetuning.ipynb", tmp_path / "nb.ipynb"))
    nb = json.loads(copy.read_text())
    for cell in nb["cells"]:
        cell["metadata"]["tags"] = [t for t in cell["metadata"].get("tags", []) if t != "nbval-skip"]
    copy.write_text(json.dumps(nb))
    assert mark_injected_parameters(copy) == 1 and mark_injected_parameters(copy) == 0
