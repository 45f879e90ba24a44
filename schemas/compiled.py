"""Schemas compiled for dumping many rows: each schema's output written out as one generated function.

``Schema.dump`` walks marshmallow's per-field machinery (the accessor, the ``missing`` checks, the
processors) for every field of every row; a page of twenty orders spent a third of its CPU there
(py-spy, issue 16). The compiled dump reads the same attribute and calls the same field's own
``_serialize``, so the schema stays the one description of the output (the OpenAPI document comes from
it), and ``tests/schemas/test_compiled.py`` checks that both dump alike. It is generated source, one dict
display per schema (as ``dataclasses`` writes ``__init__``): a loop over the fields cost a tuple unpack,
two tests and a call per field, and after that a page's rendering was still most of its web CPU. The
fields whose ``_serialize`` is known here (a plain ``String``, ``Time``, ``Amount``) are written inline,
and a ``Method`` field calls its schema's bound method, as its ``_serialize`` does.

``mapping=True`` reads ``obj[attribute]`` instead of ``obj.attribute``: a result row rendered as it
comes, without building a domain object first. A schema with dump processors, or an object lacking an
attribute (marshmallow would leave the key out), takes ``Schema.dump`` itself.
"""

from __future__ import annotations

import keyword
from collections.abc import Callable
from typing import Any

from marshmallow import Schema, fields

from orchestrator.amounts import format_amount
from orchestrator.events import iso
from schemas.common import Time
from schemas.fields import Amount

Dump = Callable[[Any], dict[str, Any]]


def dumper(schema: Schema, *, mapping: bool = False) -> Dump:
    """A function that dumps one object as ``schema.dump`` does, faster (see the module's docstring)."""
    if schema._hooks.get("pre_dump") or schema._hooks.get("post_dump") or schema.many:  # type: ignore[attr-defined]
        return schema.dump  # type: ignore[return-value]
    env: dict[str, Any] = {"iso": iso, "format_amount": format_amount, "fallback": schema.dump}
    items: list[str] = []
    for i, (name, field) in enumerate(schema.dump_fields.items()):
        attribute = field.attribute or name
        if field._CHECK_ATTRIBUTE and field.dump_default is not fields.missing_:  # marshmallow's defaults rules
            return schema.dump  # type: ignore[return-value]
        env[f"s{i}"] = field._serialize
        if type(field) is fields.Method and field._serialize_method is not None:  # type: ignore[attr-defined]
            env[f"s{i}"] = field._serialize_method  # type: ignore[attr-defined]  # the bound method
            items.append(f"{field.data_key or name!r}: s{i}(obj)")
            continue
        if not field._CHECK_ATTRIBUTE:  # Constant, a Method without one: the field works from the object alone
            items.append(f"{field.data_key or name!r}: s{i}(None, {attribute!r}, obj)")
            continue
        if mapping:
            read = f"obj[{attribute!r}]"
        elif all(part.isidentifier() and not keyword.iskeyword(part) for part in attribute.split(".")):
            read = f"obj.{attribute}"
        else:  # an attribute that no Python expression names
            return schema.dump  # type: ignore[return-value]
        kind = type(field)
        if kind is fields.String:  # a str or None passes unchanged (String's _serialize would copy it)
            value = f"v if (v := {read}) is None or type(v) is str else s{i}(v, {attribute!r}, obj)"
        elif kind is Time:
            value = f"None if (v := {read}) is None else iso(v)"
        elif kind is Amount:
            value = f"None if (v := {read}) is None else format_amount(v)"
        else:
            value = f"s{i}({read}, {attribute!r}, obj)"
        items.append(f"{field.data_key or name!r}: ({value})")
    source = ("def dump(obj):\n"
              "    try:\n"
              "        return {" + ",\n                ".join(items) + "}\n"
              "    except (AttributeError, KeyError):\n"
              "        return fallback(obj)\n")
    exec(compile(source, f"<dump {type(schema).__name__}{' mapping' if mapping else ''}>", "exec"), env)  # noqa: S102 - our own schema's names
    dump: Dump = env["dump"]
    return dump
