"""Loads the sandbox fixtures for this package (harmless once the project conftest lists the plugin)."""

from tests.fixtures.sandbox import sandbox, sandbox_url  # noqa: F401
