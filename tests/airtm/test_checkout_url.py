"""Where a buyer is sent to pay a top-up follows ``AIRTM_ENV`` (DESIGN decision 24).

AirTM's description (OFFER-HUB/offer-hub docs/airtm/documentation.json, "Create a Payin" > Redirection)
sends production buyers to ``https://app.airtm.com/payin/<id>``; its staging API host is
``api.stg.enterprise.airtm.com``, and the original repository's guide (docs/providers/airtm.md,
"Environments") names ``https://app.stg.airtm.io`` as the staging app. A staging pay-in opened on the
production app is not found there, so the default follows the environment; the setting still wins.
"""

from __future__ import annotations

import base64
import os

import pytest

from orchestrator.settings import Settings


def settings_for(**env: str) -> Settings:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AIRTM_", "STELLAR_", "TRUSTLESS_"))}
    base.update(STELLAR_NETWORK="testnet", OFFERHUB_JWT_SECRET="x" * 32, PAYMENT_PROVIDER="airtm",
                WALLET_ENCRYPTION_KEY=base64.b64encode(b"k" * 32).decode())
    return Settings.from_env(base | env)


@pytest.mark.parametrize(("airtm_env", "expected"), [
    ("sandbox", "https://app.stg.airtm.io/payin/"),
    ("production", "https://app.airtm.com/payin/"),
    ("prod", "https://app.airtm.com/payin/"),
])
def test_the_checkout_follows_airtm_env(airtm_env: str, expected: str) -> None:
    settings = settings_for(AIRTM_ENV=airtm_env)

    assert settings.airtm_checkout_base_url == expected


def test_staging_pay_ins_never_open_the_production_app_by_default() -> None:
    settings = settings_for()  # AIRTM_ENV defaults to sandbox

    assert "stg" in settings.airtm_api_url
    assert not settings.airtm_checkout_base_url.startswith("https://app.airtm.com/")


def test_an_explicit_checkout_base_url_wins() -> None:
    settings = settings_for(AIRTM_ENV="sandbox", AIRTM_CHECKOUT_BASE_URL="https://pay.example/airtm/")

    assert settings.airtm_checkout_base_url == "https://pay.example/airtm/"
