"""The money-in/money-out part of ``scripts/bench_lifecycle.py``'s mix (not a script of its own).

* Crypto withdrawals run on the lifecycle rig's own instance: ``withdrawers`` (extra users, funded in the
  set-up like the buyers) each ``POST /withdrawals`` to one external account, concurrently with the
  lifecycles; the request waits for the ledger payment (201 ``WITHDRAWAL_COMPLETED``).
* Top-ups and AirTM withdrawals need ``PAYMENT_PROVIDER=airtm``, which runs as a second instance
  (DESIGN decision 5): its own scratch database, queue/Redis prefixes and the Procfile's ``web``,
  ``worker`` and ``scheduler``, on the same sandbox, whose AirTM webhooks are pointed at it. Each top-up
  is ``POST /topups`` (201 with the checkout URL), the buyer's confirmation through the sandbox's
  control plane, then the webhook credits it; the figure is the time from the POST to
  ``TOPUP_SUCCEEDED`` as ``GET /topups/{id}`` shows it. Each AirTM withdrawal is ``POST /withdrawals``
  with ``commit: true`` (the sandbox settles payouts at once: ``payoutDelaySeconds`` 0) until
  ``WITHDRAWAL_COMPLETED``.

Checks: every one finished; the external account received exactly the crypto withdrawals; on the AirTM
instance each user's ``available`` equals its top-up less its withdrawal, the enterprise balance moved
by exactly the top-ups less the payouts, and ``python -m orchestrator check`` exits 0.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from scripts.bench_common import (
    ROOT,
    Instance,
    Rig,
    create_database,
    delete_queues,
    drop_database,
    free_port,
    say,
)

if TYPE_CHECKING:
    import aiohttp


@dataclass
class Flow:
    """One top-up, withdrawal or payout: its request latency and its time to the final state."""

    kind: str
    request_ms: float = 0.0
    total_ms: float = 0.0
    error: str = ""

    async def run(self, label: str, steps: Callable[[Callable[[], None]], Awaitable[str]]) -> None:
        """Time ``steps``: it calls ``answered()`` when its first request is answered and returns an error
        ("" once the flow reached its final state). An exception is the flow's error too: a failed flow
        is reported, the others go on. ``total_ms`` is set only for a flow that succeeded."""
        began = time.perf_counter()

        def answered() -> None:
            self.request_ms = (time.perf_counter() - began) * 1000

        try:
            self.error = await steps(answered)
        except Exception as error:
            self.error = f"{label}: {type(error).__name__} {error}"[:200]
        if not self.error:
            self.total_ms = (time.perf_counter() - began) * 1000


@dataclass
class MoneyResult:
    flows: list[Flow] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # kind -> wall time of its phase
    checks: list[tuple[bool, str]] = field(default_factory=list)

    def of(self, kind: str) -> list[Flow]:
        return [f for f in self.flows if f.kind == kind]


async def _json(session: aiohttp.ClientSession, method: str, url: str, key: str,
                body: dict[str, Any] | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    async with session.request(method, url, headers=headers,
                               data=json.dumps(body) if body is not None else None) as reply:
        return reply.status, await reply.json(content_type=None)


async def _until(session: aiohttp.ClientSession, url: str, key: str, status: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        code, payload = await _json(session, "GET", url, key)
        if code == 200 and payload["data"]["status"] == status:
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{url} did not reach {status}")


# Crypto withdrawals on the rig's own instance


async def crypto_withdrawal(session: aiohttp.ClientSession, rig: Rig, user: str, destination: str,
                            amount: str, flow: Flow, wait_seconds: float) -> None:
    async def steps(answered: Callable[[], None]) -> str:
        status, payload = await _json(session, "POST", f"{rig.api}/withdrawals", rig.master_key, {
            "userId": user, "amount": amount, "destinationType": "crypto", "destinationRef": destination})
        answered()
        if status == 202:
            await _until(session, f"{rig.api}/withdrawals/{payload['data']['id']}", rig.master_key,
                         "WITHDRAWAL_COMPLETED", time.monotonic() + wait_seconds)
        elif status != 201 or payload["data"]["status"] != "WITHDRAWAL_COMPLETED":
            return f"withdrawal: {status} {str(payload)[:120]}"
        return ""

    await flow.run("withdrawal", steps)


# The AirTM instance


@dataclass
class AirtmRig(Instance):
    env: dict[str, str]
    database: str


async def start_airtm(session: aiohttp.ClientSession, rig: Rig, threads: int) -> AirtmRig:
    """The second instance (migrated and bootstrapped), with the sandbox's webhooks pointed at it."""
    async with session.get(f"{rig.sandbox_url}/_sandbox/airtm/config") as reply:
        config = await reply.json()
    database = f"{rig.database}_airtm"
    create_database(database)
    port = free_port()
    prefix = f"{rig.env['QUEUE_PREFIX']}airtm_"
    env = {**rig.env, "DATABASE_URL": f"postgresql://postgres@127.0.0.1:5432/{database}",
           "PAYMENT_PROVIDER": "airtm", "PORT": str(port), "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
           "QUEUE_PREFIX": prefix, "REDIS_PREFIX": f"{rig.env['REDIS_PREFIX']}airtm:",
           "AIRTM_WEBHOOK_SECRET": config["webhookSecret"], "AIRTM_API_KEY": config["apiKey"],
           "AIRTM_API_SECRET": config["apiSecret"],
           "TOPUP_SUCCESS_REDIRECT_URL": "https://marketplace.example/ok",
           "TOPUP_CANCEL_REDIRECT_URL": "https://marketplace.example/no"}
    done = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "orchestrator", "bootstrap"], cwd=ROOT,
                                   env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"bootstrapping the AirTM instance failed:\n{done.stdout}{done.stderr}")
    python = sys.executable
    for name, command in {
        "airtm-web": [python, "-m", "web"],
        "airtm-worker": [python, "-m", "dramatiq", "actors", "--processes", "1", "--threads", str(threads),
                         "--queues", f"{prefix}commands", f"{prefix}events"],
        "airtm-scheduler": [python, "-m", "orchestrator", "scheduler"],
    }.items():
        child = rig.processes.start(name, command, env)
        rig.groups[child.process.pid], rig.pids[name] = "airtm instance", child.process.pid
    instance = AirtmRig(env, database)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        rig.processes.check_alive()
        try:
            async with session.get(f"{instance.api}/health") as reply:
                if reply.status == 200:
                    break
        except OSError:
            pass
        await asyncio.sleep(0.2)
    else:
        raise RuntimeError("the AirTM instance did not become healthy")
    async with session.post(f"{rig.sandbox_url}/_sandbox/airtm/config", json={
            "webhookUrl": f"{instance.api}/webhooks/airtm", "payoutDelaySeconds": 0}) as reply:
        if reply.status != 200:
            raise RuntimeError(f"configuring the sandbox's AirTM failed: {await reply.text()}")
    return instance


def stop_airtm(rig: Rig, instance: AirtmRig) -> None:
    """Stop its processes, drop its database and queues (the rig's cleanup removes the Redis keys)."""
    for child in [c for c in rig.processes.children if c.name.startswith("airtm-")]:
        rig.processes.stop(child)
    for action in (lambda: drop_database(instance.database),
                   lambda: delete_queues(rig.env["RABBITMQ_URL"], instance.env["QUEUE_PREFIX"])):
        try:
            action()
        except Exception as error:  # cleanup goes on
            say(f"could not clean the AirTM instance up: {error}")


async def _enterprise(session: aiohttp.ClientSession, rig: Rig) -> Decimal:
    async with session.get(f"{rig.sandbox_url}/_sandbox/airtm/config") as reply:
        return Decimal(str((await reply.json())["enterpriseBalance"]))


async def airtm_mix(session: aiohttp.ClientSession, rig: Rig, instance: AirtmRig, *, topups: int,
                    payouts: int, concurrency: int, amount: str, wait_seconds: float) -> MoneyResult:
    """``topups`` top-ups, then ``payouts`` AirTM withdrawals (one per topped-up user), ``concurrency`` at once."""
    result = MoneyResult()
    key, api = rig.master_key, instance.api
    users: list[tuple[str, str]] = []
    for i in range(topups):
        email = f"bench-{rig.run}-{i}@example.com"
        async with session.post(f"{rig.sandbox_url}/_sandbox/airtm/users", json={"email": email}) as reply:
            assert reply.status == 201, await reply.text()
        _, created = await _json(session, "POST", f"{api}/users", key, {"externalUserId": f"bench-airtm-{i}"})
        user = created["data"]["id"]
        status, linked = await _json(session, "POST", f"{api}/users/{user}/airtm/link", key, {"email": email})
        if status != 200:
            raise RuntimeError(f"linking failed: {status} {linked}")
        users.append((user, email))
    before = await _enterprise(session, rig)
    semaphore = asyncio.Semaphore(concurrency)

    async def topup(user: str, email: str) -> None:
        flow = Flow("top-up")
        result.flows.append(flow)

        async def steps(answered: Callable[[], None]) -> str:
            status, payload = await _json(session, "POST", f"{api}/topups", key, {"userId": user, "amount": amount})
            answered()
            if status != 201:
                return f"top-up: {status} {str(payload)[:120]}"
            data = payload["data"]
            async with session.post(f"{rig.sandbox_url}/_sandbox/airtm/payins/{data['airtmPayinId']}/confirm",
                                    json={"email": email}) as reply:
                if reply.status != 200:
                    return f"confirm: {reply.status}"
            await _until(session, f"{api}/topups/{data['id']}", key, "TOPUP_SUCCEEDED",
                         time.monotonic() + wait_seconds)
            return ""

        async with semaphore:
            await flow.run("top-up", steps)

    async def payout(user: str) -> None:
        flow = Flow("AirTM withdrawal")
        result.flows.append(flow)

        async def steps(answered: Callable[[], None]) -> str:
            status, payload = await _json(session, "POST", f"{api}/withdrawals", key, {
                "userId": user, "amount": amount, "destinationType": "airtm_balance",
                "destinationRef": user, "commit": True})
            answered()
            if status != 201:
                return f"AirTM withdrawal: {status} {str(payload)[:120]}"
            await _until(session, f"{api}/withdrawals/{payload['data']['id']}", key, "WITHDRAWAL_COMPLETED",
                         time.monotonic() + wait_seconds)
            return ""

        async with semaphore:
            await flow.run("AirTM withdrawal", steps)

    started = time.perf_counter()
    await asyncio.gather(*(topup(u, e) for u, e in users))
    result.seconds["top-up"] = time.perf_counter() - started
    started = time.perf_counter()
    await asyncio.gather(*(payout(u) for u, _ in users[:payouts]))
    result.seconds["AirTM withdrawal"] = time.perf_counter() - started

    paid_in = Decimal(amount) * sum(1 for f in result.of("top-up") if not f.error)
    paid_out = Decimal(amount) * sum(1 for f in result.of("AirTM withdrawal") if not f.error)
    moved = await _enterprise(session, rig) - before
    result.checks.append((moved == paid_in - paid_out, f"AirTM enterprise balance moved by {moved} = top-ups "
                                                      f"{paid_in} - payouts {paid_out}"))
    wrong = []
    for i, (user, _) in enumerate(users):
        _, balance = await _json(session, "GET", f"{api}/users/{user}/balance", key)
        expected = Decimal(amount) - (Decimal(amount) if i < payouts else Decimal(0))
        if Decimal(balance["data"]["available"]) != expected:
            wrong.append(f"{user}: {balance['data']['available']} != {expected}")
    result.checks.append((not wrong, f"AirTM instance: {len(users) - len(wrong)} of {len(users)} balances = "
                                     f"top-up - withdrawal" + (f"; {'; '.join(wrong[:3])}" if wrong else "")))
    done = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "orchestrator", "check"], cwd=ROOT,
                                   env=instance.env, capture_output=True, text=True, timeout=600, check=False)
    result.checks.append((done.returncode == 0, f"AirTM instance: python -m orchestrator check: exit "
                                                f"{done.returncode} ({done.stdout.strip().splitlines()[-1:]})"))
    return result
