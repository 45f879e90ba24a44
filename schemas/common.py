"""Shapes shared by several resources: times, pagination queries."""

from __future__ import annotations

from typing import Any

from marshmallow import fields

from orchestrator.errors import ValidationFailed
from orchestrator.events import iso


class Time(fields.Field):
    """ISO 8601 UTC with milliseconds and ``Z``."""

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kw: Any) -> Any:
        return None if value is None else iso(value)


def page_limit(query: Any) -> int:
    """``limit``: an integer >= 1, default 20, clamped to 100 (spec api.md §1.6)."""
    raw = query.get("limit")
    if raw is None:
        return 20
    if not raw.isdigit() or int(raw) < 1:
        raise ValidationFailed.field("limit", "INVALID_FORMAT", "must be an integer >= 1")
    return min(int(raw), 100)


def reject_unknown(query: Any, allowed: set[str]) -> None:
    unknown = sorted(set(query.keys()) - allowed)
    if unknown:
        raise ValidationFailed(details={"fields": [
            {"field": name, "code": "UNKNOWN_FIELD", "message": "unknown query parameter"} for name in unknown]})
