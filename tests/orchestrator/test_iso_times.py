"""``events.iso`` writes every instant as the API's times are written (api.md §1.5: UTC, milliseconds, ``Z``),
whatever zone the datetime carries; it is hand-formatted for speed (issue 16), so it is checked here
against the standard library's own ISO writer."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from orchestrator.events import iso

ZONES = (UTC, timezone(timedelta(0)), ZoneInfo("Etc/UTC"), ZoneInfo("UTC"), ZoneInfo("America/Bogota"),
         ZoneInfo("Asia/Kolkata"), ZoneInfo("Pacific/Chatham"), timezone(timedelta(hours=-3, minutes=-30)))


def reference(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_random_instants_in_any_zone_read_as_the_standard_library_writes_them() -> None:
    rng = random.Random(20261207)
    start = datetime(1, 1, 2, tzinfo=UTC)
    for _ in range(20_000):
        moment = start + timedelta(seconds=rng.uniform(0, 3.1e11), microseconds=rng.randint(0, 999_999))
        local = moment.astimezone(rng.choice(ZONES))
        assert iso(local) == reference(local), local


def test_milliseconds_are_truncated_and_small_years_padded() -> None:
    assert iso(datetime(999, 1, 2, 3, 4, 5, 678_999, tzinfo=ZoneInfo("Etc/UTC"))) == "0999-01-02T03:04:05.678Z"
    assert iso(datetime(2026, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)) == "2026-12-31T23:59:59.999Z"
    assert iso(datetime(2027, 1, 1, 1, 0, 0, 500, tzinfo=timezone(timedelta(hours=2)))) == "2026-12-31T23:00:00.000Z"


def test_a_time_on_a_whole_second_still_carries_its_milliseconds() -> None:
    for zone in ZONES:
        moment = datetime(2026, 12, 8, 3, 4, 5, tzinfo=UTC).astimezone(zone)
        assert iso(moment) == "2026-12-08T03:04:05.000Z", zone
    assert iso(datetime(1, 1, 1, tzinfo=UTC)) == "0001-01-01T00:00:00.000Z"
    assert iso(datetime(1, 1, 1, 0, 0, 0, 1, tzinfo=UTC)) == "0001-01-01T00:00:00.000Z"
