"""Invisible custodial wallets: a keypair per user, its secret sealed, activated on the ledger by chain steps.

Activation = the account exists and trusts USDC (providers.md §2.3). On the sandbox and testnet
friendbot creates and funds the account, then the user signs a ``change_trust``; on mainnet the
platform account creates the account and adds the trustline in one transaction signed by both
(atomic: no half-activated wallet). The platform's own wallet is funded by friendbot, or on mainnet
by the operator, and then adds its trustline.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Any

from stellar_sdk import Account, Keypair, TransactionBuilder, TransactionEnvelope

from orchestrator import chain_steps, crypto, ids
from orchestrator.accounts import platform, treasury
from orchestrator.chain_steps import ChainContext, StepKind, StepNotFinished
from orchestrator.db import wallets as wallets_db
from orchestrator.db.chain_steps import Step
from orchestrator.providers.horizon import AccountState
from orchestrator.unit_of_work import UnitOfWork

#: Every classic transaction we build may land only within this window (providers.md §2.7).
TIMEOUT_SECONDS = 60


class WalletStatus(StrEnum):
    CREATED = "CREATED"
    ACTIVE = "ACTIVE"
    FAILED = "FAILED"


def create_for_user(uow: UnitOfWork, user_id: str, *, is_platform: bool = False) -> str:
    """Generate and seal the user's keypair and plan its activation; returns the wallet id."""
    settings = uow.config
    keypair = Keypair.random()
    sealed = crypto.seal(crypto.Keyring.from_settings(settings.wallet_encryption_key), keypair.secret,
                         public_key=keypair.public_key)
    wallet_id = ids.new_id("wallet")
    wallets_db.create(uow.conn, id=wallet_id, user_id=user_id, public_key=keypair.public_key,
                      ciphertext=sealed.ciphertext, nonce=sealed.nonce, key_version=sealed.key_version)
    plan_activation(uow, wallet_id, keypair.public_key, is_platform=is_platform)
    return wallet_id


def plan_activation(uow: UnitOfWork, wallet_id: str, public_key: str, *, is_platform: bool) -> None:
    settings = uow.config
    step = ids.new_id("step")
    if settings.friendbot_url:
        chain_steps.create(uow, step_id=step, kind="fund_account", subject_type="wallet", subject_id=wallet_id,
                           source=public_key, signers=[])
    elif is_platform:  # the operator funds the platform account; the trustline waits for it
        chain_steps.create(uow, step_id=step, kind="add_trustline", subject_type="wallet", subject_id=wallet_id,
                           source=public_key, signers=[public_key])
    else:
        source = platform.public_key(uow.conn, settings)
        chain_steps.create(uow, step_id=step, kind="activate_account", subject_type="wallet",
                           subject_id=wallet_id, source=source, signers=[source, public_key],
                           params={"account": public_key})


def _builder(ctx: ChainContext, account: AccountState) -> TransactionBuilder:
    fee = min(ctx.horizon.base_fee(), ctx.settings.stellar_max_fee_stroops)
    return TransactionBuilder(Account(account.account_id, account.sequence), ctx.settings.network_passphrase,
                              base_fee=fee).set_timeout(TIMEOUT_SECONDS)


def _fund(ctx: ChainContext, step: Step) -> None:
    ctx.horizon.fund_with_friendbot(step.source_account)


def _build_trustline(ctx: ChainContext, step: Step, account: AccountState | None) -> TransactionEnvelope:
    if account is None:
        raise StepNotFinished(f"account {step.source_account} is not funded yet")
    return _builder(ctx, account).append_change_trust_op(ctx.horizon.usdc).build()


def _build_activation(ctx: ChainContext, step: Step, account: AccountState | None) -> TransactionEnvelope:
    """Platform-sourced: create the account (unless someone already did) and add its trustline."""
    if account is None:
        raise StepNotFinished("the platform account does not exist; fund it first")
    user = step.params["account"]
    builder = _builder(ctx, account)
    if ctx.horizon.account(user) is None:
        builder.append_create_account_op(user, str(Decimal(ctx.settings.wallet_starting_xlm)))
    return builder.append_change_trust_op(ctx.horizon.usdc, source=user).build()


def _funded(uow: UnitOfWork, step: Step, record: dict[str, Any] | None) -> None:
    wallets_db.mark(uow.conn, step.subject_id, funded=True)
    chain_steps.create(uow, step_id=ids.new_id("step"), kind="add_trustline", subject_type="wallet",
                       subject_id=step.subject_id, source=step.source_account, signers=[step.source_account])


def _activated(uow: UnitOfWork, step: Step, record: dict[str, Any] | None) -> None:
    tx_hash = record.get("hash") if record else None
    wallets_db.activate(uow.conn, step.subject_id, tx_hash=tx_hash)
    wallet = wallets_db.get(uow.conn, step.subject_id)
    assert wallet is not None
    _emit_created(uow, wallet.id)
    uow.emit("wallet.activated", wallet.id, {"userId": wallet.user_id, "walletId": wallet.id,
                                             "publicKey": wallet.public_key, "transactionHash": tx_hash},
             user_id=wallet.user_id)


def _activation_failed(uow: UnitOfWork, step: Step, reason: str) -> None:
    wallets_db.mark(uow.conn, step.subject_id, status=WalletStatus.FAILED)
    _emit_created(uow, step.subject_id)


def _emit_created(uow: UnitOfWork, wallet_id: str) -> None:
    """``wallet.created`` once activation has been attempted (events.md §3.2), with its outcome."""
    wallet = wallets_db.get(uow.conn, wallet_id)
    assert wallet is not None
    uow.emit("wallet.created", wallet.id, {
        "userId": wallet.user_id, "walletId": wallet.id, "publicKey": wallet.public_key, "provider": "STELLAR",
        "funded": wallet.funded, "trustlineReady": wallet.trustline_ready}, user_id=wallet.user_id)


def _activation_ops(codes: list[str]) -> str:
    """Someone created the account first (``op_already_exists``): build again without create_account."""
    return "retry" if "op_already_exists" in codes or "op_underfunded" in codes else "failed"


STEP_KINDS: dict[str, StepKind] = {
    "fund_account": StepKind(build=None, act=_fund, confirmed=_funded, failed=_activation_failed),
    "add_trustline": StepKind(build=_build_trustline, confirmed=_activated, failed=_activation_failed),
    "activate_account": StepKind(build=_build_activation, confirmed=_activated, failed=_activation_failed,
                                 op_outcome=_activation_ops),
    # a payment between platform-held wallets: the settlement account's USDC back to the pool (decision 25)
    treasury.SWEEP_KIND: StepKind(build=treasury.build_sweep, confirmed=treasury.swept, failed=treasury.sweep_failed),
}
