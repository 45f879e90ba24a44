"""Typed command payloads: the base of the frozen dataclass each command kind's handler takes.

A command's payload is stored as JSON in its ``commands`` row, with the API's camelCase names, and read
back by whichever worker runs it, perhaps after a restart. The dataclass is how the core sees it, so
mypy checks every field a handler reads; the web tier builds one from its schema's output before it
records the command (``from_payload(..., strict=True)``), so a payload no handler can read is refused
there and then instead of failing in a worker.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Self


def wire_name(field_name: str) -> str:
    """``external_user_id`` -> ``externalUserId``: the API's name of a payload field."""
    head, *rest = field_name.split("_")
    return head + "".join(part.title() for part in rest)


_FIELDS: dict[type, dict[str, str]] = {}


def _fields(cls: type) -> dict[str, str]:
    """Wire name -> field name, once per payload type."""
    found = _FIELDS.get(cls)
    if found is None:
        found = _FIELDS[cls] = {wire_name(f.name): f.name for f in dataclasses.fields(cls)}
    return found


@dataclasses.dataclass(frozen=True)
class Payload:
    """A command kind's payload. Subclasses are frozen dataclasses whose field names are the wire names
    in snake_case; amounts stay the two-decimal strings the API sends (``Decimal(x)`` where used)."""

    @classmethod
    def from_payload(cls, data: Mapping[str, Any], *, strict: bool = False) -> Self:
        """Read a stored payload. ``strict`` refuses names the kind does not have (the web tier's check);
        otherwise they are ignored, so a row written by another version still runs."""
        names = _fields(cls)
        unknown = sorted(set(data) - set(names))
        if strict and unknown:
            raise TypeError(f"{cls.__name__} has no field {', '.join(unknown)}")
        return cls(**{names[key]: value for key, value in data.items() if key in names})

    def payload(self) -> dict[str, Any]:
        """The stored form: every field under its wire name."""
        return {wire_name(f.name): getattr(self, f.name) for f in dataclasses.fields(self)}
