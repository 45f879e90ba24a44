"""Field types shared by every schema: strict amounts, prefixed ids, enums, bounded strings."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from marshmallow import ValidationError, fields

from orchestrator import amounts, ids
from schemas.base import Problem

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def fail(code: str, message: str, **extra: Any) -> ValidationError:
    return ValidationError(Problem(code, message, **extra))


def _required_messages() -> dict[str, Problem]:
    return {"required": Problem("MISSING_REQUIRED_FIELD", "required"),
            "null": Problem("MISSING_REQUIRED_FIELD", "required")}


class Text(fields.Field):
    """A JSON string of bounded length; an empty string counts as missing when required."""

    def __init__(self, *, min_length: int = 0, max_length: int | None = None, **kwargs: Any) -> None:
        super().__init__(error_messages=_required_messages(), **kwargs)
        self.min_length, self.max_length = min_length, max_length

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kw: Any) -> Any:
        if not isinstance(value, str):
            raise fail("INVALID_TYPE", "must be a string")
        if value == "" and self.required:
            raise fail("MISSING_REQUIRED_FIELD", "required")
        if len(value) < self.min_length:
            raise fail("TOO_SHORT", f"must be at least {self.min_length} characters", min=self.min_length)
        if self.max_length is not None and len(value) > self.max_length:
            raise fail("TOO_LONG", f"must be at most {self.max_length} characters", max=self.max_length)
        return value


class Email(Text):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_length=254, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kw: Any) -> Any:
        text = super()._deserialize(value, attr, data, **kw)
        if not _EMAIL.fullmatch(text):
            raise fail("INVALID_FORMAT", "must be a valid e-mail address")
        return text


class Enum(fields.Field):
    """One of a fixed set of case-sensitive strings."""

    def __init__(self, allowed: Iterable[str], **kwargs: Any) -> None:
        super().__init__(error_messages=_required_messages(), **kwargs)
        self.allowed = [str(a) for a in allowed]

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kw: Any) -> Any:
        if value not in self.allowed:
            raise fail("INVALID_ENUM", f"must be one of {', '.join(self.allowed)}", allowed=self.allowed)
        return value


class Amount(fields.Field):
    """A request amount: a string with exactly two decimals, greater than zero; never rounded."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(error_messages=_required_messages(), **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kw: Any) -> Any:
        if not isinstance(value, str):
            raise fail("INVALID_TYPE", "must be a decimal string, not a JSON number")
        if value == "":
            raise fail("MISSING_REQUIRED_FIELD", "required")
        try:
            amount = amounts.parse_request_amount(value)
        except amounts.AmountFormatError:
            raise fail("INVALID_AMOUNT_FORMAT", "must be a decimal string with exactly 2 decimals") from None
        if amount <= 0:
            raise fail("INVALID_AMOUNT", "must be greater than 0.00")
        return amount

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kw: Any) -> Any:
        return None if value is None else amounts.format_amount(value)


class Balance(fields.Field):
    """A balance rendered from the stored value: two to seven decimals, never rounded."""

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kw: Any) -> Any:
        return None if value is None else amounts.format_balance(Decimal(value))


class Currency(fields.Field):
    """Only ``USD``; optional on input."""

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kw: Any) -> Any:
        if value != "USD":
            raise fail("INVALID_CURRENCY", "only USD is supported", allowed=["USD"])
        return value


class PrefixedId(fields.Field):
    """An id in a body or query: the resource's prefix and ``[A-Za-z0-9_-]{1,64}``."""

    def __init__(self, resource: str, **kwargs: Any) -> None:
        super().__init__(error_messages=_required_messages(), **kwargs)
        self.resource = resource

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kw: Any) -> Any:
        if not isinstance(value, str):
            raise fail("INVALID_TYPE", "must be a string")
        if not ids.is_valid(self.resource, value):
            prefix = ids.PREFIXES[self.resource]
            raise fail("INVALID_ID_PREFIX", f"must be an id starting with {prefix}", expectedPrefix=prefix)
        return value


class StrictInt(fields.Field):
    """A JSON integer (not a string, not a boolean) within bounds."""

    def __init__(self, *, minimum: int | None = None, maximum: int | None = None, **kwargs: Any) -> None:
        super().__init__(error_messages=_required_messages(), **kwargs)
        self.minimum, self.maximum = minimum, maximum

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kw: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail("INVALID_TYPE", "must be an integer")
        if (self.minimum is not None and value < self.minimum) or (
                self.maximum is not None and value > self.maximum):
            raise fail("AMOUNT_OUT_OF_RANGE", f"must be between {self.minimum} and {self.maximum}",
                       min=self.minimum, max=self.maximum)
        return value


class JsonObject(fields.Field):
    """A JSON object whose serialised size stays under ``max_bytes``."""

    def __init__(self, *, max_bytes: int = 8192, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_bytes = max_bytes

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kw: Any) -> Any:
        if not isinstance(value, dict):
            raise fail("INVALID_TYPE", "must be an object")
        if len(json.dumps(value, separators=(",", ":"))) > self.max_bytes:
            raise fail("TOO_LONG", f"must serialise to at most {self.max_bytes} bytes", max=self.max_bytes)
        return value


class Scopes(fields.Field):
    """A non-empty list of distinct scope names."""

    def __init__(self, allowed: Iterable[str], **kwargs: Any) -> None:
        super().__init__(error_messages=_required_messages(), **kwargs)
        self.allowed = list(allowed)

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kw: Any) -> Any:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise fail("INVALID_TYPE", "must be an array of strings")
        if not value:
            raise fail("TOO_SHORT", "must name at least one scope", min=1)
        unknown = [v for v in value if v not in self.allowed]
        if unknown:
            raise fail("INVALID_SCOPE", f"unknown scope {unknown[0]!r}", allowed=self.allowed)
        if len(set(value)) != len(value):
            raise fail("INVALID_FORMAT", "scopes must not repeat")
        return value
