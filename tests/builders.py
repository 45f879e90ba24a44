"""Test state built through the product's own functions (never by inserting rows)."""

from __future__ import annotations

import inspect
import typing
from decimal import Decimal
from typing import Any

from orchestrator.accounts import users
from orchestrator.errors import OrchestratorError
from orchestrator.money import balances
from orchestrator.payloads import Payload
from orchestrator.results import Result
from orchestrator.settings import Settings
from orchestrator.unit_of_work import Context, UnitOfWork
from tests.api import unique


def run(engine: Any, handler: Any, payload: dict[str, Any], *, settings: Settings | None = None) -> Result:
    """Run a command handler in its own unit of work and commit (rolled back if it raises). The payload is
    given as the API sends it and read by the handler's payload type, as a worker reads a stored command.

    With ``settings`` the handler sees them as the product's would (in crypto mode a new user gets a
    sealed wallet); its after-commit messages are not sent, so no chain step runs.
    """
    with UnitOfWork(engine, Context(actor_type="SUPPORT", actor_id="tests"), settings=settings) as uow:
        result = handler(uow, payload_type(handler).from_payload(payload, strict=True))
        uow.commit()
    return result


def payload_type(handler: Any) -> type[Payload]:
    """The payload type a handler takes: its ``command`` parameter's annotation."""
    second = list(inspect.signature(handler).parameters)[1]
    found = typing.get_type_hints(handler).get(second)
    assert isinstance(found, type), f"{handler} takes no typed payload"
    assert issubclass(found, Payload), f"{handler} takes no typed payload"
    return found


def user(engine: Any, *, settings: Settings | None = None) -> str:
    return run(engine, users.create, {"externalUserId": unique("ext")}, settings=settings).id


def adjust(engine: Any, operation: str, user_id: str, amount: Decimal, **extra: Any) -> Result | OrchestratorError:
    """One administrative balance operation; a refused one returns its error instead of raising."""
    payload = {"operation": operation, "userId": user_id, "amount": f"{amount:.2f}", **extra}
    try:
        return run(engine, balances.admin_operation, payload)
    except OrchestratorError as error:
        return error
