"""Wallet, deposit instruction and wallet transaction shapes (spec api.md §2.4, §7)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from marshmallow import fields

from orchestrator import amounts
from schemas.base import BaseSchema
from schemas.common import Time

DEPOSIT_TEXT = "Send USDC to this Stellar address. Deposits are detected automatically within seconds."
AIRTM_DEPOSIT_TEXT = "Create a top-up with POST /topups and send the user to its confirmation URI to pay."
#: Horizon operation types shown as a ``payment`` (the record moves an asset into or out of the wallet).
_PAYMENTS = {"payment", "path_payment_strict_receive", "path_payment_strict_send"}


class LedgerAmount(fields.Field):
    """Seven decimals, as the ledger keeps them; no account or no trustline reads ``0.0000000``."""

    def _serialize(self, value: Decimal | None, attr: str | None, obj: Any, **kw: Any) -> str:
        return f"{(value or Decimal(0)).quantize(amounts.QUANTUM):f}"


class LedgerBalanceOut(BaseSchema):
    usdc = LedgerAmount()
    xlm = LedgerAmount()


class WalletOut(BaseSchema):
    """Dumps ``{"wallet": Wallet row, "ledger": AccountBalances | None}``."""

    publicKey = fields.String(attribute="wallet.public_key")
    type = fields.String(attribute="wallet.type")
    provider = fields.Constant("STELLAR")
    isActive = fields.Method("_active", metadata={"type": "boolean"})
    isPrimary = fields.Constant(True)  # one wallet per user (wallets.user_id is unique)
    balance = fields.Method("_balance", metadata={"openapi": "LedgerBalanceOut"})
    createdAt = Time(attribute="wallet.created_at")

    def _active(self, obj: dict[str, Any]) -> bool:
        return obj["wallet"].status == "ACTIVE"

    def _balance(self, obj: dict[str, Any]) -> dict[str, Any]:
        return LedgerBalanceOut().dump(obj["ledger"] or {"usdc": None, "xlm": None})


class CryptoDepositOut(BaseSchema):
    """Dumps ``{"wallet": Wallet row, "settings": Settings}``."""

    provider = fields.Constant("crypto")
    method = fields.Constant("stellar_address")
    address = fields.String(attribute="wallet.public_key")
    asset = fields.Method("_asset", metadata={"openapi": "Asset"})
    network = fields.String(attribute="settings.stellar_network")
    instructions = fields.Constant(DEPOSIT_TEXT)

    def _asset(self, obj: dict[str, Any]) -> dict[str, str]:
        return {"code": obj["settings"].usdc_asset_code, "issuer": obj["settings"].usdc_issuer}


AIRTM_DEPOSIT: dict[str, Any] = {"provider": "airtm", "method": "redirect_uri", "address": None, "asset": None,
                                 "network": None, "instructions": AIRTM_DEPOSIT_TEXT}


class WalletTransactionOut(BaseSchema):
    """Dumps what ``transaction_view`` made of a Horizon payment record."""

    id = fields.String()
    type = fields.String()
    from_ = fields.String(data_key="from", attribute="from")
    to = fields.String()
    amount = fields.String()
    asset = fields.String()
    createdAt = Time(attribute="created_at")
    hash = fields.String()
    successful = fields.Boolean()


def transaction_view(record: dict[str, Any], account_id: str) -> dict[str, Any] | None:
    """A Horizon payment record as a wallet transaction, or ``None`` when it moves nothing we show.

    Contract calls (escrow funding and payouts) appear as a ``payment`` of the USDC transfer that
    involves the wallet; account merges and transfers between other parties are left out.
    """
    kind = record.get("type")
    if kind == "create_account":
        moved = {"type": "create_account", "from": record["funder"], "to": record["account"],
                 "amount": record["starting_balance"], "asset": "XLM"}
    elif kind in _PAYMENTS:
        moved = {"type": "payment", "from": record["from"], "to": record["to"], "amount": record["amount"],
                 "asset": asset_name(record)}
    elif kind == "invoke_host_function":
        change = next((c for c in record.get("asset_balance_changes") or ()
                       if account_id in (c.get("from"), c.get("to"))), None)
        if change is None:
            return None
        moved = {"type": "payment", "from": change["from"], "to": change["to"], "amount": change["amount"],
                 "asset": asset_name(change)}
    else:
        return None
    return {**moved, "id": record["id"], "hash": record["transaction_hash"],
            "created_at": datetime.fromisoformat(record["created_at"]),
            "successful": bool(record.get("transaction_successful", True))}


def asset_name(record: dict[str, Any]) -> str:
    """``XLM`` or ``CODE:ISSUER`` (spec api.md §2.4)."""
    if record.get("asset_type") == "native":
        return "XLM"
    return f"{record['asset_code']}:{record['asset_issuer']}"
