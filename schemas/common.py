"""Shapes shared by several resources: times, pagination queries."""

from __future__ import annotations

import re
from typing import Any

from marshmallow import fields

from orchestrator.errors import ValidationFailed
from orchestrator.events import iso

#: ASCII digits only (``str.isdigit`` also accepts ``"²"`` and other scripts' digits).
_DIGITS = re.compile(r"[0-9]+")


class Time(fields.Field):
    """ISO 8601 UTC with milliseconds and ``Z``."""

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kw: Any) -> Any:
        return None if value is None else iso(value)


def page_limit(query: Any) -> int:
    """``limit``: an integer >= 1, default 20, clamped to 100 (spec api.md §1.6)."""
    raw = query.get("limit")
    if raw is None:
        return 20
    digits = raw.lstrip("0")
    if not _DIGITS.fullmatch(raw) or not digits:
        raise ValidationFailed.field("limit", "INVALID_FORMAT", "must be an integer >= 1")
    return min(int(digits) if len(digits) <= 3 else 100, 100)


def reject_unknown(query: Any, allowed: set[str]) -> None:
    unknown = sorted(set(query.keys()) - allowed)
    if unknown:
        raise ValidationFailed(details={"fields": [
            {"field": name, "code": "UNKNOWN_FIELD", "message": "unknown query parameter"} for name in unknown]})


def check_enums(query: Any, allowed: dict[str, list[str]]) -> None:
    """Query filters whose value must be one of a fixed set (400 INVALID_ENUM with ``allowed``)."""
    for name, values in allowed.items():
        if name in query and query[name] not in values:
            raise ValidationFailed.field(name, "INVALID_ENUM", f"must be one of {', '.join(values)}", allowed=values)
