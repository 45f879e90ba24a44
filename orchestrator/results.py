"""What a command handler returns: the HTTP outcome the waiting request will render."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Result:
    """``status`` is 200 or 201; ``resource``/``id`` name what to render; ``data`` holds extra fields.

    ``view``, when given, is the resource as the command's own transaction left it (plain JSON values:
    amounts as strings, times in ISO 8601), for the renderer to show without reading it again: it
    travels in the command's result and its notification (issue 16: one read fewer per waited command).
    """

    status: int
    resource: str
    id: str
    data: dict[str, Any] = field(default_factory=dict)
    view: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        stored = {"status": self.status, "resource": self.resource, "id": self.id, "data": self.data}
        return stored if self.view is None else {**stored, "view": self.view}

    @classmethod
    def from_dict(cls, stored: dict[str, Any]) -> Result:
        return cls(stored["status"], stored["resource"], stored["id"], stored.get("data") or {},
                   stored.get("view"))
