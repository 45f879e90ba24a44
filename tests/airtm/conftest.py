"""The AirTM-mode instance and the sandbox's AirTM control plane for this package's tests."""

from tests.fixtures.airtm import airtm, airtm_api, airtm_instance

__all__ = ["airtm", "airtm_api", "airtm_instance"]
