"""The base schema (unknown fields refused, camelCase with snake_case aliases) and the one function that
turns marshmallow's errors into the spec's ``VALIDATION_ERROR`` details."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from marshmallow import RAISE, Schema, ValidationError, pre_load

from orchestrator.errors import ValidationFailed


class Problem(str):
    """A validation message that carries the spec's field code (and extras such as ``max``)."""

    code: str
    extra: dict[str, Any]

    def __new__(cls, code: str, message: str, **extra: Any) -> Problem:
        value = super().__new__(cls, message)
        value.code, value.extra = code, extra
        return value


#: marshmallow's own messages and the field codes they mean (errors.md §3).
_BUILTIN = {
    "Missing data for required field.": ("MISSING_REQUIRED_FIELD", "required"),
    "Field may not be null.": ("MISSING_REQUIRED_FIELD", "required"),
    "Unknown field.": ("UNKNOWN_FIELD", "unknown field"),
    "Not a valid string.": ("INVALID_TYPE", "must be a string"),
    "Not a valid integer.": ("INVALID_TYPE", "must be an integer"),
    "Not a valid boolean.": ("INVALID_TYPE", "must be a boolean"),
    "Not a valid list.": ("INVALID_TYPE", "must be an array"),
    "Not a valid mapping type.": ("INVALID_TYPE", "must be an object"),
    "Invalid input type.": ("INVALID_TYPE", "must be an object"),
    "Not a valid email address.": ("INVALID_FORMAT", "must be a valid e-mail address"),
}


class BaseSchema(Schema):
    """Unknown keys are refused; ``aliases`` maps accepted snake_case spellings to the camelCase name."""

    aliases: ClassVar[Mapping[str, str]] = {}

    class Meta:
        unknown = RAISE

    @pre_load
    def _resolve_aliases(self, data: Any, **_: Any) -> Any:
        if not isinstance(data, dict) or not self.aliases:
            return data
        data = dict(data)
        conflicts = {}
        for alias, name in self.aliases.items():
            if alias not in data:
                continue
            value = data.pop(alias)
            if name in data and data[name] != value:
                conflicts[alias] = [Problem("ALIAS_CONFLICT", f"conflicts with {name}")]
            data.setdefault(name, value)
        if conflicts:
            raise ValidationError(conflicts)
        return data


class NoBody(BaseSchema):
    """Requests that take no fields: an empty body or ``{}``, anything else is an unknown field."""


#: One instance per schema class ``load`` was given: a schema deep-copies its declared fields when it is
#: built, 3 % of a web process taking credits when each request built its own (issue 16 profile); loading
#: keeps no state on the instance, so one serves every request.
_INSTANCES: dict[type[Schema], Schema] = {}


def load(schema: Schema | type[Schema], data: Any) -> dict[str, Any]:
    """Validate ``data``; raise ``ValidationFailed`` listing every failing field with its code. A schema
    class is loaded with the one instance kept for it."""
    if isinstance(schema, type):
        schema = _INSTANCES.get(schema) or _INSTANCES.setdefault(schema, schema())
    try:
        return schema.load(data if data is not None else {})
    except ValidationError as error:
        raise ValidationFailed(details={"fields": fields_of(error.messages)}) from None


def fields_of(messages: Any, path: str = "") -> list[dict[str, Any]]:
    """Flatten marshmallow's nested error messages into ``[{field, code, message, …}]``."""
    if isinstance(messages, dict):
        out = []
        for key, value in messages.items():
            if key == "_schema":
                name = path or "body"
            elif isinstance(key, int):
                name = f"{path}[{key}]"
            else:
                name = f"{path}.{key}" if path else str(key)
            out.extend(fields_of(value, name))
        return out
    if isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        return [_field(path or "body", m) for m in messages[:1]]
    if isinstance(messages, list):
        return [item for m in messages for item in fields_of(m, path)]
    return [_field(path or "body", str(messages))]


def _field(name: str, message: str) -> dict[str, Any]:
    if isinstance(message, Problem):
        return {"field": name, "code": message.code, "message": str(message), **message.extra}
    code, text = _BUILTIN.get(message, ("INVALID_FORMAT", message))
    return {"field": name, "code": code, "message": text}
