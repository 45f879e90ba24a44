"""What a cancel at AirTM comes to (``topups.CancelAnswer``, DESIGN decision 3): canceled only when AirTM
says so; a pay-in that moved on meanwhile is refused with its new state; anything else is AirTM's failure.
The calls themselves are exercised against the sandbox's AirTM in ``tests/airtm``."""

from __future__ import annotations

from orchestrator.airtm import topups
from orchestrator.errors import InvalidStateTransition, ProviderFailure


def test_a_canceled_pay_in_cancels_the_top_up() -> None:
    answer = topups.CancelAnswer("topup_1", {"id": "p1", "status": "CANCELED"}, None)
    assert answer.canceled
    assert not answer.moved_on


def test_a_pay_in_that_moved_on_refuses_the_cancel_with_its_new_state() -> None:
    answer = topups.CancelAnswer("topup_1", {"id": "p1", "status": "processing"}, "already processing")
    assert answer.moved_on
    assert not answer.canceled
    refusal = answer.refusal()
    assert isinstance(refusal, InvalidStateTransition)
    assert refusal.details["currentState"] == "TOPUP_PROCESSING"
    assert refusal.details["allowedStates"] == ["TOPUP_AWAITING_USER_CONFIRMATION"]


def test_a_pay_in_still_open_or_unknown_is_airtm_s_failure_with_its_reason() -> None:
    for record, problem in (({"status": "CREATED"}, None), (None, "timeout"), ({"status": "???"}, "odd")):
        answer = topups.CancelAnswer("topup_1", record, problem)
        assert not answer.canceled
        assert not answer.moved_on
        refusal = answer.refusal()
        assert isinstance(refusal, ProviderFailure)
        assert refusal.details == {"provider": "airtm"}
        assert (problem or "the pay-in is still open") in refusal.message
