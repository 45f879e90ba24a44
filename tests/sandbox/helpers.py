"""Small stellar-sdk helpers shared by the sandbox tests (real envelopes, real signatures)."""

from __future__ import annotations

from typing import Any

import requests
from stellar_sdk import Asset, Keypair, Server, TransactionBuilder
from stellar_sdk.exceptions import BadRequestError

from tests.fixtures.sandbox import PASSPHRASE, SandboxControl


def usdc(sandbox: SandboxControl) -> Asset:
    return Asset("USDC", sandbox.issuer())


def wallet(sandbox: SandboxControl, usdc_amount: str = "0", xlm: str = "100") -> Keypair:
    """A funded external account with a USDC trustline, minted `usdc_amount`."""
    created = sandbox.create_account(usdc_trustline=True, xlm=xlm, usdc=usdc_amount)
    return Keypair.from_secret(created["secret"])


def balances(server: Server, account_id: str) -> dict[str, str]:
    """`{"XLM": "...", "USDC": "..."}` as Horizon reports them."""
    found = {}
    for line in server.accounts().account_id(account_id).call()["balances"]:
        found["XLM" if line["asset_type"] == "native" else line["asset_code"]] = line["balance"]
    return found


def submit(server: Server, signer: Keypair, build: Any, fee: int = 100, timeout: int = 60) -> dict[str, Any]:
    """Load the account, build with `build(builder)`, sign, submit with stellar-sdk."""
    account = server.load_account(signer.public_key)
    builder = TransactionBuilder(account, PASSPHRASE, fee).set_timeout(timeout)
    build(builder)
    envelope = builder.build()
    envelope.sign(signer)
    return server.submit_transaction(envelope)


def result_codes(error: BadRequestError) -> dict[str, Any]:
    return error.extras["result_codes"]


def tw(
    sandbox: SandboxControl,
    path: str,
    body: dict[str, Any] | None = None,
    key: str = "sandbox-tw-key",
    method: str = "POST",
) -> requests.Response:
    """One Trustless Work call with the API key."""
    url = f"{sandbox.trustless_url}{path}"
    headers = {"x-api-key": key}
    if method == "GET":
        return requests.get(url, params=body, headers=headers, timeout=30)
    return requests.post(url, json=body, headers=headers, timeout=30)
