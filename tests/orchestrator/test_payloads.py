"""Typed command payloads (issue 18): the stored camelCase form read into each kind's frozen dataclass."""

from __future__ import annotations

import dataclasses

import pytest

from orchestrator import commands
from orchestrator.escrow.disputes import ResolveDispute
from orchestrator.escrow.orders import CreateOrder
from orchestrator.payloads import Payload, wire_name


def test_wire_names_are_the_apis_camel_case() -> None:
    assert [wire_name(n) for n in ("id", "order_id", "client_order_ref", "airtm_user_id")] == [
        "id", "orderId", "clientOrderRef", "airtmUserId"]


def test_a_stored_payload_is_read_into_its_kind_and_written_back_the_same() -> None:
    stored = {"buyerId": "usr_b", "sellerId": "usr_s", "amount": "10.00", "title": "Logo", "currency": "USD",
              "description": None, "clientOrderRef": "ref-1", "milestones": [], "metadata": {"k": 1}}
    order = CreateOrder.from_payload(stored, strict=True)
    assert (order.buyer_id, order.client_order_ref, order.metadata) == ("usr_b", "ref-1", {"k": 1})
    assert order.payload() == stored
    with pytest.raises(dataclasses.FrozenInstanceError):
        order.amount = "11.00"  # type: ignore[misc]


def test_the_web_tiers_check_refuses_a_field_the_kind_lacks_and_a_missing_one() -> None:
    with pytest.raises(TypeError, match="no field releaseAmonut"):
        ResolveDispute.from_payload({"disputeId": "dsp_1", "decision": "SPLIT", "releaseAmonut": "1.00"},
                                    strict=True)
    with pytest.raises(TypeError, match="decision"):
        commands.check_payload(commands.Kind.RESOLVE_DISPUTE, {"disputeId": "dsp_1"})
    # a worker reading a row another version wrote ignores what it does not know
    read = ResolveDispute.from_payload({"disputeId": "dsp_1", "decision": "FULL_REFUND", "later": True})
    assert read == ResolveDispute("dsp_1", "FULL_REFUND")


def test_every_command_kind_has_a_typed_route() -> None:
    assert set(commands.HANDLERS) == set(commands.Kind)
    for kind, route in commands.HANDLERS.items():
        assert issubclass(route.payload, Payload), kind
        assert dataclasses.is_dataclass(route.payload), kind
        assert route.payload.__dataclass_params__.frozen, kind  # type: ignore[attr-defined]
