"""The resource groups of cli-sdk.md §1.5, written once (async); the sync ``Client`` runs these same methods.

Arguments are snake_case keywords and go out under the API's camelCase names (api.md §1.2). Every method
returns the envelope's ``data`` (a ``Result`` dict, or a list); list methods return a ``Page`` and have an
``iterate`` twin that follows the cursors. Mutating methods take ``idempotency_key=`` (one is generated per
call when omitted) and, where the server may answer 202, ``wait=`` / ``respond_async=`` (api.md §1.12).
"""

from __future__ import annotations

import asyncio
import builtins
import time
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import quote

from orchestrator.client.errors import OfferHubError
from orchestrator.client.transport import Page, Result, Transport, query

TERMINAL_ORDER = frozenset({"CLOSED"})


def body(**fields: Any) -> dict[str, Any]:
    """A request body from camelCase keywords, without the ones left ``None``."""
    return {name: value for name, value in fields.items() if value is not None}


def seg(value: str) -> str:
    """A path segment, escaped (ids are opaque to clients)."""
    return quote(str(value), safe="")


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


class Resource:
    def __init__(self, transport: Transport) -> None:
        self._t = transport

    async def _call(self, method: str, path: str, json_body: Any = None, *, params: dict[str, Any] | None = None,
                    idempotency_key: str | None = None, wait: float | None = None,
                    respond_async: bool = False) -> Any:
        response = await self._t.request(method, path, json_body=json_body, params=params,
                                         idempotency_key=idempotency_key, wait=wait, respond_async=respond_async)
        return response.result()

    async def _page(self, path: str, filters: dict[str, Any]) -> Page:
        params = query(**{camel(name): value for name, value in filters.items()})
        return (await self._t.request("GET", path, params=params)).page()

    async def _iterate(self, path: str, filters: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        cursor = filters.pop("cursor", None)
        while True:
            page = await self._page(path, {**filters, "cursor": cursor})
            for item in page.items:
                yield item
            if not page.has_more or not page.next_cursor:
                return
            cursor = page.next_cursor


class Users(Resource):
    async def create(self, *, external_user_id: str, email: str | None = None, type: str | None = None,
                     metadata: dict[str, Any] | None = None, idempotency_key: str | None = None) -> Result:
        """Create a user, or get the existing one for a known ``external_user_id`` (200)."""
        return await self._call("POST", "/users", body(externalUserId=external_user_id, email=email, type=type,
                                                       metadata=metadata), idempotency_key=idempotency_key)

    async def get(self, user_id: str) -> Result:
        return await self._call("GET", f"/users/{seg(user_id)}")

    async def list(self, **filters: Any) -> Page:
        """Filters: ``type``, ``status``, ``external_user_id``, ``email``, ``limit``, ``cursor``."""
        return await self._page("/users", filters)

    def iterate(self, **filters: Any) -> AsyncIterator[dict[str, Any]]:
        return self._iterate("/users", filters)

    async def statement(self, user_id: str, *, from_: str | None = None, to: str | None = None) -> Result:
        """Opening balance, every movement and its cause, closing balance, for ``from_``..``to`` (ISO times)."""
        return await self._call("GET", f"/users/{seg(user_id)}/statement", params=query(**{"from": from_, "to": to}))

    async def link_airtm(self, user_id: str, *, email: str, idempotency_key: str | None = None) -> Result:
        return await self._call("POST", f"/users/{seg(user_id)}/airtm/link", body(email=email),
                                idempotency_key=idempotency_key)


class Balance(Resource):
    async def get(self, user_id: str) -> Result:
        return await self._call("GET", f"/users/{seg(user_id)}/balance")

    async def verify(self, user_id: str) -> Result:
        return await self._call("GET", f"/users/{seg(user_id)}/balance/verify")

    async def sync(self, user_id: str, *, idempotency_key: str | None = None) -> Result:
        return await self._call("POST", f"/users/{seg(user_id)}/balance/sync", idempotency_key=idempotency_key)

    async def _admin(self, user_id: str, operation: str, fields: dict[str, Any], key: str | None) -> Result:
        return await self._call("POST", f"/users/{seg(user_id)}/balance/{operation}", body(**fields),
                                idempotency_key=key)

    async def credit(self, user_id: str, *, amount: str, description: str | None = None,
                     reference: str | None = None, idempotency_key: str | None = None) -> Result:
        """Administrative (scope ``support``): available += amount, against the adjustment account."""
        return await self._admin(user_id, "credit", {"amount": amount, "description": description,
                                                     "reference": reference}, idempotency_key)

    async def debit(self, user_id: str, *, amount: str, description: str | None = None,
                    reference: str | None = None, idempotency_key: str | None = None) -> Result:
        return await self._admin(user_id, "debit", {"amount": amount, "description": description,
                                                    "reference": reference}, idempotency_key)

    async def reserve(self, user_id: str, *, amount: str, order_id: str, description: str | None = None,
                      idempotency_key: str | None = None) -> Result:
        return await self._admin(user_id, "reserve", {"amount": amount, "orderId": order_id,
                                                      "description": description}, idempotency_key)

    async def release(self, user_id: str, *, amount: str, order_id: str, seller_id: str,
                      description: str | None = None, idempotency_key: str | None = None) -> Result:
        return await self._admin(user_id, "release", {"amount": amount, "orderId": order_id, "sellerId": seller_id,
                                                      "description": description}, idempotency_key)

    async def cancel_reservation(self, user_id: str, *, amount: str, order_id: str, description: str | None = None,
                                 idempotency_key: str | None = None) -> Result:
        return await self._admin(user_id, "cancel-reservation", {"amount": amount, "orderId": order_id,
                                                                 "description": description}, idempotency_key)

    async def deduct_reserved(self, user_id: str, *, amount: str, order_id: str, description: str | None = None,
                              idempotency_key: str | None = None) -> Result:
        return await self._admin(user_id, "deduct-reserved", {"amount": amount, "orderId": order_id,
                                                              "description": description}, idempotency_key)


class Wallet(Resource):
    async def get_info(self, user_id: str) -> Result:
        """The wallet with its ledger balances read live (``balance.usdc``, ``balance.xlm``)."""
        return await self._call("GET", f"/users/{seg(user_id)}/wallet")

    async def get_deposit_address(self, user_id: str) -> Result:
        return await self._call("GET", f"/users/{seg(user_id)}/wallet/deposit")

    async def get_transactions(self, user_id: str, limit: int | None = None) -> builtins.list[dict[str, Any]]:
        return await self._call("GET", f"/users/{seg(user_id)}/wallet/transactions", params=query(limit=limit))


class Orders(Resource):
    async def create(self, *, buyer_id: str, seller_id: str, amount: str, title: str, currency: str | None = None,
                     description: str | None = None, client_order_ref: str | None = None,
                     milestones: builtins.list[dict[str, Any]] | None = None, metadata: dict[str, Any] | None = None,
                     idempotency_key: str | None = None) -> Result:
        """Milestones are ``{"milestoneRef", "title", "amount"}`` items whose amounts sum to ``amount``."""
        return await self._call("POST", "/orders", body(
            buyerId=buyer_id, sellerId=seller_id, amount=amount, currency=currency, title=title,
            description=description, clientOrderRef=client_order_ref, milestones=milestones, metadata=metadata),
            idempotency_key=idempotency_key)

    async def get(self, order_id: str) -> Result:
        return await self._call("GET", f"/orders/{seg(order_id)}")

    async def list(self, **filters: Any) -> Page:
        """Filters: ``status``, ``buyer_id``, ``seller_id``, ``client_order_ref``, ``created_after``,
        ``created_before``, ``limit``, ``cursor``."""
        return await self._page("/orders", filters)

    def iterate(self, **filters: Any) -> AsyncIterator[dict[str, Any]]:
        return self._iterate("/orders", filters)

    async def reserve(self, order_id: str, *, amount: str | None = None, idempotency_key: str | None = None) -> Result:
        return await self._call("POST", f"/orders/{seg(order_id)}/reserve", body(amount=amount),
                                idempotency_key=idempotency_key)

    async def cancel(self, order_id: str, *, reason: str | None = None, canceled_by: str | None = None,
                     idempotency_key: str | None = None) -> Result:
        return await self._call("POST", f"/orders/{seg(order_id)}/cancel",
                                body(reason=reason, canceledBy=canceled_by), idempotency_key=idempotency_key)

    async def create_escrow(self, order_id: str, *, idempotency_key: str | None = None, wait: float | None = None,
                            respond_async: bool = False) -> Result:
        return await self._call("POST", f"/orders/{seg(order_id)}/escrow", idempotency_key=idempotency_key,
                                wait=wait, respond_async=respond_async)

    async def fund_escrow(self, order_id: str, *, idempotency_key: str | None = None, wait: float | None = None,
                          respond_async: bool = False) -> Result:
        return await self._call("POST", f"/orders/{seg(order_id)}/escrow/fund", idempotency_key=idempotency_key,
                                wait=wait, respond_async=respond_async)

    async def get_milestones(self, order_id: str) -> builtins.list[dict[str, Any]]:
        return await self._call("GET", f"/orders/{seg(order_id)}/milestones")

    async def complete_milestone(self, order_id: str, milestone_ref: str, *,
                                 idempotency_key: str | None = None) -> Result:
        return await self._call("POST", f"/orders/{seg(order_id)}/milestones/{seg(milestone_ref)}/complete",
                                idempotency_key=idempotency_key)

    async def release(self, order_id: str, *, reason: str | None = None, requested_by: str | None = None,
                      idempotency_key: str | None = None, wait: float | None = None,
                      respond_async: bool = False) -> Result:
        return await self._call("POST", f"/orders/{seg(order_id)}/resolution/release",
                                body(reason=reason, requestedBy=requested_by), idempotency_key=idempotency_key,
                                wait=wait, respond_async=respond_async)

    async def refund(self, order_id: str, *, reason: str, requested_by: str | None = None,
                     idempotency_key: str | None = None, wait: float | None = None,
                     respond_async: bool = False) -> Result:
        return await self._call("POST", f"/orders/{seg(order_id)}/resolution/refund",
                                body(reason=reason, requestedBy=requested_by), idempotency_key=idempotency_key,
                                wait=wait, respond_async=respond_async)

    async def wait_for(self, order_id: str, status: str, *, seconds: float = 60.0, interval: float = 0.5) -> Result:
        """Poll until the order reaches ``status`` (or ``finalStatus``); a closed order that did not is an error."""
        deadline = time.monotonic() + seconds
        while True:
            order = await self.get(order_id)
            if status in (order.get("status"), order.get("finalStatus")):
                return order
            if order.get("status") in TERMINAL_ORDER:
                raise OfferHubError(f"Order {order_id} closed as {order.get('finalStatus')}, never {status}",
                                    code="UNEXPECTED_STATE", details={"currentState": order.get("status")})
            if time.monotonic() > deadline:
                raise TimeoutError(f"order {order_id} is {order.get('status')} after {seconds:g} s, not {status}")
            await asyncio.sleep(interval)


class Disputes(Resource):
    async def open(self, order_id: str, *, opened_by: str, reason: str, evidence: builtins.list[str] | None = None,
                   idempotency_key: str | None = None) -> Result:
        """``opened_by``: ``BUYER`` | ``SELLER``; ``reason``: ``NOT_DELIVERED`` | ``QUALITY_ISSUE`` | ``OTHER``."""
        return await self._call("POST", f"/orders/{seg(order_id)}/resolution/dispute",
                                body(openedBy=opened_by, reason=reason, evidence=evidence),
                                idempotency_key=idempotency_key)

    async def get(self, dispute_id: str) -> Result:
        return await self._call("GET", f"/disputes/{seg(dispute_id)}")

    async def list(self, **filters: Any) -> Page:
        """Filters: ``order_id``, ``status``, ``opened_by``, ``assigned_to``, ``limit``, ``cursor``."""
        return await self._page("/disputes", filters)

    def iterate(self, **filters: Any) -> AsyncIterator[dict[str, Any]]:
        return self._iterate("/disputes", filters)

    async def assign(self, dispute_id: str, *, assigned_to: str, notes: str | None = None,
                     idempotency_key: str | None = None) -> Result:
        return await self._call("POST", f"/disputes/{seg(dispute_id)}/assign",
                                body(assignedTo=assigned_to, notes=notes), idempotency_key=idempotency_key)

    async def resolve(self, dispute_id: str, *, decision: str, release_amount: str | None = None,
                      refund_amount: str | None = None, note: str | None = None, resolved_by: str | None = None,
                      idempotency_key: str | None = None, wait: float | None = None,
                      respond_async: bool = False) -> Result:
        """``decision``: ``FULL_RELEASE`` | ``FULL_REFUND`` | ``SPLIT`` (with both amounts)."""
        return await self._call("POST", f"/disputes/{seg(dispute_id)}/resolve", body(
            decision=decision, releaseAmount=release_amount, refundAmount=refund_amount, note=note,
            resolvedBy=resolved_by), idempotency_key=idempotency_key, wait=wait, respond_async=respond_async)


class TopUps(Resource):
    """AirTM top-ups (api.md §8); the instance must run ``PAYMENT_PROVIDER=airtm``."""

    async def create(self, *, user_id: str, amount: str, currency: str | None = None, return_url: str | None = None,
                     cancel_url: str | None = None, description: str | None = None,
                     metadata: dict[str, Any] | None = None, idempotency_key: str | None = None) -> Result:
        return await self._call("POST", "/topups", body(
            userId=user_id, amount=amount, currency=currency, returnUrl=return_url, cancelUrl=cancel_url,
            description=description, metadata=metadata), idempotency_key=idempotency_key)

    async def get(self, topup_id: str, *, user_id: str | None = None) -> Result:
        return await self._call("GET", f"/topups/{seg(topup_id)}", params=query(userId=user_id))

    async def list(self, **filters: Any) -> Page:
        """Filters: ``user_id``, ``status``, ``limit``, ``cursor``."""
        return await self._page("/topups", filters)

    def iterate(self, **filters: Any) -> AsyncIterator[dict[str, Any]]:
        return self._iterate("/topups", filters)

    async def refresh(self, topup_id: str, *, idempotency_key: str | None = None) -> Result:
        return await self._call("POST", f"/topups/{seg(topup_id)}/refresh", idempotency_key=idempotency_key)

    async def cancel(self, topup_id: str, *, idempotency_key: str | None = None) -> Result:
        return await self._call("POST", f"/topups/{seg(topup_id)}/cancel", idempotency_key=idempotency_key)


class Withdrawals(Resource):
    async def create(self, *, user_id: str, amount: str, destination_type: str, destination_ref: str,
                     currency: str | None = None, commit: bool | None = None, description: str | None = None,
                     idempotency_key: str | None = None, wait: float | None = None,
                     respond_async: bool = False) -> Result:
        """``destination_type``: ``crypto`` (a Stellar ``G…`` account), ``bank`` or ``airtm_balance``."""
        return await self._call("POST", "/withdrawals", body(
            userId=user_id, amount=amount, currency=currency, destinationType=destination_type,
            destinationRef=destination_ref, commit=commit, description=description),
            idempotency_key=idempotency_key, wait=wait, respond_async=respond_async)

    async def get(self, withdrawal_id: str, *, user_id: str | None = None) -> Result:
        return await self._call("GET", f"/withdrawals/{seg(withdrawal_id)}", params=query(userId=user_id))

    async def list(self, **filters: Any) -> Page:
        """Filters: ``user_id``, ``status``, ``destination_type``, ``limit``, ``cursor``."""
        return await self._page("/withdrawals", filters)

    def iterate(self, **filters: Any) -> AsyncIterator[dict[str, Any]]:
        return self._iterate("/withdrawals", filters)

    async def commit(self, withdrawal_id: str, *, user_id: str | None = None,
                     idempotency_key: str | None = None) -> Result:
        return await self._call("POST", f"/withdrawals/{seg(withdrawal_id)}/commit", params=query(userId=user_id),
                                idempotency_key=idempotency_key)

    async def refresh(self, withdrawal_id: str, *, user_id: str | None = None,
                      idempotency_key: str | None = None) -> Result:
        return await self._call("POST", f"/withdrawals/{seg(withdrawal_id)}/refresh", params=query(userId=user_id),
                                idempotency_key=idempotency_key)

    async def cancel(self, withdrawal_id: str, *, user_id: str | None = None,
                     idempotency_key: str | None = None) -> Result:
        return await self._call("DELETE", f"/withdrawals/{seg(withdrawal_id)}", params=query(userId=user_id),
                                idempotency_key=idempotency_key)


class ApiKeys(Resource):
    async def create(self, *, name: str, scopes: builtins.list[str], user_id: str | None = None,
                     idempotency_key: str | None = None) -> Result:
        """The answer's ``key`` is the plaintext secret, shown this once."""
        return await self._call("POST", "/auth/api-keys", body(name=name, scopes=scopes, userId=user_id),
                                idempotency_key=idempotency_key)

    async def list(self, **filters: Any) -> Page:
        """Filters: ``user_id``, ``status``, ``limit``, ``cursor``."""
        return await self._page("/auth/api-keys", filters)

    def iterate(self, **filters: Any) -> AsyncIterator[dict[str, Any]]:
        return self._iterate("/auth/api-keys", filters)

    async def revoke(self, key_id: str, *, idempotency_key: str | None = None) -> Result:
        return await self._call("DELETE", f"/auth/api-keys/{seg(key_id)}", idempotency_key=idempotency_key)

    async def create_token(self, key_id: str, *, ttl: int | None = None, scopes: builtins.list[str] | None = None,
                           idempotency_key: str | None = None) -> Result:
        return await self._call("POST", f"/auth/api-keys/{seg(key_id)}/token", body(ttl=ttl, scopes=scopes),
                                idempotency_key=idempotency_key)

    async def me(self) -> Result:
        return await self._call("GET", "/auth/me")


class AuditLogs(Resource):
    async def list(self, **filters: Any) -> Page:
        """Filters: ``resource_type``, ``resource_id``, ``action``, ``user_id``, ``from_``, ``to``, ``limit``,
        ``cursor`` (scope ``support``)."""
        if "from_" in filters:
            filters["from"] = filters.pop("from_")
        return await self._page("/audit/logs", filters)

    def iterate(self, **filters: Any) -> AsyncIterator[dict[str, Any]]:
        if "from_" in filters:
            filters["from"] = filters.pop("from_")
        return self._iterate("/audit/logs", filters)


class Webhooks(Resource):
    """Outbound webhook endpoints and their deliveries (scope ``support`` to change, ``read`` to list)."""

    async def create_endpoint(self, *, url: str, event_types: builtins.list[str] | None = None,
                              description: str | None = None, enabled: bool | None = None,
                              idempotency_key: str | None = None) -> Result:
        """The answer's ``secret`` (``whsec_…``) is shown this once: keep it to verify deliveries."""
        return await self._call("POST", "/webhooks/endpoints", body(
            url=url, eventTypes=event_types, description=description, enabled=enabled),
            idempotency_key=idempotency_key)

    async def get_endpoint(self, endpoint_id: str) -> Result:
        return await self._call("GET", f"/webhooks/endpoints/{seg(endpoint_id)}")

    async def list_endpoints(self, **filters: Any) -> Page:
        return await self._page("/webhooks/endpoints", filters)

    def iterate_endpoints(self, **filters: Any) -> AsyncIterator[dict[str, Any]]:
        return self._iterate("/webhooks/endpoints", filters)

    async def update_endpoint(self, endpoint_id: str, *, url: str | None = None,
                              event_types: builtins.list[str] | None = None, description: str | None = None,
                              enabled: bool | None = None) -> Result:
        return await self._call("PATCH", f"/webhooks/endpoints/{seg(endpoint_id)}", body(
            url=url, eventTypes=event_types, description=description, enabled=enabled))

    async def delete_endpoint(self, endpoint_id: str, *, idempotency_key: str | None = None) -> Result:
        return await self._call("DELETE", f"/webhooks/endpoints/{seg(endpoint_id)}", idempotency_key=idempotency_key)

    async def rotate_secret(self, endpoint_id: str, *, overlap_seconds: int | None = None,
                            idempotency_key: str | None = None) -> Result:
        """A new ``secret``; the previous one keeps signing beside it for ``overlap_seconds`` (default a day)."""
        return await self._call("POST", f"/webhooks/endpoints/{seg(endpoint_id)}/rotate-secret",
                                body(overlapSeconds=overlap_seconds), idempotency_key=idempotency_key)

    async def test(self, endpoint_id: str, *, idempotency_key: str | None = None) -> Result:
        return await self._call("POST", f"/webhooks/endpoints/{seg(endpoint_id)}/test",
                                idempotency_key=idempotency_key)

    async def replay(self, endpoint_id: str, *, since: str, until: str | None = None,
                     idempotency_key: str | None = None) -> Result:
        return await self._call("POST", f"/webhooks/endpoints/{seg(endpoint_id)}/replay",
                                body(since=since, until=until), idempotency_key=idempotency_key)

    async def list_deliveries(self, endpoint_id: str, **filters: Any) -> Page:
        """Filters: ``status`` (``PENDING``, ``SUCCEEDED``, ``FAILED``), ``limit``, ``cursor``."""
        return await self._page(f"/webhooks/endpoints/{seg(endpoint_id)}/deliveries", filters)

    def iterate_deliveries(self, endpoint_id: str, **filters: Any) -> AsyncIterator[dict[str, Any]]:
        return self._iterate(f"/webhooks/endpoints/{seg(endpoint_id)}/deliveries", filters)

    async def retry_delivery(self, delivery_id: str, *, idempotency_key: str | None = None) -> Result:
        return await self._call("POST", f"/webhooks/deliveries/{seg(delivery_id)}/retry",
                                idempotency_key=idempotency_key)


class System(Resource):
    async def health(self) -> Result:
        return await self._call("GET", "/health")

    async def health_detailed(self) -> Result:
        """The dependency report; an unhealthy server's 503 is returned (not raised): it is the report asked for."""
        response = await self._t.request("GET", "/health/detailed", retries=0, accept=frozenset({503}))
        return response.result()

    async def config(self) -> Result:
        return await self._call("GET", "/config")

    async def maintenance_status(self) -> Result:
        return await self._call("GET", "/admin/maintenance/status")

    async def maintenance_enable(self, *, message: str | None = None, idempotency_key: str | None = None) -> Result:
        return await self._call("POST", "/admin/maintenance/enable", body(message=message),
                                idempotency_key=idempotency_key)

    async def maintenance_disable(self, *, idempotency_key: str | None = None) -> Result:
        return await self._call("POST", "/admin/maintenance/disable", idempotency_key=idempotency_key)


#: The resource groups every client exposes, by attribute name (``events`` is added by the client).
GROUPS: dict[str, Callable[[Transport], Resource]] = {
    "users": Users, "balance": Balance, "wallet": Wallet, "orders": Orders, "disputes": Disputes,
    "topups": TopUps, "withdrawals": Withdrawals, "api_keys": ApiKeys, "audit_logs": AuditLogs, "system": System,
    "webhooks": Webhooks,
}

__all__ = ["GROUPS", "ApiKeys", "AuditLogs", "Balance", "Disputes", "Orders", "Resource", "System",
           "TopUps", "Users", "Wallet", "Webhooks", "Withdrawals"]
