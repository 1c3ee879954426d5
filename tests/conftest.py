"""Every test writes its artifacts, figures and results under a temp project root."""

import pytest


@pytest.fixture(autouse=True)
def project_root(tmp_path, monkeypatch):
    monkeypatch.setenv("SLM4OFFER_ROOT", str(tmp_path))
    monkeypatch.delenv("SLM4OFFER_PROFILE", raising=False)
    return tmp_path
