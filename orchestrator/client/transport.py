"""The one HTTP layer under both clients: envelopes, idempotency keys, retries and ``Prefer`` (cli-sdk.md §1.5).

Every mutating call carries an ``Idempotency-Key`` (the caller's, or a UUID v4 made once per logical call)
and the same key goes out on each of its retries, so a retried POST can never run twice on the server: the
server replays the stored answer instead (api.md §1.10). Retries follow errors.md §4: 408, 429 (after
``Retry-After``), 500, 502, 503, 504 and transport failures back off exponentially; a key still in progress
is retried after a short wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp

from orchestrator.client.errors import NetworkError, OfferHubError, from_response, retry_after

VERSION = "0.1.0"
USER_AGENT = f"OfferHub-SDK-Python/{VERSION}"
#: The server waits this long for a command by default (COMMAND_WAIT_SECONDS) ...
SERVER_WAIT_SECONDS = 30.0
#: ... and the SDK waits that plus 10 s for the answer (DESIGN decision 10).
TIMEOUT_MARGIN_SECONDS = 10.0
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
IN_PROGRESS_WAIT = 2.0
MAX_DELAY = 30.0


def normalise_url(url: str) -> str:
    """``http://host:4000``, ``…/``, ``…/api``, ``…/api/v1`` all become ``…/api/v1`` (cli-sdk.md §1.4)."""
    url = url.strip().rstrip("/")
    if url.endswith("/api/v1"):
        return url
    if url.endswith("/api"):
        return f"{url}/v1"
    return f"{url}/api/v1"


@dataclass(frozen=True)
class Config:
    """What a client needs; ``from_values`` fills the gaps from OFFERHUB_API_URL / OFFERHUB_API_KEY."""

    api_url: str
    api_key: str
    timeout: float = SERVER_WAIT_SECONDS + TIMEOUT_MARGIN_SECONDS
    retries: int = 3
    backoff: float = 1.0
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_values(cls, api_url: str | None, api_key: str | None, *, timeout: float | None = None,
                    retries: int = 3, backoff: float = 1.0, headers: Mapping[str, str] | None = None) -> Config:
        url = api_url or os.environ.get("OFFERHUB_API_URL")
        key = api_key or os.environ.get("OFFERHUB_API_KEY")
        if not url:
            raise ValueError("api_url is required (or set OFFERHUB_API_URL)")
        if not key:
            raise ValueError("api_key is required (or set OFFERHUB_API_KEY)")
        return cls(normalise_url(url), key, SERVER_WAIT_SECONDS + TIMEOUT_MARGIN_SECONDS if timeout is None
                   else timeout, max(0, retries), backoff, dict(headers or {}))


class Result(dict[str, Any]):
    """The ``data`` of a success envelope, plus what the response said about it.

    ``pending`` and ``command_id`` are set on a ``202``: the operation is still running on the server and
    its completion arrives by events (or a later ``get``).
    """

    status_code: int = 200
    request_id: str | None = None
    pending: bool = False
    command_id: str | None = None
    replayed: bool = False
    idempotency_key: str | None = None


@dataclass
class Page:
    """One page of a list: ``items``, ``has_more`` and ``next_cursor`` (pass it as ``cursor=``)."""

    items: list[dict[str, Any]]
    has_more: bool
    next_cursor: str | None
    request_id: str | None = None

    def __iter__(self) -> Any:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


@dataclass
class Response:
    status: int
    body: Any
    headers: Mapping[str, str]
    idempotency_key: str | None

    def result(self) -> Any:
        """The envelope's ``data``: a ``Result`` for an object, the list itself for a list."""
        body = self.body if isinstance(self.body, dict) else {}
        data, meta = body.get("data"), body.get("meta") or {}
        if data is None and self.status == 202:  # accepted before the resource could be read: still a result
            data = {}
        if not isinstance(data, dict):
            return data
        result = Result(data)
        result.status_code = self.status
        result.request_id = self.headers.get("X-Request-ID")
        result.pending = bool(meta.get("pending")) or self.status == 202
        result.command_id = meta.get("commandId")
        result.replayed = self.headers.get("Idempotency-Replay") == "true"
        result.idempotency_key = self.idempotency_key
        return result

    def page(self) -> Page:
        body = self.body if isinstance(self.body, dict) else {}
        pagination = (body.get("meta") or {}).get("pagination") or {}
        return Page(list(body.get("data") or []), bool(pagination.get("hasMore")), pagination.get("nextCursor"),
                    self.headers.get("X-Request-ID"))


def prefer(wait: float | None, respond_async: bool) -> str | None:
    """The ``Prefer`` header (api.md §1.12): answer 202 at once, or wait up to ``wait`` whole seconds."""
    if respond_async:
        return "respond-async"
    if wait is not None:
        return f"wait={max(1, min(60, round(wait)))}"
    return None


def query(**params: Any) -> dict[str, str]:
    """Drop ``None``; lists become comma lists, booleans ``true``/``false``."""
    out: dict[str, str] = {}
    for name, value in params.items():
        if value is None:
            continue
        if isinstance(value, list | tuple | set | frozenset):
            out[name] = ",".join(str(v) for v in value)
        elif isinstance(value, bool):
            out[name] = "true" if value else "false"
        else:
            out[name] = str(value)
    return out


class Transport:
    """An aiohttp session bound to one base URL and credential; created lazily inside the running loop."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._session: aiohttp.ClientSession | None = None

    def derive(self, **changes: Any) -> Transport:
        return Transport(replace(self.config, **changes))

    def _headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.config.api_key}", "User-Agent": USER_AGENT,
                "Accept": "application/json", **self.config.headers, **(extra or {})}

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    async def request(self, method: str, path: str, *, json_body: Any = None, params: Mapping[str, Any] | None
                      = None, idempotency_key: str | None = None, wait: float | None = None,
                      respond_async: bool = False, headers: Mapping[str, str] | None = None,
                      retries: int | None = None, accept: frozenset[int] = frozenset()) -> Response:
        """Send with retries; a success returns the response, an error answer raises its exception."""
        method = method.upper()
        # one request id per logical call: the server's logs show its retries as one story
        extra = {"X-Request-ID": str(uuid.uuid4()), **self.config.headers, **(headers or {})}
        key = None
        if method in MUTATING:
            key = idempotency_key or str(uuid.uuid4())  # once per logical call, reused on every retry
            extra["Idempotency-Key"] = key
        if (preference := prefer(wait, respond_async)) is not None:
            extra["Prefer"] = preference
        timeout = max(self.config.timeout, (wait or 0) + TIMEOUT_MARGIN_SECONDS)
        attempts = (self.config.retries if retries is None else retries) + 1
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                response = await self._send(method, path, json_body, params, self._headers(extra), timeout, key)
            except NetworkError:
                if last:
                    raise
                await asyncio.sleep(self._backoff(attempt))
                continue
            if response.status < 400 or (response.status in accept and isinstance(response.body, dict)
                                          and "data" in response.body):
                return response
            error = from_response(response.status, response.body, response.headers)
            delay = self._retry_delay(error, attempt)
            if delay is None or last:
                raise error
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover - the loop always returns or raises

    async def _send(self, method: str, path: str, json_body: Any, params: Mapping[str, Any] | None,
                    headers: dict[str, str], seconds: float, key: str | None) -> Response:
        url = f"{self.config.api_url}{path}"
        data = None
        if json_body is not None:
            data = json.dumps(json_body)
            headers["Content-Type"] = "application/json"
        try:
            async with self.session().request(method, url, data=data, params=params, headers=headers,
                                              timeout=aiohttp.ClientTimeout(total=seconds)) as resp:
                raw = await resp.read()
                body: Any = None
                if raw:
                    try:
                        body = json.loads(raw)
                    except ValueError:
                        body = raw.decode(errors="replace")
                return Response(resp.status, body, resp.headers, key)
        except TimeoutError as error:
            raise NetworkError(f"No answer from {url} within {seconds:g} s", original=error) from error
        except aiohttp.ClientError as error:
            raise NetworkError(f"Cannot reach {self.config.api_url}: {error}", original=error) from error

    def _backoff(self, attempt: int) -> float:
        """1 s, 2 s, 4 s, 8 s… (times ``backoff``) with ±25 % jitter, capped."""
        base = self.config.backoff * (2 ** attempt)
        return min(MAX_DELAY, base * random.uniform(0.75, 1.25))

    def _retry_delay(self, error: OfferHubError, attempt: int) -> float | None:
        """How long to wait before retrying ``error``; ``None``: do not retry (errors.md §4)."""
        if error.code == "IDEMPOTENCY_KEY_IN_PROGRESS":
            return IN_PROGRESS_WAIT * max(self.config.backoff, 0.05)
        if error.code == "BALANCE_CONCURRENCY_CONFLICT":
            return 0.05
        if error.status_code not in RETRY_STATUSES:
            return None
        told = retry_after(error.headers, error.details)
        if told is not None:
            return min(told, 60.0)
        return self._backoff(attempt)

    @contextlib.asynccontextmanager
    async def stream(self, path: str, params: Mapping[str, Any], last_event_id: str | None,
                     read_timeout: float) -> AsyncIterator[aiohttp.ClientResponse]:
        """An open ``text/event-stream`` response; an error answer raises its exception."""
        headers = self._headers({"Accept": "text/event-stream"})
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        url = f"{self.config.api_url}{path}"
        timeout = aiohttp.ClientTimeout(total=None, connect=self.config.timeout, sock_read=read_timeout)
        try:
            async with self.session().get(url, params=params, headers=headers, timeout=timeout) as resp:
                if resp.status >= 400:
                    raw = await resp.read()
                    try:
                        body: Any = json.loads(raw)
                    except ValueError:
                        body = raw.decode(errors="replace")
                    raise from_response(resp.status, body, resp.headers)
                yield resp
        except TimeoutError as error:
            raise NetworkError(f"The event stream from {url} went silent", original=error) from error
        except aiohttp.ClientError as error:
            raise NetworkError(f"Cannot reach {self.config.api_url}: {error}", original=error) from error
