"""Benchmark the sandbox: applied simple payments per second and payment-stream delivery latency.

Starts a sandbox subprocess (or uses `--url`), pre-signs USDC payments with stellar-sdk, submits them
concurrently over HTTP from this process, and prints the figures with the machine's core count.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator

import aiohttp
import requests
from stellar_sdk import Account, Asset, Keypair, TransactionBuilder

from scripts.bench.common import record

PASSPHRASE = "OFFER-HUB Sandbox Network ; 2026"


@contextlib.contextmanager
def sandbox(url: str | None) -> Iterator[str]:
    if url:
        yield url.rstrip("/")
        return
    env = {**os.environ, "SANDBOX_TW_REQUESTS_PER_MINUTE": "0", "SANDBOX_AIRTM_REQUESTS_PER_SECOND": "0"}
    process = subprocess.Popen(
        [sys.executable, "-m", "scripts.sandbox", "--port", "0"], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        yield line.split()[1]
    finally:
        process.kill()
        process.wait()


def prepare(base: str, sources: int, per_source: int) -> tuple[list[list[str]], str]:
    """Funded sources and one receiver; every envelope signed before timing starts."""
    http = requests.Session()
    http.post(f"{base}/_sandbox/reset", timeout=30)
    issuer = http.get(f"{base}/_sandbox/state", timeout=30).json()["usdc"]["issuer"]
    usdc = Asset("USDC", issuer)
    receiver = http.post(f"{base}/_sandbox/stellar/accounts", json={}, timeout=30).json()["publicKey"]
    batches = []
    for _ in range(sources):
        created = http.post(f"{base}/_sandbox/stellar/accounts", json={"usdc": "100000"}, timeout=30).json()
        key = Keypair.from_secret(created["secret"])
        sequence = int(http.get(f"{base}/horizon/accounts/{key.public_key}", timeout=30).json()["sequence"])
        account = Account(key.public_key, sequence)
        batch = []
        for _ in range(per_source):
            envelope = (
                TransactionBuilder(account, PASSPHRASE, 100)
                .append_payment_op(receiver, usdc, "1")
                .set_timeout(3600)
                .build()
            )
            envelope.sign(key)
            batch.append(envelope.to_xdr())
        batches.append(batch)
    return batches, receiver


async def submit_all(base: str, batches: list[list[str]]) -> tuple[float, int]:
    """One worker per source account (a source's envelopes must land in sequence order)."""
    connector = aiohttp.TCPConnector(limit=len(batches))
    applied = 0
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker(batch: list[str]) -> None:
            nonlocal applied
            for envelope in batch:
                async with session.post(f"{base}/horizon/transactions", data={"tx": envelope}) as reply:
                    await reply.read()
                    applied += reply.status == 200

        started = time.perf_counter()
        await asyncio.gather(*(worker(batch) for batch in batches))
        return time.perf_counter() - started, applied


async def stream_latency(base: str, batch: list[str]) -> list[float]:
    """Submit one at a time; latency = from sending the envelope to its record arriving on the stream.

    Like Horizon (stellar/go ``stream_handler.go``), the sandbox ends a stream after ``limit`` records
    with a "byebye"; the reader resumes from the last ``id`` it saw, as a Horizon client does (with the
    default limit of 10, a run of more samples used to wait for records on a closed stream)."""
    sent: list[float] = []
    latencies: list[float] = []
    arrived, opened = asyncio.Event(), asyncio.Event()
    async with aiohttp.ClientSession() as session:
        headers = {"Accept": "text/event-stream"}

        async def read() -> None:
            cursor = "now"
            while len(latencies) < len(batch):
                async with session.get(f"{base}/horizon/payments?cursor={cursor}&limit=200",
                                       headers=headers) as stream:
                    opened.set()
                    async for raw in stream.content:
                        if raw.startswith(b"id: "):
                            cursor = raw[4:].strip().decode()
                        elif raw.startswith(b"data: {"):
                            latencies.append(time.perf_counter() - sent[len(latencies)])
                            arrived.set()
                            if len(latencies) == len(batch):
                                return

        reader = asyncio.create_task(read())
        await asyncio.wait_for(opened.wait(), 10)
        for envelope in batch:
            arrived.clear()
            sent.append(time.perf_counter())
            async with session.post(f"{base}/horizon/transactions", data={"tx": envelope}) as reply:
                await reply.read()
            await asyncio.wait_for(arrived.wait(), 10)
        await asyncio.wait_for(reader, 30)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m scripts.bench.sandbox", description=__doc__)
    parser.add_argument("--url", help="a running sandbox (default: start one)")
    parser.add_argument("--sources", type=int, default=32)
    parser.add_argument("--per-source", type=int, default=150)
    parser.add_argument("--stream-samples", type=int, default=300)
    args = parser.parse_args()
    with sandbox(args.url) as base:
        batches, _ = prepare(base, args.sources, args.per_source)
        elapsed, applied = asyncio.run(submit_all(base, batches))
        stream_batches, _ = prepare(base, 1, args.stream_samples)
        latencies = sorted(asyncio.run(stream_latency(base, stream_batches[0])))
        balanced = requests.get(f"{base}/_sandbox/state", timeout=60).json()["conservation"]["balanced"]
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print(f"cores: {os.cpu_count()}")
    print(
        f"applied payments: {applied} in {elapsed:.2f} s = {applied / elapsed:.0f} tx/s "
        f"({args.sources} concurrent submitters)"
    )
    print(
        f"stream latency: p50 {statistics.median(latencies) * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms "
        f"({len(latencies)} samples)"
    )
    print(f"conservation balanced: {balanced}")
    record("sandbox ledger: applied payments", applied / elapsed, "tx/s")
    record("sandbox ledger: payment stream latency p99", p99 * 1000, "ms", kind="latency")


if __name__ == "__main__":
    main()
