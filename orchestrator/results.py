"""What a command handler returns: the HTTP outcome the waiting request will render."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Result:
    """``status`` is 200 or 201; ``resource``/``id`` name what to render; ``data`` holds extra fields."""

    status: int
    resource: str
    id: str
    data: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "resource": self.resource, "id": self.id, "data": self.data}

    @classmethod
    def from_dict(cls, stored: dict[str, Any]) -> Result:
        return cls(stored["status"], stored["resource"], stored["id"], stored.get("data") or {})
