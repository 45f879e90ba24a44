"""Maintenance switch shapes (spec api.md §3.4)."""

from __future__ import annotations

from schemas.base import BaseSchema
from schemas.fields import Text


class EnableMaintenance(BaseSchema):
    message = Text(max_length=500, load_default=None, allow_none=True)
