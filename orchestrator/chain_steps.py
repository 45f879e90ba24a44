"""Chain steps: each ledger transaction built, signed, persisted, submitted and confirmed exactly once.

The rules of DESIGN "The chain" and providers.md §1.8/§2.8:

- the signed envelope and its hash are committed *before* the first submission;
- after an unclear outcome the hash is looked up, and the *same* envelope is resubmitted while its
  time bounds are open; a new envelope is built only once the old one is proven dead (hash absent
  and either its time bound has passed or the source account's sequence has reached it);
- transactions of one source account are built and submitted one at a time (an advisory lock);
- a final failure moves the step (and, through its kind's handler, its subject) to a visible
  failed state with an event; nothing is left silently stuck;
- a provider's permanent refusal to build (a wrong API key, a request it calls invalid) is final at
  once, and waiting for a rate budget is not an attempt (providers.md §1.11);
- an envelope without an upper time bound is dead only once its source's sequence has passed it, so
  before such a step is rebuilt its sequence number is consumed by a ``bump_sequence`` of our own
  signed by the same source (DESIGN decision 22).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from stellar_sdk import Account, Keypair, TransactionBuilder, TransactionEnvelope
from stellar_sdk import xdr as stellar_xdr

from orchestrator import crypto, logs
from orchestrator.db import chain_steps as steps_db
from orchestrator.db import commands as commands_db
from orchestrator.db import session
from orchestrator.db import wallets as wallets_db
from orchestrator.db.chain_steps import Step
from orchestrator.errors import OrchestratorError
from orchestrator.providers.horizon import FINAL_TX_CODES, AccountState, Horizon, Submission
from orchestrator.settings import Settings
from orchestrator.unit_of_work import Context, Message, UnitOfWork

log = logging.getLogger(__name__)

#: After this many attempts an unfinished step fails visibly instead of retrying forever.
MAX_ATTEMPTS = 25
#: A ledger must have closed after ``max_time`` before an absent envelope counts as dead.
CLOSE_MARGIN = timedelta(seconds=10)
#: Transaction codes that leave the envelope unapplied and worth building again.
REBUILD_TX_CODES = frozenset({"tx_bad_seq", "tx_too_late", "tx_insufficient_fee", "tx_no_source_account"})
RUN_ACTOR = "run_chain_step"
#: Horizon's names for an ``invoke_host_function`` result (stellar/go services/horizon/internal/codes/main.go,
#: ``stringForInvokeHostFunctionResult``): the only operation a Trustless Work envelope holds.
_INVOKE_CODES = {
    "INVOKE_HOST_FUNCTION_SUCCESS": "op_success",
    "INVOKE_HOST_FUNCTION_MALFORMED": "op_malformed",
    "INVOKE_HOST_FUNCTION_TRAPPED": "function_trapped",
    "INVOKE_HOST_FUNCTION_RESOURCE_LIMIT_EXCEEDED": "resource_limit_exceeded",
    "INVOKE_HOST_FUNCTION_ENTRY_ARCHIVED": "entry_archived",
    "INVOKE_HOST_FUNCTION_INSUFFICIENT_REFUNDABLE_FEE": "insufficient_refundable_fee",
}


class Status(StrEnum):
    PENDING = "PENDING"
    SIGNED = "SIGNED"
    CONFIRMED = "CONFIRMED"
    FAILED = "FAILED"


OPEN = (Status.PENDING, Status.SIGNED)


class StepNotFinished(Exception):
    """Raised when a step must be tried again later (the queue retries it with backoff)."""


@dataclass(frozen=True)
class ChainContext:
    """What a chain step needs: the database, settings, Horizon and the wallet keyring."""

    engine: Any
    settings: Settings
    horizon: Horizon
    keyring: crypto.Keyring
    trustless: Any = None  # providers.trustless.TrustlessClient, for the escrow steps
    #: Connections that only hold source-account locks, apart from the pool the steps' transactions
    #: use: a thread holding a lock must never wait for a connection another lock holder has taken.
    lock_engine: Any = None


@dataclass(frozen=True)
class StepKind:
    """How one kind of step is built and what its outcome does to its subject.

    ``build`` returns an unsigned envelope (or ``None`` for an off-ledger action run by ``act``);
    ``confirmed`` and ``failed`` apply the outcome to the subject in the step's own transaction.
    ``op_outcome`` may turn a failed operation code into ``"applied"`` (e.g. an account that someone
    else already created) or ``"retry"``.
    """

    build: Callable[[ChainContext, Step, AccountState | None], TransactionEnvelope] | None
    confirmed: Callable[[UnitOfWork, Step, dict[str, Any] | None], None]
    failed: Callable[[UnitOfWork, Step, str], None]
    act: Callable[[ChainContext, Step], dict[str, Any] | None] | None = None
    op_outcome: Callable[[list[str]], str] = lambda _codes: "failed"
    #: After the contract refused a call (``function_trapped``), whether the step's effect is in
    #: fact already there (an earlier envelope of the same step landed): then it counts as done.
    already_applied: Callable[[ChainContext, Step], bool] | None = None
    #: How a signed envelope is sent (default: Horizon); the ledger's record of the hash decides anyway.
    submit: Callable[[ChainContext, Step, str], Submission] | None = None
    #: Run once the ledger shows the step's envelope applied, before confirming (e.g. telling TW's
    #: database); may raise ``StepNotFinished`` to be run again.
    landed: Callable[[ChainContext, Step, Submission], None] | None = None
    #: Facts read from the signed envelope and stored with it before submission (a deploy's contract id).
    derive: Callable[[ChainContext, TransactionEnvelope], dict[str, Any]] | None = None


class _Final(Exception):
    """Raised when building met a permanent refusal: the step fails now, with the provider's message."""


class _AlreadyApplied(Exception):
    """Raised when a provider refused to build because the step's effect is already on the contract."""


def create(uow: UnitOfWork, *, step_id: str, kind: str, subject_type: str, subject_id: str, source: str,
           signers: list[str], params: dict[str, Any] | None = None, delay_ms: int = 0) -> None:
    """Record a step in the caller's transaction and have it run once that transaction commits
    (``delay_ms`` later, for a step that retries work that just failed: it runs no earlier than that,
    whoever sends it)."""
    not_before = datetime.now(UTC) + timedelta(milliseconds=delay_ms) if delay_ms else None
    steps_db.create(uow.conn, id=step_id, kind=kind, subject_type=subject_type, subject_id=subject_id,
                    source_account=source, signers=signers, params=params or {}, not_before=not_before)
    uow.after_commit(Message(RUN_ACTOR, (step_id,), delay_ms))


def finish_flow(uow: UnitOfWork, step: Step, failed: dict[str, Any] | None = None) -> None:
    """End the flow of the command that started this step's work, and wake its waiting request."""
    command_id = step.params.get("flow")
    if command_id:
        commands_db.finish_flow(uow.conn, command_id, failed=failed)
        commands_db.notify_done(uow.conn, command_id)


def run(ctx: ChainContext, step_id: str, kinds: Mapping[str, StepKind]) -> list[Message]:
    """Move one step as far as it can go now; raises ``StepNotFinished`` to be tried again later.

    ``kinds`` names every step kind (``chain_kinds.ALL``): the aggregates own them, and the engine
    imports none of the aggregates, which all create steps.

    Off-ledger actions (friendbot, indexer look-ups, reading a payout) take no account lock: they
    use no sequence number, and their confirmation is decided once under the step's row lock.
    """
    signing = [name for name, kind in kinds.items() if kind.build is not None]
    with steps_db.source_locked(ctx.lock_engine or ctx.engine, step_id, signing) as step:
        if step is None or step.status not in OPEN:
            return []
        logs.bind(step_id=step.id, step_kind=step.kind, command_id=step.params.get("flow"))
        if step.not_before is not None and (wait := step.not_before - datetime.now(UTC)) > timedelta(0):
            return [Message(RUN_ACTOR, (step_id,), int(wait.total_seconds() * 1000) + 1)]  # sent early: not yet
        kind = kinds[step.kind]
        outcome = _sign_and_submit(ctx, step, kind) if kind.build is not None else None
    if outcome is None:  # an off-ledger action: it took no lock, and runs after that transaction ended
        if step.attempts >= MAX_ATTEMPTS:
            return _fail(ctx, step, kind, f"gave up after {step.attempts} attempts: {step.last_error}")
        return _act(ctx, step, kind)
    if isinstance(outcome, list):
        return outcome
    # applied: its sequence number is spent, so the account's next step need not wait for the book to
    # follow (confirming is idempotent under the step's row lock)
    step, submission = outcome
    if kind.landed is not None:
        kind.landed(ctx, step, submission)
    return _confirm(ctx, step, kind, submission.record)


def _sign_and_submit(ctx: ChainContext, step: Step, kind: StepKind) -> list[Message] | tuple[Step, Submission]:
    """Under the source account's lock: settle a signed envelope or build, sign, persist and submit one.
    Returns the step's messages when it ended or must wait, or the step as signed with its applied
    submission (the lock is released before TW is told and the book follows)."""
    submission = _resolve_signed(ctx, step, kind) if step.status == Status.SIGNED else None
    if submission is None:
        if step.attempts >= MAX_ATTEMPTS:  # never while a signed envelope of it may still land
            return _fail(ctx, step, kind, f"gave up after {step.attempts} attempts: {step.last_error}")
        try:
            step, submission = _build_sign_submit(ctx, step, kind)
        except _Final as final:
            return _fail(ctx, step, kind, str(final))
        except _AlreadyApplied:
            return _confirm(ctx, step, kind, None)
    if submission.outcome != "applied":
        return _settle(ctx, step, kind, submission)
    return step, submission


def _act(ctx: ChainContext, step: Step, kind: StepKind) -> list[Message]:
    try:
        assert kind.act is not None
        outcome = kind.act(ctx, step)
    except Exception as error:
        _attempt(ctx, step, f"{type(error).__name__}: {error}")
        raise StepNotFinished(str(error)) from error
    return _confirm(ctx, step, kind, outcome)


def _resolve_signed(ctx: ChainContext, step: Step, kind: StepKind) -> Submission | None:
    """A signed envelope may already have landed: look it up; resubmit it while it can still land."""
    assert step.tx_hash
    assert step.signed_xdr
    assert step.sequence is not None
    record = ctx.horizon.transaction(step.tx_hash)
    if record is not None:
        if record.get("successful"):
            return Submission("applied", record=record)
        return Submission("failed", record=record, tx_code="tx_failed", op_codes=failed_op_codes(record),
                          error="failed in ledger history")
    if not _dead(ctx, step):
        return _submit(ctx, step, kind, step.signed_xdr)
    with session.transaction(ctx.engine) as conn:
        steps_db.discard_envelope(conn, step.id, "envelope proven dead; building a new one")
        conn.commit()
    return None


def failed_op_codes(record: dict[str, Any]) -> list[str]:
    """The operation codes of a transaction the ledger applied as failed, read from its record's
    ``result_xdr``: Horizon's submit answer names them (``extras.result_codes.operations``), but a record
    found by its hash, or a transaction relayed by TW's T8, carries only the result. Only contract calls
    are named (empty otherwise): a wrong name would be worse than none."""
    try:
        result = stellar_xdr.TransactionResult.from_xdr(str(record.get("result_xdr") or ""))
        operations = result.result.results or []
    except Exception:  # no result to read: the codes stay unknown
        return []
    codes = []
    for operation in operations:
        invoked = operation.tr.invoke_host_function_result if operation.tr is not None else None
        if invoked is not None and invoked.code.name in _INVOKE_CODES:
            codes.append(_INVOKE_CODES[invoked.code.name])
    return codes


def _submit(ctx: ChainContext, step: Step, kind: StepKind, signed_xdr: str) -> Submission:
    return kind.submit(ctx, step, signed_xdr) if kind.submit is not None else ctx.horizon.submit(signed_xdr)


def _dead(ctx: ChainContext, step: Step) -> bool:
    """Absent and unable to land: a ledger closed past ``max_time`` (bounded envelopes only), or the
    source's sequence reached the envelope's (the only proof for an unbounded one: decision 22)."""
    assert step.sequence is not None
    if step.max_time is not None and datetime.now(UTC) > step.max_time + CLOSE_MARGIN:
        return True
    account = ctx.horizon.account(step.source_account)
    return account is not None and account.sequence >= step.sequence


def _build_sign_submit(ctx: ChainContext, step: Step, kind: StepKind) -> tuple[Step, Submission]:
    """The step as its signed envelope left it (persisted before it was submitted), and the outcome."""
    assert kind.build is not None
    account = ctx.horizon.account(step.source_account)
    try:
        envelope = kind.build(ctx, step, account)
    except OrchestratorError as error:
        reason = f"building failed: {error.code}: {error.message}"
        if error.code == "PROVIDER_RATE_LIMITED":  # waiting out a shared budget is not an attempt
            log.info("Chain step %s (%s) waits for the provider's rate budget.", step.id, step.kind)
            raise StepNotFinished(error.message) from error
        if getattr(error, "rule", None) is not None and getattr(error, "permanent", True) is False:
            # a contract rule refused the build: done already (the contract shows it) or failed finally
            if kind.already_applied is not None and kind.already_applied(ctx, step):
                raise _AlreadyApplied() from error
            raise _Final(f"refused by the contract: {error.message}") from error
        if getattr(error, "permanent", False):
            raise _Final(reason) from error
        _attempt(ctx, step, reason)  # a provider failing to build (5xx, timeout): counted, retried
        raise StepNotFinished(error.message) from error
    unsigned = envelope.to_xdr()
    extra = kind.derive(ctx, envelope) if kind.derive is not None else {}
    with session.transaction(ctx.engine) as conn:
        for signer in step.signers:
            envelope.sign(signing_keypair(conn, ctx.keyring, signer))
        bounds = envelope.transaction.preconditions.time_bounds if envelope.transaction.preconditions else None
        max_time = datetime.fromtimestamp(bounds.max_time, UTC) if bounds is not None and bounds.max_time else None
        signed_xdr = envelope.to_xdr()
        signed = steps_db.set_signed(conn, step.id, unsigned_xdr=unsigned, signed_xdr=signed_xdr,
                                     tx_hash=envelope.hash_hex(), sequence=envelope.transaction.sequence,
                                     max_time=max_time, params=extra or None)
        conn.commit()
    return signed, _submit(ctx, signed, kind, signed_xdr)


def signing_keypair(conn: Any, keyring: crypto.Keyring, public_key: str) -> Keypair:
    """Decrypt a wallet's secret for one signature; it is never logged, stored or returned elsewhere."""
    sealed = wallets_db.sealed(conn, public_key)
    if sealed is None:
        raise RuntimeError(f"no custodial wallet for signer {public_key}")
    secret = crypto.open_sealed(keyring, crypto.Sealed(*sealed), public_key=public_key)
    return Keypair.from_secret(secret)


def _settle(ctx: ChainContext, step: Step, kind: StepKind, submission: Submission) -> list[Message]:
    if submission.outcome == "applied":
        return _confirm(ctx, step, kind, submission.record)
    if submission.outcome == "ambiguous":
        _attempt(ctx, step, f"unclear outcome ({submission.error}); will look the hash up")
        raise StepNotFinished(submission.error or "ambiguous")
    code = submission.tx_code or "unknown"
    if code == "tx_failed":
        verdict = kind.op_outcome(submission.op_codes)
        if verdict == "failed" and kind.already_applied is not None and kind.already_applied(ctx, step):
            verdict = "applied"  # providers.md §2.9: re-read the contract before calling it a failure
        if verdict == "applied":
            return _confirm(ctx, step, kind, submission.record)
        if verdict == "retry":
            return _rebuild_later(ctx, step, f"operations failed {submission.op_codes}; retrying")
        return _fail(ctx, step, kind, f"operations failed: {', '.join(submission.op_codes) or code}")
    if code in FINAL_TX_CODES:
        return _fail(ctx, step, kind, f"refused by the network: {code}")
    if code == "tx_bad_seq" and step.tx_hash is None:
        step = _reloaded(ctx, step)
    if code == "tx_bad_seq" and step.tx_hash and (record := ctx.horizon.transaction(step.tx_hash)):
        # Horizon has answered bad_seq for an envelope it had just applied: the ledger decides
        return _settle(ctx, step, kind, Submission("applied" if record.get("successful") else "failed",
                                                   record=record, tx_code=None if record.get("successful")
                                                   else "tx_failed"))
    if code in REBUILD_TX_CODES or code == "tx_too_early":
        return _rebuild_later(ctx, step, f"{code}; building again")
    _attempt(ctx, step, f"{code}; resubmitting the same envelope")
    raise StepNotFinished(code)


def _reloaded(ctx: ChainContext, step: Step) -> Step:
    with session.reading(ctx.engine) as conn:
        return steps_db.get(conn, step.id) or step


def _rebuild_later(ctx: ChainContext, step: Step, reason: str) -> list[Message]:
    """The envelope did not apply and cannot (it was refused whole): drop it, build anew next time.

    An unbounded envelope refused now could still land later (someone else holds it: TW's helper saw
    it), so its sequence number is consumed first and the envelope is dropped only once that landed.
    """
    step = _reloaded(ctx, step)
    if step.status == Status.SIGNED and step.max_time is None and step.sequence is not None:
        account = ctx.horizon.account(step.source_account)
        if account is not None and account.sequence < step.sequence:
            _consume_sequence(ctx, step, account)
            note = f"{reason}; consuming sequence {step.sequence} with bump_sequence before rebuilding"
            _attempt(ctx, step, note)
            raise StepNotFinished(note)
    with session.transaction(ctx.engine) as conn:
        steps_db.discard_envelope(conn, step.id, reason)
        steps_db.record_attempt(conn, step.id, reason)
        conn.commit()
    raise StepNotFinished(reason)


def _consume_sequence(ctx: ChainContext, step: Step, account: AccountState) -> None:
    """Submit our own no-op ``bump_sequence`` to the unbounded envelope's sequence, signed by the same
    source: once it lands the envelope can never apply (decision 22). Losing it is harmless: the next
    run reads the account's sequence again and sends another while it is short."""
    assert step.sequence is not None
    fee = min(ctx.horizon.base_fee(), ctx.settings.stellar_max_fee_stroops)
    bump = (TransactionBuilder(Account(account.account_id, account.sequence), ctx.settings.network_passphrase,
                               base_fee=fee).set_timeout(60).append_bump_sequence_op(step.sequence).build())
    with session.transaction(ctx.engine) as conn:
        bump.sign(signing_keypair(conn, ctx.keyring, step.source_account))
    outcome = ctx.horizon.submit(bump.to_xdr())
    log.warning("Chain step %s: bump_sequence to %s for its unbounded envelope: %s %s", step.id, step.sequence,
                outcome.outcome, outcome.tx_code or "")


def _attempt(ctx: ChainContext, step: Step, error: str) -> None:
    log.warning("Chain step %s (%s) not finished: %s", step.id, step.kind, error)
    with session.transaction(ctx.engine) as conn:
        steps_db.record_attempt(conn, step.id, error)
        conn.commit()


def _confirm(ctx: ChainContext, step: Step, kind: StepKind, record: dict[str, Any] | None) -> list[Message]:
    if record is None:
        result: dict[str, Any] = {}
    elif "hash" in record:  # a ledger transaction: keep its identity, not the whole record
        result = {"hash": record.get("hash"), "ledger": record.get("ledger")}
    else:  # an off-ledger action's own outcome
        result = record
    with UnitOfWork(ctx.engine, Context(actor_type="SYSTEM", correlation_id=step.id), settings=ctx.settings) as uow:
        locked = steps_db.get(uow.conn, step.id, for_update=True)
        if locked is None or locked.status not in OPEN:
            return []
        steps_db.finish(uow.conn, step.id, status=Status.CONFIRMED, result=result)
        kind.confirmed(uow, locked, record)
        uow.commit()
    return list(uow.messages)


def _fail(ctx: ChainContext, step: Step, kind: StepKind, reason: str) -> list[Message]:
    log.error("Chain step %s (%s) failed finally: %s", step.id, step.kind, reason)
    with UnitOfWork(ctx.engine, Context(actor_type="SYSTEM", correlation_id=step.id), settings=ctx.settings) as uow:
        locked = steps_db.get(uow.conn, step.id, for_update=True)
        if locked is None or locked.status not in OPEN:
            return []
        steps_db.finish(uow.conn, step.id, status=Status.FAILED, result=None, error=reason)
        kind.failed(uow, locked, reason)
        uow.commit()
    return list(uow.messages)
