"""Fixtures shared by the tests that run the ``offerhub`` console script."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """An empty HOME and working directory: no ~/.offerhub/config.json, no .env."""
    (tmp_path / "work").mkdir()
    return tmp_path
