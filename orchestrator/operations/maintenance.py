"""Maintenance mode (spec api.md §1.13, §3.4): a durable switch that refuses writes while on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orchestrator.db import maintenance as maintenance_db
from orchestrator.payloads import Payload
from orchestrator.results import Result
from orchestrator.unit_of_work import UnitOfWork

DEFAULT_MESSAGE = "System maintenance in progress"
#: Notified on every toggle so each web process drops its cached switch at once.
CHANGED_CHANNEL = "maintenance"


@dataclass(frozen=True)
class EnableMaintenance(Payload):
    """``POST /admin/maintenance/enable``."""

    message: str | None = None


def enable(uow: UnitOfWork, command: EnableMaintenance) -> Result:
    message = command.message or DEFAULT_MESSAGE
    before = _state(uow)
    maintenance_db.set_enabled(uow.conn, message=message, enabled_by=uow.context.actor_id or "master")
    uow.notify(CHANGED_CHANNEL, "enabled")
    _audit(uow, "maintenance.enabled", before, {"enabled": True, "message": message})
    return Result(200, "maintenance", "1")


@dataclass(frozen=True)
class DisableMaintenance(Payload):
    """``POST /admin/maintenance/disable``."""


def disable(uow: UnitOfWork, command: DisableMaintenance) -> Result:
    before = _state(uow)
    if maintenance_db.set_disabled(uow.conn):
        _audit(uow, "maintenance.disabled", before, {"enabled": False, "message": None})
        uow.notify(CHANGED_CHANNEL, "disabled")
    return Result(200, "maintenance", "1")


def _state(uow: UnitOfWork) -> dict[str, Any]:
    row = uow.conn.execute(maintenance_db.current()).one()
    return {"enabled": row.enabled, "message": row.message}


def _audit(uow: UnitOfWork, action: str, before: dict[str, Any], after: dict[str, Any]) -> None:
    uow.audit(action, "Maintenance", None, before=before, after=after)
