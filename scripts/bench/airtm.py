"""The AirTM-mode instance of ``scripts.bench.lifecycle`` and its money-in/money-out mix (not a script of
its own).

* The instance: ``PAYMENT_PROVIDER=airtm`` with its own scratch database and queue/Redis prefixes, on the
  same sandbox (whose AirTM webhooks are pointed at it), with the Procfile's six processes and the same
  pools as the crypto instance (``common.start_system``): its chain pool activates the treasury pool
  ``bootstrap`` made and runs the escrow steps, so its lifecycles/s compare like for like.
* AirTM-mode lifecycles' set-up (not measured): users linked to AirTM accounts seeded at the sandbox,
  buyers funded by top-ups, each treasury account paid USDC by the sandbox's issuer and that float
  recorded (``offerhub reconcile --record-float``) so ``offerhub check`` compares the pool with it.

* Crypto withdrawals run on the lifecycle rig's own instance: ``withdrawers`` (extra users, funded in the
  set-up like the buyers) each ``POST /withdrawals`` to one external account, concurrently with the
  lifecycles; the request waits for the ledger payment (201 ``WITHDRAWAL_COMPLETED``).
* Top-ups and AirTM withdrawals run on the AirTM-mode instance, after its lifecycles. Each top-up
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

from scripts.bench.common import (
    ROOT,
    Instance,
    Rig,
    create_database,
    delete_queues,
    drop_database,
    free_port,
    local_database_url,
    say,
    start_system,
    stop_system,
)

if TYPE_CHECKING:
    import argparse

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
    pids: dict[str, int] = field(default_factory=dict)  # role -> pid of its processes

    @property
    def database_url(self) -> str:
        return local_database_url(self.database)


async def start_airtm(session: aiohttp.ClientSession, rig: Rig, args: argparse.Namespace) -> AirtmRig:
    """The second instance (migrated, bootstrapped, the Procfile's six processes with the rig's pools: its chain
    pool activates the treasury pool and runs the escrow steps), with the sandbox's webhooks pointed at it.
    ``args.treasury_accounts`` (0: the product's default) sizes the pool."""
    async with session.get(f"{rig.sandbox_url}/_sandbox/airtm/config") as reply:
        config = await reply.json()
    database = f"{rig.database}_airtm"
    create_database(database)
    port = free_port()
    prefix = f"{rig.env['QUEUE_PREFIX']}airtm_"
    env = {**rig.env, "DATABASE_URL": local_database_url(database),
           "PAYMENT_PROVIDER": "airtm", "PORT": str(port), "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
           "QUEUE_PREFIX": prefix, "REDIS_PREFIX": f"{rig.env['REDIS_PREFIX']}airtm:",
           "AIRTM_WEBHOOK_SECRET": config["webhookSecret"], "AIRTM_API_KEY": config["apiKey"],
           "AIRTM_API_SECRET": config["apiSecret"],
           "TOPUP_SUCCESS_REDIRECT_URL": "https://marketplace.example/ok",
           "TOPUP_CANCEL_REDIRECT_URL": "https://marketplace.example/no",
           **({"TREASURY_ACCOUNTS": str(args.treasury_accounts)} if getattr(args, "treasury_accounts", 0) else {})}
    instance = AirtmRig(env, database)
    instance.pids = await asyncio.to_thread(start_system, rig, "", args, env=env, label="airtm-")
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
    stop_system(rig, instance.pids)
    for action in (lambda: drop_database(instance.database),
                   lambda: delete_queues(rig.env["RABBITMQ_URL"], instance.env["QUEUE_PREFIX"])):
        try:
            action()
        except Exception as error:  # cleanup goes on
            say(f"could not clean the AirTM instance up: {error}")


# AirTM-mode lifecycles: the set-up (linked users, top-ups, a funded treasury pool), not measured


async def linked_users(session: aiohttp.ClientSession, rig: Rig, instance: AirtmRig, count: int,
                       tag: str) -> list[tuple[str, str]]:
    """``count`` users of the instance, each linked to a new AirTM account seeded at the sandbox (8 at a time);
    returns (user id, AirTM email)."""
    found: list[tuple[str, str]] = [("", "")] * count
    queue = iter(range(count))

    async def linker() -> None:
        for i in queue:
            email = f"bench-{rig.run}-{tag}-{i}@example.com"
            async with session.post(f"{rig.sandbox_url}/_sandbox/airtm/users", json={"email": email}) as reply:
                if reply.status != 201:
                    raise RuntimeError(f"seeding an AirTM user failed: {reply.status} {await reply.text()}")
            status, created = await _json(session, "POST", f"{instance.api}/users", instance.master_key,
                                          {"externalUserId": f"bench-{rig.run}-{tag}-{i}"})
            if status != 201:
                raise RuntimeError(f"creating a user failed: {status} {created}")
            user = created["data"]["id"]
            status, linked = await _json(session, "POST", f"{instance.api}/users/{user}/airtm/link",
                                         instance.master_key, {"email": email})
            if status != 200:
                raise RuntimeError(f"linking failed: {status} {linked}")
            found[i] = (user, email)

    await asyncio.gather(*(linker() for _ in range(min(8, count))))
    return found


async def top_up_all(session: aiohttp.ClientSession, rig: Rig, instance: AirtmRig,
                     needs: list[tuple[str, str, Decimal]], concurrency: int, wait_seconds: float) -> None:
    """Each (user, email, amount) tops up at AirTM: the POST, the buyer's confirmation at the sandbox, the
    webhook's credit (``TOPUP_SUCCEEDED``). Raises on the first that fails: the set-up is not measured."""
    semaphore = asyncio.Semaphore(concurrency)
    key, api = instance.master_key, instance.api

    async def one(user: str, email: str, amount: Decimal) -> None:
        async with semaphore:
            status, payload = await _json(session, "POST", f"{api}/topups", key,
                                          {"userId": user, "amount": f"{amount:.2f}"})
            if status != 201:
                raise RuntimeError(f"top-up: {status} {str(payload)[:200]}")
            data = payload["data"]
            async with session.post(f"{rig.sandbox_url}/_sandbox/airtm/payins/{data['airtmPayinId']}/confirm",
                                    json={"email": email}) as reply:
                if reply.status != 200:
                    raise RuntimeError(f"confirming a top-up failed: {reply.status} {await reply.text()}")
            await _until(session, f"{api}/topups/{data['id']}", key, "TOPUP_SUCCEEDED",
                         time.monotonic() + wait_seconds)

    await asyncio.gather(*(one(u, e, n) for u, e, n in needs if n > 0))


async def fund_pool(session: aiohttp.ClientSession, rig: Rig, instance: AirtmRig, per_account: Decimal,
                    seconds: float) -> int:
    """Wait until the chain pool activated ``bootstrap``'s treasury and settlement accounts, pay each treasury
    account ``per_account`` USDC from the sandbox's issuer (the operator's float), and record that float
    (``offerhub reconcile --record-float``) so that ``offerhub check`` compares the pool with it to the stroop.
    Returns the number of treasury accounts."""
    import psycopg

    deadline = time.monotonic() + seconds
    treasury: list[str] = []
    async with await psycopg.AsyncConnection.connect(instance.database_url, autocommit=True) as conn:
        while True:
            rig.processes.check_alive()
            cursor = await conn.execute("SELECT public_key, purpose, status FROM wallets WHERE purpose IS NOT NULL")
            rows = await cursor.fetchall()
            if rows and all(status == "ACTIVE" for _, _, status in rows):
                treasury = [key for key, purpose, _ in rows if purpose == "TREASURY"]
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the treasury pool was not activated within {seconds:.0f} s: {rows}")
            await asyncio.sleep(0.25)
    for key in treasury:
        async with session.post(f"{rig.sandbox_url}/_sandbox/stellar/pay", json={
                "from": "issuer", "to": key, "amount": f"{per_account:.7f}", "asset": "USDC"}) as reply:
            if reply.status != 200:
                raise RuntimeError(f"the sandbox refused to pay the pool: {reply.status} {await reply.text()}")
    for _ in range(30):  # a pool step still running (none should be) refuses the recording for a moment
        done = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "orchestrator", "reconcile",
                                                        "--record-float"], cwd=ROOT, env=instance.env,
                                       capture_output=True, text=True, timeout=300, check=False)
        if "the float was not recorded" not in done.stdout:
            return len(treasury)
        await asyncio.sleep(1)
    raise RuntimeError(f"the operator's float could not be recorded:\n{done.stdout}{done.stderr}")


async def orchestrator_check(env: dict[str, str]) -> tuple[int, list[str]]:
    """``python -m orchestrator check`` on an instance: its exit code and output lines."""
    done = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "orchestrator", "check"], cwd=ROOT,
                                   env=env, capture_output=True, text=True, timeout=600, check=False)
    return done.returncode, (done.stdout + done.stderr).strip().splitlines()


async def enterprise_balance(session: aiohttp.ClientSession, rig: Rig) -> Decimal:
    """The AirTM enterprise account's available balance at the sandbox."""
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
    before = await enterprise_balance(session, rig)
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
    moved = await enterprise_balance(session, rig) - before
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
