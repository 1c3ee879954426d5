"""Every test writes its artifacts, figures and results under a temp project root.

The smoke world's datasets and learned judges (finance and ecommerce) and its seed-0 SFT and
contrastive models are made once per test session, in template roots that xdist workers share.
A test to which they are a means, not the subject, copies them into its root, where the stage
cache finds them: `smoke_data` (datasets and judges; tests of training train their own models on
them) or `smoke_models` (the models too). Tests of datasets, judges and caching build their own."""

import os
import shutil
from pathlib import Path

import pytest

from slm4offer.config import PROFILE_ENV, ROOT_ENV, load_config
from slm4offer.files import locked
from slm4offer.judges import make_judge
from slm4offer.model.training import KINDS, train

SMOKE_MODEL_DOMAINS = ("finance", "ecommerce")


@pytest.fixture(autouse=True)
def project_root(tmp_path, monkeypatch):
    monkeypatch.setenv(ROOT_ENV, str(tmp_path))
    monkeypatch.delenv(PROFILE_ENV, raising=False)
    return tmp_path


def built_once(tmp_path_factory, name: str, build) -> Path:
    """A template root `name`, built by `build(root)` in the first test worker that needs it; the
    others wait for it (a session's workers share the parent of their temp folders)."""
    own = tmp_path_factory.getbasetemp()
    root = (own.parent if os.environ.get("PYTEST_XDIST_WORKER") else own) / name
    with locked(root), pytest.MonkeyPatch.context() as mp:
        if not (root / "built").is_file():
            mp.setenv(ROOT_ENV, str(root))
            mp.delenv(PROFILE_ENV, raising=False)
            root.mkdir(exist_ok=True)
            build(root)
            (root / "built").touch()
    return root


def copy_smoke_artifacts(template: Path, root: Path) -> None:
    shutil.copytree(template / "artifacts", root / "artifacts", dirs_exist_ok=True)


@pytest.fixture(scope="session")
def smoke_data_template(tmp_path_factory) -> Path:
    def build(root: Path) -> None:
        for domain in SMOKE_MODEL_DOMAINS:
            make_judge(load_config("smoke", domain=domain), "learned", progress=False)  # builds the dataset first

    return built_once(tmp_path_factory, "smoke-data", build)


@pytest.fixture(scope="session")
def smoke_template(tmp_path_factory, smoke_data_template) -> Path:
    def build(root: Path) -> None:
        copy_smoke_artifacts(smoke_data_template, root)
        for domain in SMOKE_MODEL_DOMAINS:
            for kind in KINDS:
                train(load_config("smoke", domain=domain), kind, progress=False)

    return built_once(tmp_path_factory, "smoke-template", build)


@pytest.fixture
def smoke_data(project_root, smoke_data_template) -> Path:
    copy_smoke_artifacts(smoke_data_template, project_root)
    return project_root


@pytest.fixture
def smoke_models(project_root, smoke_template) -> Path:
    copy_smoke_artifacts(smoke_template, project_root)
    return project_root


# `make test` runs the notebooks under nbval in the same session as the unit tests (`--dist
# loadscope`: a notebook's cells share one kernel, so a notebook goes to one worker whole, as does a
# test module), so that neither waits for the other's slowest item. The slowest scopes on the smoke
# profile go out first, the rest fill the gaps, so that the session does not end on one long scope:
# the notebooks (03 first: 10, 07 and the small ones reuse its models), then the slowest modules.
SLOW_FIRST = ("03_contrastive_finetuning", "08_new_domain", "10_model_size", "07_ablations", "09_your_own_data",
              "test_training", "test_distributed", "test_paper_shape", "test_bench", "test_evaluation")


def pytest_collection_modifyitems(items):
    def order(item) -> tuple[int, int]:
        stem = item.path.stem
        if stem in SLOW_FIRST:
            return 0, SLOW_FIRST.index(stem)
        return (1, 0) if item.path.suffix == ".ipynb" else (2, 0)

    items.sort(key=order)  # stable: cells keep their order, as do the tests of a module
