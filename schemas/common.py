"""Shapes shared by several resources: times, pagination queries."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
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


def instant(name: str, value: str, *, end: bool = False) -> datetime:
    """An ISO 8601 instant with an offset, or a bare date (UTC): its start, or with ``end`` the next
    day's start (so an inclusive ``to=2026-12-01`` covers the whole day); anything else: 400."""
    if len(value) == 10:
        try:
            day = date.fromisoformat(value)
        except ValueError:
            raise ValidationFailed.field(name, "INVALID_FORMAT", "must be an ISO 8601 date or instant") from None
        return datetime.combine(day + timedelta(days=1 if end else 0), time(), UTC)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationFailed.field(name, "INVALID_FORMAT", "must be an ISO 8601 instant") from None
    if moment.tzinfo is None:
        raise ValidationFailed.field(name, "INVALID_FORMAT", "must carry an offset (e.g. Z)")
    return moment


def period(query: Any) -> tuple[datetime | None, datetime | None]:
    """``from`` (inclusive) and ``to`` (inclusive, to the millisecond shown) as [start, end) bounds."""
    start = instant("from", query["from"]) if "from" in query else None
    end = None
    if "to" in query:
        raw = query["to"]
        end = instant("to", raw, end=True) if len(raw) == 10 else instant("to", raw) + timedelta(milliseconds=1)
    if start is not None and end is not None and start >= end:
        raise ValidationFailed.field("from", "INVALID_RANGE", "must not be after to")
    return start, end
