"""Runs chain steps on the ``chain`` queue; the message carries only the step id."""

from __future__ import annotations

from functools import cache

import dramatiq
import redis

from actors.broker import CHAIN, engine, settings
from actors.dispatch import dispatch
from orchestrator import chain_kinds, chain_steps, crypto
from orchestrator.db import create_sync_engine
from orchestrator.providers.horizon import Horizon
from orchestrator.providers.rate_budget import RateBudget
from orchestrator.providers.trustless import TrustlessClient


@cache
def context() -> chain_steps.ChainContext:
    keyring = crypto.Keyring.from_settings(settings.wallet_encryption_key, settings.wallet_encryption_key_previous)
    budget = None
    if settings.trustless_requests_per_minute > 0:  # one budget shared by every process (TW allows 50/min)
        budget = RateBudget(redis.Redis.from_url(settings.redis_url), settings.redis_prefix,
                            per_minute=settings.trustless_requests_per_minute)
    trustless = TrustlessClient(settings, budget=budget)
    # lock connections come from their own pool (one per busy thread at most, opened on demand). Keeping
    # 16 rather than 2 (issue 16) did not move lifecycles/s beyond the runs' spread; see actors/broker.engine
    locks = create_sync_engine(settings.database_url, pool_size=2, max_overflow=62)
    return chain_steps.ChainContext(engine(), settings, Horizon(settings), keyring, trustless, lock_engine=locks)


@dramatiq.actor(queue_name=CHAIN, max_retries=60, min_backoff=250, max_backoff=30_000)
def run_chain_step(step_id: str) -> None:
    """Move the step on; an unfinished one is retried with backoff (the state lives in its row)."""
    try:
        messages = chain_steps.run(context(), step_id, chain_kinds.ALL)
    except chain_steps.StepNotFinished as pending:
        raise dramatiq.Retry(str(pending)) from None
    dispatch(messages)
