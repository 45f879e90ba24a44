"""The chaos run's load: mixed lifecycles driven through the API as a marketplace would, and SSE listeners.

Each lane owns one buyer and one seller of one backing (DESIGN decision 26) and runs lifecycles one after
another, so the lane always knows what its users' balances should allow. A ``WALLET`` lane's users have
wallets: money comes in by a real ledger deposit and leaves by a crypto withdrawal to the lane's outside
account, and its orders are funded by the buyer's wallet. An ``AIRTM`` lane's users are linked to AirTM
accounts seeded in the sandbox: money comes in by a top-up the buyer confirms on AirTM's checkout and leaves
by an AirTM payout, and its orders are escrowed on Stellar funded by the platform's treasury pool
(``fundingMode`` ``TREASURY``). Both kinds of lanes draw from one list of lifecycles on one instance. Every
step is driven from the order's state as the API shows it (read, act, read again), so a lost answer,
a killed ``web`` or a rolled-back step only means "read and act again": a marketplace can do no more.
A POST whose answer was lost is retried with the same ``Idempotency-Key`` (api.md §1.10); a POST that
was answered (even ``502``) is never repeated with the same key.

What the driver did is kept in ``Facts`` (deposits paid on the ledger, withdrawals made, each
lifecycle's order and expected final status) for the checks at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, ROUND_UP, Decimal
from typing import Any

import aiohttp

from scripts.chaos.faults import parse_weights
from scripts.chaos.rig import say

#: ``deposit`` and ``withdrawal`` follow the lane's backing: a ledger deposit or an AirTM top-up, a crypto
#: withdrawal or an AirTM payout.
KINDS = ("release", "refund", "dispute_full_release", "dispute_full_refund", "dispute_split", "cancel", "withdrawal",
         "deposit")
DEFAULT_MIX = {"release": 25, "refund": 15, "dispute_full_release": 10, "dispute_full_refund": 10,
               "dispute_split": 10, "cancel": 5, "withdrawal": 15, "deposit": 15}
FINAL_STATUS = {"release": "RELEASED", "refund": "REFUNDED", "dispute_full_release": "RELEASED",
                "dispute_full_refund": "REFUNDED", "dispute_split": "RELEASED", "cancel": "CANCELED"}
WALLET, AIRTM = "WALLET", "AIRTM"
TOPUP_MIN = Decimal("1.00")  # LIMIT_TOPUP_MIN's default
DECISION = {"dispute_full_release": "FULL_RELEASE", "dispute_full_refund": "FULL_REFUND", "dispute_split": "SPLIT"}
CENT = Decimal("0.01")
WITHDRAWAL_MIN = Decimal("10.00")  # LIMIT_WITHDRAWAL_MIN's default
WAIT = {"Prefer": "wait=5"}
#: After acting on a state, the driver polls this long for it to change before it asks again.
REPOST_AFTER = 30.0


def parse_mix(text: str) -> dict[str, int]:
    """``release=30,refund=10,…`` (kinds left out get 0); the default mix when empty."""
    mix = parse_weights(text, DEFAULT_MIX, KINDS, what="lifecycle kind")
    if not any(mix.values()):
        raise ValueError("the lifecycle mix has no weight")
    return mix


class Unavailable(Exception):
    """The API did not answer for longer than the driver is willing to wait."""


@dataclass
class Deposit:
    user_id: str
    wallet: str
    amount: Decimal
    tx_hash: str
    operation_id: str


@dataclass
class Withdrawal:
    id: str
    user_id: str
    destination: str  # the outside account, or "" for an AirTM payout
    amount: Decimal


@dataclass
class Topup:
    id: str
    user_id: str
    amount: Decimal
    payin_id: str = ""
    confirmed: bool = False


@dataclass
class Lifecycle:
    index: int
    kind: str
    lane: int
    backing: str = WALLET
    order_id: str = ""
    outcome: str = ""  # "done" or what stopped it
    steps: int = 0
    started: float = 0.0
    finished: float = 0.0
    funding_mode: str = ""  # the order's fundingMode once funded
    funded_seen: float = 0.0  # when the driver first read the order funded (IN_PROGRESS or DISPUTED)
    settle_answered: float = 0.0  # when the first settling call (release, refund, dispute) was answered

    def spans(self, started: float, ended: float) -> bool:
        """Funded before a switch began and settled by a call answered after it ended: funded in one mode,
        finished in the other."""
        return self.outcome == "done" and 0 < self.funded_seen < started and self.settle_answered > ended


@dataclass
class Lane:
    index: int
    buyer: str
    seller: str
    buyer_wallet: str  # "" on an AIRTM lane (its users have no wallet)
    seller_wallet: str
    outside: str  # an account outside the system: a WALLET lane's withdrawals' destination ("" on AIRTM)
    random: random.Random
    backing: str = WALLET
    emails: dict[str, str] = field(default_factory=dict)  # an AIRTM lane's user id -> linked AirTM e-mail

    @property
    def name(self) -> str:
        return f"{self.backing.lower()} lane {self.index}"


@dataclass
class Facts:
    """What the driver did, for the checks."""

    lifecycles: list[Lifecycle] = field(default_factory=list)
    deposits: list[Deposit] = field(default_factory=list)
    withdrawals: dict[str, Withdrawal] = field(default_factory=dict)
    topups: dict[str, Topup] = field(default_factory=dict)
    lanes: list[Lane] = field(default_factory=list)
    retried_requests: int = 0
    pending_creates: int = 0  # creates sent again with their key after a 202 without the resource
    answers: Counter[str] = field(default_factory=Counter)  # status codes seen

    def done(self) -> list[Lifecycle]:
        return [life for life in self.lifecycles if life.outcome == "done"]


class Api:
    """The API as a marketplace's backend sees it, patient with a system that is being shot at."""

    def __init__(self, session: aiohttp.ClientSession, base: str, key: str, facts: Facts,
                 patience: float = 180.0) -> None:
        self.session, self.base, self.key, self.facts, self.patience = session, base, key, facts, patience

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None,
                   headers: dict[str, str] | None = None, key: str | None = None) -> tuple[int, Any]:
        """One logical request: retried (same ``Idempotency-Key`` for a POST) until it is answered."""
        sent = {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json", **(headers or {})}
        if method == "POST":
            sent["Idempotency-Key"] = key or str(uuid.uuid4())
        deadline = time.monotonic() + self.patience
        tries = 0
        while True:
            tries += 1
            try:
                async with self.session.request(method, self.base + path, headers=sent,
                                                data=json.dumps(body) if body is not None else None) as response:
                    text = await response.text()
                    payload = json.loads(text) if text and response.content_type == "application/json" else text
                    self.facts.answers[str(response.status)] += 1
                    code = payload.get("error", {}).get("code") if isinstance(payload, dict) else None
                    # unanswered in substance: a proxy-level error without our envelope, the twin in flight,
                    # or a 503 (the database unreachable, errors.md: retry)
                    if (response.status >= 500 and not isinstance(payload, dict)) or response.status == 503 \
                            or code in ("IDEMPOTENCY_KEY_IN_PROGRESS", "INTERNAL_ERROR"):
                        raise aiohttp.ServerDisconnectedError(f"{response.status} {code}")
                    if tries > 1:
                        self.facts.retried_requests += 1
                    return response.status, payload
            except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as error:
                if time.monotonic() > deadline:
                    raise Unavailable(f"{method} {path}: {type(error).__name__} {error}") from error
                await asyncio.sleep(min(0.25 * tries, 2.0))

    async def get(self, path: str) -> Any:
        status, payload = await self.call("GET", path)
        if status != 200:
            raise Unavailable(f"GET {path} answered {status}: {str(payload)[:200]}")
        return payload["data"]


def money(value: Decimal) -> str:
    return str(value.quantize(CENT, rounding=ROUND_DOWN))


class Driver:
    def __init__(self, api: Api, sandbox: aiohttp.ClientSession, sandbox_url: str, database_url: str,
                 facts: Facts, run: str, step_timeout: float) -> None:
        self.api, self.sandbox, self.sandbox_url = api, sandbox, sandbox_url
        self.database_url, self.facts, self.run, self.step_timeout = database_url, facts, run, step_timeout
        #: Set by the switcher before a provider switch: a lane that reads its order funded waits for it (so
        #: the order is settled in the other mode); ``held`` counts the orders waiting, by lane backing.
        self.hold: asyncio.Event | None = None
        self.held: Counter[str] = Counter()

    async def money_in(self, lane: Lane, amount: Decimal) -> None:
        """Credit the lane's buyer with at least ``amount``: a ledger deposit or an AirTM top-up."""
        if lane.backing == AIRTM:
            await self.topup(lane, max(amount.quantize(CENT, rounding=ROUND_UP), TOPUP_MIN))
        else:
            await self.deposit(lane, amount)

    # ------------------------------------------------------------------------------------------
    # money in: a real ledger payment from the USDC issuer, credited by the monitor

    async def deposit(self, lane: Lane, amount: Decimal) -> Deposit:
        amount = amount.quantize(CENT, rounding=ROUND_UP)  # the book holds sub-cent value after fees
        body = {"from": "issuer", "to": lane.buyer_wallet, "amount": money(amount), "asset": "USDC"}
        for _ in range(20):
            async with self.sandbox.post(f"{self.sandbox_url}/_sandbox/stellar/pay", json=body) as reply:
                if reply.status == 200:
                    paid = await reply.json()
                    break
            await asyncio.sleep(0.5)
        else:
            raise Unavailable("the sandbox refused the deposit payment")
        deposit = Deposit(lane.buyer, lane.buyer_wallet, amount, paid["hash"], str(paid["operationId"]))
        self.facts.deposits.append(deposit)
        await self.until(lambda: self.deposit_credited(deposit), "deposit credited")
        return deposit

    async def deposit_credited(self, deposit: Deposit) -> bool:
        import psycopg

        try:
            async with await psycopg.AsyncConnection.connect(self.database_url, autocommit=True) as conn:
                cursor = await conn.execute("SELECT status FROM deposits WHERE tx_hash = %s", (deposit.tx_hash,))
                row = await cursor.fetchone()
        except psycopg.OperationalError:  # the shared server full for a moment (other users): read again
            return False
        return row is not None and row[0] == "CREDITED"

    async def available(self, user_id: str) -> Decimal:
        return Decimal((await self.api.get(f"/users/{user_id}/balance"))["available"])

    async def until(self, predicate: Any, what: str, seconds: float | None = None) -> None:
        deadline = time.monotonic() + (seconds or self.step_timeout)
        while not await predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"gave up waiting for {what}")
            await asyncio.sleep(0.2)

    async def create(self, api: Api, path: str, body: dict[str, Any], headers: dict[str, str] | None = None,
                     ) -> tuple[int, Any, str]:
        """POST a create until the answer names the resource: a ``202`` before the command ran has none
        (api.md §1.12), so the same request is sent again with the same ``Idempotency-Key``, whose
        replay answers with the resource once the command ran. Returns the last answer and the id
        (from ``data`` or, for a refused withdrawal, the error's details), or "" when it never came."""
        key = str(uuid.uuid4())
        deadline = time.monotonic() + self.step_timeout
        while True:
            status, payload = await api.call("POST", path, body, headers=headers, key=key)
            data = payload.get("data") if isinstance(payload, dict) else None
            error = payload.get("error") if isinstance(payload, dict) else None
            found = (data or {}).get("id") if isinstance(data, dict) else None
            found = found or ((error or {}).get("details") or {}).get("withdrawalId")
            if found or status != 202 or time.monotonic() > deadline:
                return status, payload, str(found or "")
            self.facts.pending_creates += 1
            await asyncio.sleep(1)

    # ------------------------------------------------------------------------------------------
    # lifecycles

    async def lifecycle(self, lane: Lane, life: Lifecycle) -> None:
        life.started = time.monotonic()
        try:
            if life.kind == "deposit":
                await self.money_in(lane, Decimal(lane.random.randint(100, 2000)) / 100)
            elif life.kind == "withdrawal":
                await self.withdrawal(lane, life)
            else:
                await self.order(lane, life)
            life.outcome = "done"
        except (Unavailable, TimeoutError) as error:
            life.outcome = f"{type(error).__name__}: {error}"[:300]
        except Exception as error:  # a driver bug must not stop the other lanes; it is reported
            life.outcome = f"driver error {type(error).__name__}: {error}"[:300]
        if life.outcome != "done":
            say(f"lifecycle #{life.index} ({life.kind}, {life.order_id or 'no order'}) gave up: {life.outcome}")
        life.finished = time.monotonic()

    async def order(self, lane: Lane, life: Lifecycle) -> None:
        amount = Decimal(lane.random.randint(1000, 5000)) / 100
        have = await self.available(lane.buyer)
        if have < amount:
            await self.money_in(lane, amount - have)
        status, payload, order_id = await self.create(self.api, "/orders", {
            "buyerId": lane.buyer, "sellerId": lane.seller, "amount": money(amount),
            "title": f"Chaos {life.kind} {life.index}", "clientOrderRef": f"chaos-{self.run}-{life.index}"})
        if status not in (200, 201, 202) or not order_id:
            raise Unavailable(f"POST /orders answered {status}: {str(payload)[:200]}")
        life.order_id = order_id
        deadline = time.monotonic() + self.step_timeout * 4
        refusals: Counter[str] = Counter()
        acted_on, acted_at = "", 0.0
        last_state = ""
        state_since = time.monotonic()
        while time.monotonic() < deadline:
            order = await self.api.get(f"/orders/{life.order_id}")
            state = f"{order['status']}/{(order.get('escrow') or {}).get('status')}"
            if state != last_state:
                last_state, state_since = state, time.monotonic()
            elif time.monotonic() - state_since > self.step_timeout:
                raise TimeoutError(f"order {life.order_id} stayed {state} for {self.step_timeout:.0f} s")
            if order["status"] in ("IN_PROGRESS", "DISPUTED", "CLOSED") and not life.funded_seen \
                    and order.get("fundingMode"):
                life.funded_seen, life.funding_mode = time.monotonic(), order["fundingMode"]
            if order["status"] == "CLOSED":
                if order.get("finalStatus") != FINAL_STATUS[life.kind]:
                    raise Unavailable(f"order {life.order_id} closed {order.get('finalStatus')}, "
                                      f"expected {FINAL_STATUS[life.kind]}")
                return
            if order["status"] == "IN_PROGRESS" and self.hold is not None and not life.settle_answered:
                hold, waited = self.hold, time.monotonic()
                self.held[lane.backing] += 1
                try:
                    await hold.wait()  # funded in this mode, settled in the next
                finally:
                    self.held[lane.backing] -= 1
                deadline += time.monotonic() - waited
                state_since = time.monotonic()
                continue
            if state == acted_on and time.monotonic() - acted_at < REPOST_AFTER:
                await asyncio.sleep(0.3)  # asked already: give the system time before asking again
                continue
            answer = await self.next_step(lane, life, order, amount)
            if answer is None:
                await asyncio.sleep(0.3)
                continue
            life.steps += 1
            status, payload = answer
            acted_on, acted_at = state, time.monotonic()
            if order["status"] == "IN_PROGRESS" and not life.settle_answered:
                life.settle_answered = acted_at
            if 400 <= status < 500:
                code = (payload.get("error") or {}).get("code") if isinstance(payload, dict) else None
                refusals[f"{order['status']} {status} {code}"] += 1
                if code == "INSUFFICIENT_FUNDS":
                    await self.money_in(lane, amount - await self.available(lane.buyer))
                    acted_on = ""
                if max(refusals.values()) >= 10:
                    raise Unavailable(f"order {life.order_id}: refused again and again: {dict(refusals)}")
                await asyncio.sleep(0.3)
        raise TimeoutError(f"order {life.order_id} not closed in time (last {last_state})")

    async def next_step(self, lane: Lane, life: Lifecycle, order: dict[str, Any],
                        amount: Decimal) -> tuple[int, Any] | None:
        """Act on the order's state once (the answer); None when there is nothing to do but wait."""
        oid, status = life.order_id, order["status"]
        escrow = (order.get("escrow") or {}).get("status")
        post: tuple[str, dict[str, Any] | None] | None = None
        if status == "ORDER_CREATED":
            post = (f"/orders/{oid}/reserve", None)
        elif status == "FUNDS_RESERVED" and life.kind == "cancel":
            post = (f"/orders/{oid}/cancel", {"reason": "Buyer changed their mind", "canceledBy": "BUYER"})
        elif status == "FUNDS_RESERVED":
            post = (f"/orders/{oid}/escrow", None)
        elif status == "ESCROW_CREATING" and escrow == "CREATED":
            post = (f"/orders/{oid}/escrow/fund", None)
        elif status == "IN_PROGRESS":
            if life.kind == "release":
                post = (f"/orders/{oid}/resolution/release", None)
            elif life.kind == "refund":
                post = (f"/orders/{oid}/resolution/refund", {"reason": "Seller cancelled"})
            else:
                post = (f"/orders/{oid}/resolution/dispute", {"openedBy": "BUYER", "reason": "QUALITY_ISSUE"})
        elif status == "DISPUTED":
            disputes = await self.api.get(f"/disputes?orderId={oid}")
            open_ = [d for d in disputes if d["status"] in ("OPEN", "UNDER_REVIEW")]
            if not open_:
                return None
            decision = DECISION.get(life.kind, "FULL_REFUND")
            body: dict[str, Any] = {"decision": decision, "note": "chaos"}
            if decision == "SPLIT":
                release = (amount * Decimal(lane.random.randint(10, 90)) / 100).quantize(CENT, rounding=ROUND_DOWN)
                body.update(releaseAmount=money(release), refundAmount=money(amount - release))
            post = (f"/disputes/{open_[0]['id']}/resolve", body)
        if post is None:
            return None
        return await self.api.call("POST", post[0], post[1], headers=WAIT)

    async def withdrawal(self, lane: Lane, life: Lifecycle) -> None:
        """The seller's balance out (the buyer's when the seller has too little): to the lane's outside account
        on the ledger, or an AirTM payout committed at once, which the sandbox completes."""
        user = lane.seller
        have = await self.available(user)
        if have < WITHDRAWAL_MIN:
            user, have = lane.buyer, await self.available(lane.buyer)
            if have < WITHDRAWAL_MIN:
                await self.money_in(lane, WITHDRAWAL_MIN * 2 - have)
                have = await self.available(lane.buyer)
        amount = min(have, Decimal(lane.random.randint(1000, 3000)) / 100).quantize(CENT, rounding=ROUND_DOWN)
        body: dict[str, Any] = {"userId": user, "amount": money(amount), "destinationType": "crypto",
                                "destinationRef": lane.outside}
        if lane.backing == AIRTM:
            body.update(destinationType="bank", destinationRef=f"chaos-{self.run}", commit=True)
        status, payload, withdrawal_id = await self.create(self.api, "/withdrawals", body,
                                                           headers={"Prefer": "wait=30"})
        if not withdrawal_id:
            raise Unavailable(f"POST /withdrawals answered {status} without a withdrawal: {str(payload)[:200]}")
        self.facts.withdrawals[withdrawal_id] = Withdrawal(withdrawal_id, user, lane.outside, amount)
        life.order_id = withdrawal_id

        async def settled() -> bool:
            read = await self.api.get(f"/withdrawals/{withdrawal_id}")
            return read["status"] in ("WITHDRAWAL_COMPLETED", "WITHDRAWAL_FAILED", "WITHDRAWAL_CANCELED")

        await self.until(settled, f"withdrawal {withdrawal_id} settled")

    async def topup(self, lane: Lane, amount: Decimal) -> Topup:
        """An AirTM top-up of an AIRTM lane's buyer: created, confirmed by the buyer on AirTM's page (the
        sandbox's control plane), credited when AirTM's webhook or the scheduler's refresh says so."""
        body = {"userId": lane.buyer, "amount": money(amount), "returnUrl": "https://marketplace.example/ok",
                "cancelUrl": "https://marketplace.example/no"}
        status, payload, topup_id = await self.create(self.api, "/topups", body, headers={"Prefer": "wait=30"})
        if status not in (200, 201, 202) or not topup_id:
            raise Unavailable(f"POST /topups answered {status}: {str(payload)[:200]}")
        topup = self.facts.topups[topup_id] = Topup(topup_id, lane.buyer, amount)

        async def awaiting() -> bool:
            read = await self.api.get(f"/topups/{topup_id}")
            topup.payin_id = read.get("airtmPayinId") or ""
            return bool(topup.payin_id) and read["status"] != "TOPUP_CREATED"

        await self.until(awaiting, f"top-up {topup_id} at AirTM")
        for _ in range(60):
            async with self.sandbox.post(f"{self.sandbox_url}/_sandbox/airtm/payins/{topup.payin_id}/confirm",
                                         json={"email": lane.emails[lane.buyer]}) as reply:
                if reply.status < 500:
                    topup.confirmed = reply.status < 300
                    break
            await asyncio.sleep(0.5)
        if not topup.confirmed:
            raise Unavailable(f"the sandbox would not confirm pay-in {topup.payin_id}")

        async def succeeded() -> bool:
            read = await self.api.get(f"/topups/{topup_id}")
            if read["status"] in ("TOPUP_FAILED", "TOPUP_CANCELED", "TOPUP_EXPIRED"):
                raise Unavailable(f"top-up {topup_id} ended {read['status']}: {read.get('failureReason')}")
            return bool(read["status"] == "TOPUP_SUCCEEDED")

        await self.until(succeeded, f"top-up {topup_id} succeeded")
        return topup


# ----------------------------------------------------------------------------------------------
# Set-up: lanes of users with active wallets and an outside account each


async def make_lanes(api: Api, sandbox: aiohttp.ClientSession, sandbox_url: str, database_url: str, count: int,
                     seed: int, run: str, seconds: float) -> list[Lane]:
    import psycopg

    users: list[str] = []
    for i in range(count * 2):
        _, payload = await api.call("POST", "/users", {"externalUserId": f"chaos-{run}-{i}"})
        users.append(payload["data"]["id"])
    deadline = time.monotonic() + seconds
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        while True:
            cursor = await conn.execute("SELECT user_id, public_key FROM wallets WHERE status = 'ACTIVE' "
                                        "AND user_id = ANY(%s)", (users,))
            wallets = {row[0]: row[1] for row in await cursor.fetchall()}
            if len(wallets) == len(users):
                break
            if time.monotonic() > deadline:
                raise Unavailable(f"only {len(wallets)} of {len(users)} wallets became ACTIVE")
            await asyncio.sleep(0.5)
    lanes = []
    for i in range(count):
        async with sandbox.post(f"{sandbox_url}/_sandbox/stellar/accounts",
                                json={"xlm": "100", "usdcTrustline": True, "usdc": "0"}) as reply:
            outside = (await reply.json())["publicKey"]
        buyer, seller = users[2 * i], users[2 * i + 1]
        lanes.append(Lane(i, buyer, seller, wallets[buyer], wallets[seller], outside, random.Random(seed * 1000 + i)))
    return lanes


async def make_airtm_lanes(api: Api, sandbox: aiohttp.ClientSession, sandbox_url: str, count: int, seed: int,
                           run: str, first: int) -> list[Lane]:
    """``count`` AIRTM lanes (the instance must be in AirTM mode, which backs new users by AirTM): each user
    linked to an AirTM account seeded in the sandbox. Lane numbers start at ``first``."""
    lanes = []
    for i in range(first, first + count):
        users: dict[str, str] = {}
        for role in ("buyer", "seller"):
            email = f"chaos-{run}-{i}-{role}@example.com"
            async with sandbox.post(f"{sandbox_url}/_sandbox/airtm/users", json={"email": email}) as reply:
                if reply.status >= 400:
                    raise Unavailable(f"the sandbox would not seed AirTM user {email}: {await reply.text()}")
            _, payload = await api.call("POST", "/users", {"externalUserId": f"chaos-{run}-airtm-{i}-{role}"})
            user = payload["data"]["id"]
            if payload["data"].get("backing") != AIRTM:
                raise Unavailable(f"user {user} was created {payload['data'].get('backing')}-backed, not AIRTM")
            status, payload = await api.call("POST", f"/users/{user}/airtm/link", {"email": email}, headers=WAIT)
            if status != 200:
                raise Unavailable(f"linking {email} answered {status}: {str(payload)[:200]}")
            users[user] = email
        buyer, seller = list(users)
        lanes.append(Lane(i, buyer, seller, "", "", "", random.Random(seed * 1000 + i), AIRTM, users))
    return lanes


async def run_lanes(driver: Driver, lanes: list[Lane], kinds: dict[str, list[str]], stop_at: float) -> None:
    """Hand out lifecycles to lanes until every one has run or the clock says stop: each backing's lanes draw
    from their own share of the plan (``plan_by_backing``), numbered in the order they start."""
    queues = {backing: iter(share) for backing, share in kinds.items()}
    numbers = iter(range(sum(len(share) for share in kinds.values())))

    async def lane_loop(lane: Lane) -> None:
        for kind in queues.get(lane.backing, iter(())):
            if time.monotonic() > stop_at:
                return
            life = Lifecycle(next(numbers), kind, lane.index, lane.backing)
            driver.facts.lifecycles.append(life)
            await driver.lifecycle(lane, life)

    await asyncio.gather(*(lane_loop(lane) for lane in lanes))


def plan_by_backing(count: int, mix: dict[str, int], rng: random.Random, lanes: dict[str, int]) -> dict[str, list[str]]:
    """``count`` lifecycles shared between the backings in proportion to their lanes, each share a ``plan`` of
    its own (so a small run still has every kind on both kinds of lanes)."""
    total = sum(lanes.values())
    shares: dict[str, list[str]] = {}
    left = count
    for i, (backing, n) in enumerate(sorted(lanes.items())):
        share = left if i == len(lanes) - 1 else round(count * n / total)
        if n:
            shares[backing] = plan(share, mix, rng)
        left -= share
    return shares


def plan(count: int, mix: dict[str, int], rng: random.Random) -> list[str]:
    """``count`` lifecycle kinds drawn by weight, every kind with a weight at least once when count allows."""
    weighted = [k for k in KINDS if mix.get(k)]
    kinds = list(weighted[:count])
    kinds += rng.choices(weighted, weights=[mix[k] for k in weighted], k=count - len(kinds))
    rng.shuffle(kinds)
    return kinds


# ----------------------------------------------------------------------------------------------
# SSE listeners: each reconnects with Last-Event-ID and must see every event exactly once


@dataclass
class Listener:
    name: str
    key: str
    seen: Counter[int] = field(default_factory=Counter)
    last: int = 0
    connects: int = 0
    reconnects_with_id: int = 0
    gaps: int = 0
    refused: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    where: str = ""  # what the listener is doing (for a report on a stuck one)
    last_byte_at: float = 0.0

    @property
    def duplicates(self) -> int:
        return sum(n - 1 for n in self.seen.values() if n > 1)


async def listen(session: aiohttp.ClientSession, api_base: str, listener: Listener, stop: asyncio.Event,
                 rng: random.Random) -> None:
    """Follow ``/events`` from the start; on any disconnect (ours at random, or the server's), resume
    from the last position received with ``Last-Event-ID``.

    Each connection runs in a task of its own: aiohttp can leave a timer behind that later cancels the
    task it guarded, and it must never be this loop. The response is closed by hand, never left through
    ``async with`` (which, after a killed server, can wait forever for the connection to report closed).
    """
    while not stop.is_set():
        listener.where = "starting a stream"
        attempt = asyncio.create_task(stream_once(session, api_base, listener, stop, rng.uniform(2, 20)))
        try:
            await attempt
            if not stop.is_set():
                listener.where = "pausing before the next stream"
                await asyncio.sleep(0.5)
        except asyncio.CancelledError:
            # Only ``stop_listeners`` ends a listener, and it sets ``stop`` first. Any other cancellation
            # is a stray timer's, whether it hit the attempt or this task: count it and go on. (Before,
            # one that hit this task ended the listener silently, and it missed the run's last events.)
            attempt.cancel()  # one stream at a time: the next attempt resumes from the last position
            if stop.is_set():
                raise
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                task.uncancel()
            listener.errors["CancelledError"] += 1
        except Exception as error:  # anything else the client raised: counted, and the listener goes on
            listener.errors[type(error).__name__] += 1


async def stream_once(session: aiohttp.ClientSession, api_base: str, listener: Listener, stop: asyncio.Event,
                      seconds: float) -> None:
    """One connection, read until it breaks or ``seconds`` have passed (a listener hangs up by itself too)."""
    headers = {"Authorization": f"Bearer {listener.key}", "Last-Event-ID": str(listener.last)}
    listener.connects += 1
    if listener.connects > 1:
        listener.reconnects_with_id += 1
    hang_up = time.monotonic() + seconds
    response: aiohttp.ClientResponse | None = None
    try:
        timeout = aiohttp.ClientTimeout(total=None, connect=10, sock_connect=5, sock_read=45)
        listener.where = "connecting"
        response = await session.get(f"{api_base}/events", headers=headers, timeout=timeout)
        listener.where = f"connected {response.status}"
        if response.status != 200:
            listener.refused[response.status] += 1
            return
        await read_events(response, listener, stop, hang_up)
    except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as error:
        listener.errors[type(error).__name__] += 1
    finally:
        if response is not None:
            response.close()
        listener.where = "between streams"


async def read_events(response: aiohttp.ClientResponse, listener: Listener, stop: asyncio.Event,
                      hang_up: float) -> None:
    event_id: int | None = None
    event_name = ""
    async for raw in response.content:
        listener.last_byte_at = time.monotonic()
        listener.where = "reading"
        line = raw.decode().rstrip("\n")
        if line.startswith("id:"):
            event_id = int(line[3:].strip())
        elif line.startswith("event:"):
            event_name = line[6:].strip()
        elif line == "":
            if event_name == "stream.gap":
                listener.gaps += 1
            elif event_id is not None:
                listener.seen[event_id] += 1
                listener.last = max(listener.last, event_id)
            event_id, event_name = None, ""
            if stop.is_set() or time.monotonic() > hang_up:
                return


async def make_listener_keys(api: Api, count: int) -> list[str]:
    """One API key per listener (the five-streams-per-key limit is per key; a killed ``web`` leaves its
    streams' slots behind until their lease runs out)."""
    keys = []
    for i in range(count):
        _, payload = await api.call("POST", "/auth/api-keys", {"name": f"chaos listener {i}", "scopes": ["read"]})
        keys.append(payload["data"]["key"])
    return keys


async def stop_listeners(tasks: list[asyncio.Task[None]], stop: asyncio.Event) -> None:
    stop.set()
    await asyncio.sleep(0)
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
