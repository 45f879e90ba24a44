"""Horizon's JSON shapes: account resource, problem documents, pages."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from scripts.sandbox.ledger import AccountEntry, fmt_amount
from scripts.sandbox.ops import asset_fields

_PROBLEM_TITLES = {
    400: "Bad Request",
    404: "Resource Missing",
    410: "Resource Gone",
    429: "Rate Limit Exceeded",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Timeout",
}
_PROBLEM_SLUGS = {
    400: "bad_request",
    404: "not_found",
    410: "before_history",
    429: "rate_limit_exceeded",
    500: "server_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "timeout",
}


def account_json(account: AccountEntry) -> dict[str, Any]:
    """The §2.10 account resource, with `data` (the SDK's memo-required check reads it)."""
    balances: list[dict[str, Any]] = []
    for asset, line in account.trustlines.items():
        balances.append(
            {
                "balance": fmt_amount(line.balance),
                "limit": fmt_amount(line.limit),
                "buying_liabilities": "0.0000000",
                "selling_liabilities": "0.0000000",
                "last_modified_ledger": account.last_modified_ledger,
                "is_authorized": True,
                "is_authorized_to_maintain_liabilities": True,
                **asset_fields(asset),
            }
        )
    balances.append(
        {
            "balance": fmt_amount(account.xlm),
            "buying_liabilities": "0.0000000",
            "selling_liabilities": "0.0000000",
            "asset_type": "native",
        }
    )
    return {
        "_links": {"self": {"href": f"/accounts/{account.id}"}},
        "id": account.id,
        "account_id": account.id,
        "sequence": str(account.seq),
        "subentry_count": account.subentries,
        "last_modified_ledger": account.last_modified_ledger,
        "thresholds": {"low_threshold": 0, "med_threshold": 0, "high_threshold": 0},
        "flags": {
            "auth_required": False,
            "auth_revocable": False,
            "auth_immutable": False,
            "auth_clawback_enabled": False,
        },
        "balances": balances,
        "signers": [{"weight": 1, "key": account.id, "type": "ed25519_public_key"}],
        "data": dict(account.data),
        "num_sponsoring": 0,
        "num_sponsored": 0,
        "paging_token": account.id,
    }


def problem(
    status: int,
    detail: str,
    slug: str | None = None,
    title: str | None = None,
    extras: dict[str, Any] | None = None,
) -> web.Response:
    """An RFC 7807 problem document as Horizon writes it."""
    slug = slug or _PROBLEM_SLUGS.get(status, "server_error")
    body: dict[str, Any] = {
        "type": f"https://stellar.org/horizon-errors/{slug}",
        "title": title or _PROBLEM_TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if extras is not None:
        body["extras"] = extras
    return web.json_response(body, status=status, content_type="application/problem+json")


def shaped(status: int, detail: str) -> web.Response:
    """Problem JSON for injected statuses (`faults.apply_generic`)."""
    return problem(status, detail)


def page(request: web.Request, records: list[dict[str, Any]], order: str, limit: int) -> web.Response:
    """A Horizon page with self/next/prev links built from the records' paging tokens."""
    base = str(request.url.with_query(None))

    def link(cursor: str, direction: str) -> dict[str, str]:
        return {"href": f"{base}?cursor={cursor}&limit={limit}&order={direction}"}

    first = records[0]["paging_token"] if records else request.query.get("cursor", "")
    last = records[-1]["paging_token"] if records else request.query.get("cursor", "")
    reverse = "desc" if order == "asc" else "asc"
    body = {
        "_links": {
            "self": {"href": str(request.url)},
            "next": link(last, order),
            "prev": link(first, reverse),
        },
        "_embedded": {"records": records},
    }
    return web.Response(text=json.dumps(body), content_type="application/hal+json")
