"""What a log line may hold: the JSON formatter every process uses masks secrets and e-mail addresses."""

from __future__ import annotations

import json
import logging

from orchestrator import logs
from orchestrator.providers.airtm import AirtmFailure


def formatted(record_message: str, *args: object, exc: BaseException | None = None) -> dict[str, object]:
    record = logging.LogRecord("orchestrator.airtm.sync", logging.ERROR, __file__, 1, record_message, args,
                               (type(exc), exc, exc.__traceback__) if exc else None)
    return json.loads(logs.json_formatter().format(record))


def test_an_airtm_refusal_quoting_the_recipient_logs_the_address_masked() -> None:
    """AirTM's refusal text names the recipient; a worker logs the failure (and its traceback)."""
    failure = AirtmFailure("AirTM POST /payouts answered 422: recipient maria.lopez@example.com cannot receive")
    try:
        raise failure
    except AirtmFailure as caught:
        line = formatted("Payout of %s failed: %s", "wdr_1", caught, exc=caught)
    text = json.dumps(line)
    assert "maria.lopez@example.com" not in text
    assert "m***@example.com" in line["event"]  # type: ignore[operator]
    assert "m***@example.com" in line["exception"]  # type: ignore[operator]


def test_secrets_and_credentials_are_masked_and_plain_text_is_kept() -> None:
    seed = "S" + "A" * 55
    line = formatted("signing with %s for ohk_live_abcdefgh1234 at 10:00 for 12.50 USD", seed)
    assert line["event"] == "signing with [REDACTED] for ohk_live_[REDACTED] at 10:00 for 12.50 USD"
