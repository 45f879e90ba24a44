"""A compiled dump (``schemas.compiled.dumper``) renders exactly what ``Schema.dump`` renders."""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from types import SimpleNamespace
from typing import Any

from marshmallow import Schema, fields, post_dump

from orchestrator.db.escrows import Escrow
from orchestrator.db.orders import Milestone, Order
from orchestrator.db.prepared import Row
from schemas.common import Time
from schemas.compiled import dumper
from schemas.fields import Amount
from schemas.orders import ESCROW_OUT, MILESTONE_OUT, ORDER_OUT


def _moment(rng: random.Random) -> datetime:
    return datetime(2026, 1, 1, tzinfo=UTC) + timedelta(microseconds=rng.randrange(10**14))


def _maybe(rng: random.Random, value: Any) -> Any:
    return value if rng.random() < 0.5 else None


def _orders(rng: random.Random) -> Order:
    settled = {"grossAmount": "10.00", "trustlessFee": "0.01", "platformFee": "0.20", "netAmount": "9.79",
               "distributions": [{"role": "seller", "amount": "9.79"}]}
    return Order(f"ord_{rng.randrange(10**9)}", _maybe(rng, "ref-1"), "usr_b", "usr_s",
                 Decimal(rng.randrange(1, 10**7)) / 100, "USD", rng.choice(["ORDER_CREATED", "CLOSED"]),
                 _maybe(rng, "RELEASED"), "A title", _maybe(rng, "words"), _maybe(rng, {"k": [1, "v"]}),
                 _moment(rng), _moment(rng), _maybe(rng, _moment(rng)), _maybe(rng, settled),
                 rng.choice(["WALLET", "TREASURY"]))


def test_orders_escrows_and_milestones_dump_alike() -> None:
    rng = random.Random(16)
    for _ in range(300):
        order = _orders(rng)
        assert dumper(ORDER_OUT)(order) == ORDER_OUT.dump(order)
        assert list(dumper(ORDER_OUT)(order)) == list(ORDER_OUT.dump(order))  # the same key order
        escrow = Escrow("esc_1", order.id, _maybe(rng, "C" + "A" * 55), "FUNDED", order.amount,
                        _maybe(rng, _moment(rng)), _maybe(rng, _moment(rng)), None, _moment(rng), _moment(rng),
                        order.funding_mode)
        assert dumper(ESCROW_OUT)(escrow) == ESCROW_OUT.dump(escrow)
        milestone = Milestone("mil_1", order.id, "m1", "First", order.amount, "PENDING",
                              _maybe(rng, _moment(rng)), _moment(rng))
        assert dumper(MILESTONE_OUT)(milestone) == MILESTONE_OUT.dump(milestone)
        # a result row as it comes (web/render.py renders order reads from their rows)
        for schema, obj in ((ORDER_OUT, order), (ESCROW_OUT, escrow), (MILESTONE_OUT, milestone)):
            row = Row(dataclasses.asdict(obj), extra="a column the schema does not show")
            assert dumper(schema, mapping=True)(row) == schema.dump(obj)
            assert list(dumper(schema, mapping=True)(row)) == list(schema.dump(obj))


class _Colour(StrEnum):
    RED = "RED"


class _EveryFlat(Schema):
    """Every kind of field, each read from a plain name (as a row's keys are column names)."""

    name = fields.String()
    colour = fields.String()  # a StrEnum: String's own conversion, not passed through
    number = fields.String(attribute="count")  # not a str: String's own conversion
    constant = fields.Constant("K")
    method = fields.Method("_twice")
    raw = fields.Raw()
    amount = Amount()
    at = Time()

    def _twice(self, obj: Any) -> Any:
        return obj.count * 2


class _Every(_EveryFlat):
    """The same, and a field read from a dotted attribute under another key."""

    renamed = fields.String(attribute="nested.inner", data_key="renamedKey")


def test_every_kind_of_field_dumps_as_marshmallow_dumps_it() -> None:
    obj = SimpleNamespace(name="n", colour=_Colour.RED, count=3, nested=SimpleNamespace(inner="i"),
                          raw={"a": 1}, amount=Decimal("5.5"), at=datetime(2026, 12, 7, 1, 2, 3, 4567, UTC))
    schema = _Every()
    assert dumper(schema)(obj) == schema.dump(obj)
    assert dumper(schema)(obj)["colour"] == "RED"
    assert type(dumper(schema)(obj)["colour"]) is str


def test_an_object_without_an_attribute_drops_the_key_as_marshmallow_does() -> None:
    obj = SimpleNamespace(name="n", colour="c", count=1, nested=SimpleNamespace(inner="i"), amount=Decimal(1),
                          at=datetime(2026, 1, 1, tzinfo=UTC))  # no ``raw``
    schema = _Every()
    assert "raw" not in schema.dump(obj)
    assert dumper(schema)(obj) == schema.dump(obj)


class _Processed(Schema):
    name = fields.String()

    @post_dump
    def _upper(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        return {"name": data["name"].upper()}


def test_a_schema_with_dump_processors_is_dumped_by_marshmallow() -> None:
    assert dumper(_Processed())(SimpleNamespace(name="x")) == {"name": "X"}


def test_a_mapping_dumps_every_kind_of_field_and_drops_a_missing_key_as_marshmallow_does() -> None:
    schema = _Every()
    row = {"name": "n", "colour": _Colour.RED, "count": 3, "raw": {"a": 1}, "amount": Decimal("5.5"),
           "at": datetime(2026, 12, 7, 1, 2, 3, 4567, UTC)}
    every = _EveryFlat()
    assert dumper(every, mapping=True)(Row(row)) == every.dump(SimpleNamespace(**row))
    del row["raw"]
    assert "raw" not in dumper(every, mapping=True)(Row(row))
    empty = SimpleNamespace(name=None, colour="c", count=1, nested=SimpleNamespace(inner="i"), raw=None,
                            amount=None, at=None)
    assert dumper(schema)(empty) == schema.dump(empty)
