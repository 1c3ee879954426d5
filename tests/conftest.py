"""Every test writes its artifacts, figures and results under a temp project root.

A test to which trained smoke models are a means, not the subject, asks for `smoke_models`: the
smoke world's datasets, learned judges and seed-0 SFT and contrastive models (finance and
ecommerce), trained once per test session and copied into its root, where the stage cache finds
them. Tests of training and caching themselves train their own."""

import os
import shutil
from pathlib import Path

import pytest

from slm4offer.config import PROFILE_ENV, ROOT_ENV, load_config
from slm4offer.files import locked
from slm4offer.model.training import KINDS, train

SMOKE_MODEL_DOMAINS = ("finance", "ecommerce")


@pytest.fixture(autouse=True)
def project_root(tmp_path, monkeypatch):
    monkeypatch.setenv(ROOT_ENV, str(tmp_path))
    monkeypatch.delenv(PROFILE_ENV, raising=False)
    return tmp_path


@pytest.fixture(scope="session")
def smoke_template(tmp_path_factory) -> Path:
    """A project root holding the smoke models, built by the first test worker that needs it; the
    others wait for it (a session's workers share the parent of their temp folders)."""
    own = tmp_path_factory.getbasetemp()
    root = (own.parent if os.environ.get("PYTEST_XDIST_WORKER") else own) / "smoke-template"
    with locked(root), pytest.MonkeyPatch.context() as mp:
        if not (root / "built").is_file():
            mp.setenv(ROOT_ENV, str(root))
            mp.delenv(PROFILE_ENV, raising=False)
            for domain in SMOKE_MODEL_DOMAINS:
                for kind in KINDS:
                    train(load_config("smoke", domain=domain), kind, progress=False)
            (root / "built").touch()
    return root


def copy_smoke_models(template: Path, root: Path) -> None:
    shutil.copytree(template / "artifacts", root / "artifacts", dirs_exist_ok=True)


@pytest.fixture
def smoke_models(project_root, smoke_template) -> Path:
    copy_smoke_models(smoke_template, project_root)
    return project_root
