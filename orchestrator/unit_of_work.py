"""One database transaction per state transition, with its outbox events and after-commit messages."""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from orchestrator import audit, events
from orchestrator.db import outbox as outbox_db
from orchestrator.db import session
from orchestrator.errors import InternalError

if TYPE_CHECKING:
    from orchestrator.settings import Settings


@dataclass(frozen=True)
class Message:
    """A message to send once the transaction has committed; names an actor and ids only."""

    actor: str
    args: tuple[str | int, ...] = ()
    delay_ms: int = 0  # a retry that must not run at once (backoff)


@dataclass
class Context:
    """Who caused the change and why: copied into every event's metadata and audit entry."""

    correlation_id: str | None = None
    actor_type: str = "SYSTEM"
    actor_id: str | None = None
    idempotency_key: str | None = None
    command_id: str | None = None
    request_id: str | None = None  # the X-Request-ID of the request behind the change, if any


@dataclass
class UnitOfWork:
    """Collects what one transaction changes; nothing leaves the process before ``commit``.

    Events go to the outbox inside the transaction (so they exist iff the change does); messages for
    other actors are handed out only after the commit, so no actor sees a state that was rolled back.
    """

    engine: session.EngineType
    context: Context = field(default_factory=Context)
    #: The process's settings; None only where no handler needs them (tests of the book alone).
    settings: Settings | None = None
    messages: list[Message] = field(default_factory=list)
    #: The transaction's connection, open between ``__enter__`` and ``__exit__``.
    conn: session.Conn = field(init=False)
    committed: bool = False
    _stack: ExitStack = field(default_factory=ExitStack)

    @property
    def config(self) -> Settings:
        """The settings, for work that cannot be done without them: a unit of work made without any
        reaching such work is a bug of its caller's, said here rather than as an AttributeError on None."""
        if self.settings is None:
            raise InternalError("this unit of work was made without settings")
        return self.settings

    def __enter__(self) -> UnitOfWork:
        self.conn = self._stack.enter_context(session.transaction(self.engine))
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def emit(self, event_type: str, aggregate_id: str, payload: dict[str, Any], *,
             user_id: str | None = None) -> str:
        """Append one domain event (and its audit entry) to this transaction; returns the event id."""
        event = events.build(event_type, aggregate_id, payload, user_id=user_id,
                             correlation_id=self.context.correlation_id, actor_type=self.context.actor_type)
        outbox_db.insert(self.conn, event)
        failed = event_type.endswith("failed")  # order.operation_failed, withdrawal.failed, topup.failed
        error = payload.get("error") if failed and isinstance(payload.get("error"), dict) else None
        self.audit(event_type, event.aggregate_type, aggregate_id, user_id=user_id, after=payload,
                   result="FAILURE" if failed else "SUCCESS", error=error)
        return event.event_id

    def audit(self, action: str, resource_type: str, resource_id: str | None, *, user_id: str | None = None,
              after: dict[str, Any] | None = None, before: dict[str, Any] | None = None,
              result: str = "SUCCESS", error: dict[str, Any] | None = None) -> str:
        """One audit entry in this transaction, with this context's actor and ids; the relay chains it
        after the commit. Returns the entry's ``aud_`` id."""
        ctx = self.context
        entry_id = audit.record(self.conn, action=action, resource_type=resource_type, resource_id=resource_id,
                                user_id=user_id, actor_type=ctx.actor_type, actor_id=ctx.actor_id, after=after,
                                before=before, result=result, error=error, idempotency_key=ctx.idempotency_key,
                                correlation_id=ctx.correlation_id, request_id=ctx.request_id)
        self.after_commit(Message("relay_outbox"))
        return entry_id

    def after_commit(self, message: Message) -> None:
        if message not in self.messages:
            self.messages.append(message)

    def notify(self, channel: str, payload: str) -> None:
        session.notify(self.conn, channel, payload)

    def commit(self) -> None:
        self.conn.commit()
        self.committed = True
