"""The single route table; every path lives under ``/api/v1``."""

from __future__ import annotations

from aiohttp import web

from web import sse
from web.handlers import (
    airtm,
    api_keys,
    audit,
    disputes,
    docs,
    orders,
    platform,
    statements,
    users,
    webhooks,
    withdrawals,
)
from web.handlers import wallets as wallet_routes

V1 = "/api/v1"
ADMIN_OPERATION = "{operation:credit|debit|reserve|release|cancel-reservation|deduct-reserved}"


def setup_routes(app: web.Application) -> None:
    app.add_routes([
        web.get(f"{V1}/health", platform.health),
        web.get(f"{V1}/health/detailed", platform.health_detailed),
        web.get(f"{V1}/config", platform.config),
        web.get(f"{V1}/admin/maintenance/status", platform.maintenance_status),
        web.post(f"{V1}/admin/maintenance/enable", platform.maintenance_enable),
        web.post(f"{V1}/admin/maintenance/disable", platform.maintenance_disable),
        web.post(f"{V1}/auth/api-keys", api_keys.create_key),
        web.get(f"{V1}/auth/api-keys", api_keys.list_keys),
        web.delete(f"{V1}/auth/api-keys/{{key_id}}", api_keys.revoke_key),
        web.post(f"{V1}/auth/api-keys/{{key_id}}/token", api_keys.mint_token),
        web.get(f"{V1}/auth/me", api_keys.me),
        web.post(f"{V1}/users", users.create_user),
        web.get(f"{V1}/users", users.list_users),
        web.get(f"{V1}/users/{{user_id}}", users.get_user),
        web.get(f"{V1}/users/{{user_id}}/balance", users.get_balance),
        web.post(f"{V1}/users/{{user_id}}/balance/{ADMIN_OPERATION}", users.adjust_balance),
        web.get(f"{V1}/users/{{user_id}}/balance/verify", wallet_routes.verify_balance),
        web.post(f"{V1}/users/{{user_id}}/balance/sync", wallet_routes.sync_balance),
        web.get(f"{V1}/users/{{user_id}}/wallet", wallet_routes.get_wallet),
        web.get(f"{V1}/users/{{user_id}}/wallet/deposit", wallet_routes.get_deposit_instructions),
        web.get(f"{V1}/users/{{user_id}}/wallet/transactions", wallet_routes.list_wallet_transactions),
        web.post(f"{V1}/orders", orders.create_order),
        web.get(f"{V1}/orders", orders.list_orders),
        web.get(f"{V1}/orders/{{order_id}}", orders.get_order),
        web.post(f"{V1}/orders/{{order_id}}/reserve", orders.reserve_order),
        web.post(f"{V1}/orders/{{order_id}}/cancel", orders.cancel_order),
        web.post(f"{V1}/orders/{{order_id}}/escrow", orders.create_escrow),
        web.post(f"{V1}/orders/{{order_id}}/escrow/fund", orders.fund_escrow),
        web.get(f"{V1}/orders/{{order_id}}/milestones", orders.list_milestones),
        web.post(f"{V1}/orders/{{order_id}}/milestones/{{milestone_ref}}/complete", orders.complete_milestone),
        web.post(f"{V1}/orders/{{order_id}}/resolution/release", orders.release_order),
        web.post(f"{V1}/orders/{{order_id}}/resolution/refund", orders.refund_order),
        web.post(f"{V1}/orders/{{order_id}}/resolution/dispute", disputes.open_dispute),
        web.get(f"{V1}/disputes", disputes.list_disputes),
        web.get(f"{V1}/disputes/{{dispute_id}}", disputes.get_dispute),
        web.post(f"{V1}/disputes/{{dispute_id}}/assign", disputes.assign_dispute),
        web.post(f"{V1}/disputes/{{dispute_id}}/resolve", disputes.resolve_dispute),
        web.post(f"{V1}/withdrawals", withdrawals.create_withdrawal),
        web.get(f"{V1}/withdrawals", withdrawals.list_withdrawals),
        web.get(f"{V1}/withdrawals/{{withdrawal_id}}", withdrawals.get_withdrawal),
        web.get(f"{V1}/events", sse.stream_events),
        # AirTM (issue 7): link, top-ups, the AirTM withdrawal steps, the webhook
        web.post(f"{V1}/users/{{user_id}}/airtm/link", airtm.link_account),
        web.post(f"{V1}/topups", airtm.create_topup),
        web.get(f"{V1}/topups", airtm.list_topups),
        web.get(f"{V1}/topups/{{topup_id}}", airtm.get_topup),
        web.post(f"{V1}/topups/{{topup_id}}/refresh", airtm.refresh_topup),
        web.post(f"{V1}/topups/{{topup_id}}/cancel", airtm.cancel_topup),
        web.get(f"{V1}/topups/{{topup_id}}/callback", airtm.topup_callback),
        web.post(f"{V1}/withdrawals/{{withdrawal_id}}/commit", withdrawals.commit_withdrawal),
        web.post(f"{V1}/withdrawals/{{withdrawal_id}}/refresh", withdrawals.refresh_withdrawal),
        web.delete(f"{V1}/withdrawals/{{withdrawal_id}}", withdrawals.cancel_withdrawal),
        web.post(f"{V1}/webhooks/airtm", airtm.airtm_webhook),
        # outbound webhooks (issue 17, DESIGN decision 28)
        web.post(f"{V1}/webhooks/endpoints", webhooks.create_endpoint),
        web.get(f"{V1}/webhooks/endpoints", webhooks.list_endpoints),
        web.get(f"{V1}/webhooks/endpoints/{{endpoint_id}}", webhooks.get_endpoint),
        web.patch(f"{V1}/webhooks/endpoints/{{endpoint_id}}", webhooks.update_endpoint),
        web.delete(f"{V1}/webhooks/endpoints/{{endpoint_id}}", webhooks.delete_endpoint),
        web.post(f"{V1}/webhooks/endpoints/{{endpoint_id}}/rotate-secret", webhooks.rotate_secret),
        web.post(f"{V1}/webhooks/endpoints/{{endpoint_id}}/test", webhooks.test_endpoint),
        web.post(f"{V1}/webhooks/endpoints/{{endpoint_id}}/replay", webhooks.replay),
        web.get(f"{V1}/webhooks/endpoints/{{endpoint_id}}/deliveries", webhooks.list_deliveries),
        web.post(f"{V1}/webhooks/deliveries/{{delivery_id}}/retry", webhooks.retry_delivery),
        # audit trail and statements (issue 10)
        web.get(f"{V1}/audit/logs", audit.list_audit_logs),
        web.get(f"{V1}/users/{{user_id}}/statement", statements.get_statement),
        # the contract: OpenAPI document and its page (DESIGN decision 14)
        web.get(f"{V1}/openapi.json", docs.openapi_json),
        web.get(f"{V1}/docs", docs.docs_page),
        web.get(f"{V1}/docs/{{asset}}", docs.docs_asset),
    ])
