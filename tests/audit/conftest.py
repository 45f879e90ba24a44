"""The flows each audit module drives for itself before it scans (``tests/audit/flows.py``)."""

from tests.audit.flows import flows

__all__ = ["flows"]
