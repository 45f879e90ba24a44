"""The shared TW request budget, against the real Redis of the test run."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator

import pytest
import redis

from orchestrator.errors import ProviderFailure
from orchestrator.providers.rate_budget import RateBudget
from orchestrator.settings import Settings


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(Settings.from_env().redis_url)
    yield connection
    connection.close()


@pytest.fixture
def prefix(client: redis.Redis) -> Iterator[str]:
    key_prefix = f"{Settings.from_env().redis_prefix}budget-{secrets.token_hex(4)}:"
    yield key_prefix
    for key in client.scan_iter(f"{key_prefix}*"):
        client.delete(key)


def test_budget_grants_exactly_per_minute_requests_then_reports_the_wait(client: redis.Redis, prefix: str) -> None:
    budget = RateBudget(client, prefix, per_minute=5)
    assert [budget.try_take() for _ in range(5)] == [0.0] * 5
    wait = budget.try_take()
    assert 55 < wait <= 60


def test_two_budgets_on_the_same_prefix_share_one_window(client: redis.Redis, prefix: str) -> None:
    # Given two processes' budgets over one Redis key
    first, second = RateBudget(client, prefix, per_minute=4), RateBudget(client, prefix, per_minute=4)
    # When they take 2 each
    for _ in range(2):
        assert first.try_take() == 0
        assert second.try_take() == 0
    # Then neither gets a fifth
    assert first.try_take() > 0
    assert second.try_take() > 0


def test_budgets_on_other_prefixes_are_independent(client: redis.Redis, prefix: str) -> None:
    spent = RateBudget(client, prefix, per_minute=1)
    other = RateBudget(client, prefix + "other:", per_minute=1)
    assert spent.try_take() == 0
    assert spent.try_take() > 0
    assert other.try_take() == 0


def test_slots_free_up_when_the_window_slides(client: redis.Redis, prefix: str) -> None:
    budget = RateBudget(client, prefix, per_minute=2, window_seconds=0.5)
    assert budget.try_take() == budget.try_take() == 0
    assert 0 < budget.try_take() <= 0.5
    time.sleep(0.55)
    assert budget.try_take() == 0


def test_take_blocks_until_a_slot_frees_up(client: redis.Redis, prefix: str) -> None:
    budget = RateBudget(client, prefix, per_minute=1, window_seconds=0.4, max_wait_seconds=5)
    budget.take()
    started = time.monotonic()
    budget.take()
    assert 0.2 < time.monotonic() - started < 2


def test_take_gives_up_after_its_bound_with_provider_rate_limited(client: redis.Redis, prefix: str) -> None:
    budget = RateBudget(client, prefix, per_minute=1, max_wait_seconds=0.3)
    budget.take()
    started = time.monotonic()
    with pytest.raises(ProviderFailure) as raised:
        budget.take()
    assert raised.value.code == "PROVIDER_RATE_LIMITED"
    assert raised.value.details["retryAfter"] >= 59
    assert time.monotonic() - started < 2


def test_exhaust_makes_every_sharer_wait_a_full_window(client: redis.Redis, prefix: str) -> None:
    budget = RateBudget(client, prefix, per_minute=45)
    assert budget.try_take() == 0
    RateBudget(client, prefix, per_minute=45).exhaust()
    assert budget.try_take() > 59


def test_exhaust_with_a_retry_after_holds_every_sharer_only_that_long(client: redis.Redis, prefix: str) -> None:
    budget = RateBudget(client, prefix, per_minute=45)
    RateBudget(client, prefix, per_minute=45).exhaust(retry_after_seconds=2)
    wait = budget.try_take()
    assert 1.0 < wait <= 2.0
    time.sleep(wait + 0.05)
    assert budget.try_take() == 0


def test_a_zero_budget_is_off(client: redis.Redis, prefix: str) -> None:
    budget = RateBudget(client, prefix, per_minute=0)
    assert all(budget.try_take() == 0 for _ in range(100))
    assert not client.exists(budget.key)


def test_concurrent_takers_never_exceed_the_limit(client: redis.Redis, prefix: str) -> None:
    granted: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        own = RateBudget(redis.Redis.from_url(Settings.from_env().redis_url), prefix, per_minute=10)
        for _ in range(5):
            wait = own.try_take()
            with lock:
                granted.append(wait)
        own.client.close()

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert granted.count(0.0) == 10
    assert len(granted) == 30
