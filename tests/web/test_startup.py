"""The web process refuses to start without the platform user, with one clear message."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from orchestrator.settings import Settings
from tests.fixtures.database import own_database
from tests.fixtures.processes import ROOT


@pytest.fixture
def empty_database(settings: Settings) -> Iterator[str]:
    """A migrated database nobody bootstrapped."""
    with own_database(f"{settings.database_url}_empty") as url:
        yield url


def test_the_web_process_refuses_to_start_before_bootstrap(empty_database: str) -> None:
    env = {**os.environ, "DATABASE_URL": empty_database, "PORT": "0"}
    done = subprocess.run([sys.executable, "-m", "web"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 2
    assert "run `python -m orchestrator bootstrap`" in done.stderr
    assert "Traceback" not in done.stderr
