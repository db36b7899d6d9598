"""Fixtures for the orchestration tests: the same isolated harness home as the evalkit tests."""
import pytest

from harness_base.home import HOME_ENV


@pytest.fixture(autouse=True)
def isolated_home(session_home, monkeypatch):
    monkeypatch.setenv(HOME_ENV, str(session_home))
    return session_home
