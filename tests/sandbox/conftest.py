"""The sandbox's own tests reset it before each test, so they get a sandbox of their own.

The run's shared sandbox holds the ledger that the orchestrator's tests build up (the platform account,
the deployer accounts, every activated wallet); a reset there would wipe it under the test packages that
run later (tests/sdk, tests/web), so this package overrides ``sandbox_url`` with a private one.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fixtures.sandbox import start_sandbox


@pytest.fixture(scope="package")
def sandbox_url() -> Iterator[str]:
    with start_sandbox() as url:
        yield url
