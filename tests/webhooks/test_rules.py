"""The webhook rules that need no services: the default retry schedule, the catalogue, the filters."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestrator import events
from orchestrator.errors import ValidationFailed
from orchestrator.outbox import webhooks
from orchestrator.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_the_default_schedule_is_5s_5min_30min_2h_5h_10h_then_10h_until_three_days() -> None:
    settings = Settings.from_env({"OFFERHUB_MASTER_KEY": "x" * 20, "PAYMENT_PROVIDER": "airtm"})
    start = datetime(2026, 12, 1, tzinfo=UTC)
    now, delays = start, []
    for failures in range(1, 30):
        at = webhooks.next_attempt(settings, failures=failures, retry_from=start, now=now)
        if at is None:
            break
        delays.append(at - now)
        now = at
    hours = timedelta(hours=1)
    assert delays[:7] == [timedelta(seconds=5), timedelta(minutes=5), timedelta(minutes=30), 2 * hours, 5 * hours,
                          10 * hours, 10 * hours]
    assert set(delays[7:]) == {10 * hours}
    assert now - start <= timedelta(days=3)
    assert now + 10 * hours - start > timedelta(days=3)  # the next one would pass the window: given up


def test_every_event_type_the_code_emits_is_in_the_catalogue() -> None:
    emitted = set()
    for path in (ROOT / "orchestrator").rglob("*.py"):
        emitted |= set(re.findall(r'emit\(\s*"([a-z_]+\.[a-z_]+)"', path.read_text()))
    assert len(emitted) > 40
    assert emitted <= events.CATALOG
    assert all(t.split(".", 1)[0] in events.AGGREGATES for t in emitted)


def test_filters_take_catalogue_types_families_and_star_only() -> None:
    assert webhooks.check_event_types(["*", "order.*", "balance.credited", "order.*"]) == [
        "*", "order.*", "balance.credited"]
    with pytest.raises(ValidationFailed) as refused:
        webhooks.check_event_types(["order.created", "order.made", "x.*", "order", "webhook.test", "*.*"])
    assert [f["field"] for f in refused.value.details["fields"]] == [
        "eventTypes[1]", "eventTypes[2]", "eventTypes[3]", "eventTypes[4]", "eventTypes[5]"]
