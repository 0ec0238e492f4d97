"""Shared fixtures: a clean ``CRBR_*`` environment and settings built in code."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from metatwin_functions import Settings

# The test kit's fixtures (function_client...), as an installed package offers them.
pytest_plugins = ("metatwin_functions.testing.pytest_plugin",)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests state their settings; a developer's CRBR_* variables must not leak in.
    for name in list(os.environ):
        if name.startswith("CRBR_"):
            monkeypatch.delenv(name)


@pytest.fixture
def isolated_cwd(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Run in an empty directory, so no ``.env`` is read."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def settings() -> Settings:
    """Settings without a broker and with short timeouts."""
    return Settings(
        deployment_id="test-deployment",
        enable_events=False,
        functions_timeout=2,
        functions_max_timeout=5,
        _env_file=None,  # type: ignore[call-arg]
    )
