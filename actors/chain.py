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

#: The chain process's threads in the Procfile (``--threads 16``): what its pools keep open.
CHAIN_THREADS = 16


@cache
def context() -> chain_steps.ChainContext:
    keyring = crypto.Keyring.from_settings(settings.wallet_encryption_key, settings.wallet_encryption_key_previous)
    budget = None
    if settings.trustless_requests_per_minute > 0:  # one budget shared by every process (TW allows 50/min)
        budget = RateBudget(redis.Redis.from_url(settings.redis_url), settings.redis_prefix,
                            per_minute=settings.trustless_requests_per_minute)
    trustless = TrustlessClient(settings, budget=budget)
    # Lock connections come from their own pool (one per busy thread at most). It keeps one per thread
    # (the Procfile's 16): with two kept, each step past the second opened a connection and closed it
    # again (psycopg's connect in the chain's py-spy profile).
    locks = create_sync_engine(settings.database_url, pool_size=CHAIN_THREADS, max_overflow=48)
    return chain_steps.ChainContext(engine(), settings, Horizon(settings), keyring, trustless, lock_engine=locks)


@dramatiq.actor(queue_name=CHAIN, max_retries=60, min_backoff=250, max_backoff=30_000)
def run_chain_step(step_id: str) -> None:
    """Move the step on; an unfinished one is retried with backoff (the state lives in its row)."""
    try:
        messages = chain_steps.run(context(), step_id, chain_kinds.ALL)
    except chain_steps.StepNotFinished as pending:
        raise dramatiq.Retry(str(pending)) from None
    dispatch(messages)
