"""``offerhub`` commands that call the HTTP API through the SDK (cli-sdk.md §2.2 and §2.4).

They use OFFERHUB_API_URL / OFFERHUB_API_KEY (DESIGN decision 9), found in this order: ``--url``/``--key``,
the environment, a ``.env`` in the current directory (where a server's own ``.env`` also lends its ``PORT``
and ``OFFERHUB_MASTER_KEY``), then ``~/.offerhub/config.json``. Exit codes: 0 success, 1 any error, with the
server's message and a hint for the usual causes (no key, a refused scope, a server that is down).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from orchestrator.client import (
    AuthenticationError,
    AuthorizationError,
    Client,
    NetworkError,
    OfferHubError,
    normalise_url,
)
from orchestrator.client.webhooks import sign as webhook_sign
from orchestrator.dotenv import from_file

CONFIG_PATH = Path.home() / ".offerhub" / "config.json"
DEFAULT_MAINTENANCE_MESSAGE = "System maintenance in progress"
SCOPES = ("read", "write", "support")
HOW_TO_CONFIGURE = """No API configuration found. Configure the CLI in one of three ways:
  1. Environment:  export OFFERHUB_API_URL=http://localhost:4000  OFFERHUB_API_KEY=ohk_…
  2. A .env file in the current directory with the same two variables
     (a server's own .env works too: its PORT and OFFERHUB_MASTER_KEY are used)
  3. offerhub config set --api-url http://localhost:4000 --api-key ohk_…   (saves ~/.offerhub/config.json)
Or pass --url and --key on the command line."""


@dataclass
class Target:
    url: str | None
    key: str | None
    source: str


def read_config_file() -> dict[str, Any]:
    try:
        return json.loads(CONFIG_PATH.read_text())
    except (OSError, ValueError):
        return {}


def resolve(args: argparse.Namespace) -> Target:
    """The API URL and key: flags, environment, ./.env, then the global config file (first match wins)."""
    dotenv = from_file()
    if "OFFERHUB_API_URL" not in dotenv and "PORT" in dotenv and "OFFERHUB_MASTER_KEY" in dotenv:
        dotenv["OFFERHUB_API_URL"] = f"http://localhost:{dotenv['PORT']}"
    if "OFFERHUB_API_KEY" not in dotenv and "OFFERHUB_MASTER_KEY" in dotenv:
        dotenv["OFFERHUB_API_KEY"] = dotenv["OFFERHUB_MASTER_KEY"]
    stored = read_config_file()
    sources = [("flags", getattr(args, "url", None), getattr(args, "key", None)),
               ("environment", os.environ.get("OFFERHUB_API_URL"), os.environ.get("OFFERHUB_API_KEY")),
               (".env", dotenv.get("OFFERHUB_API_URL"), dotenv.get("OFFERHUB_API_KEY")),
               (str(CONFIG_PATH), stored.get("apiUrl"), stored.get("apiKey"))]
    url = next((u for _, u, _ in sources if u), None)
    key = next((k for _, _, k in sources if k), None)
    source = next((name for name, u, k in sources if u or k), "nowhere")
    return Target(url, key, source)


# -- output -----------------------------------------------------------------------------------------------


def _tty(stream: Any) -> bool:
    return bool(getattr(stream, "isatty", lambda: False)()) and not os.environ.get("NO_COLOR")


def paint(text: str, colour: str, stream: Any = None) -> str:
    codes = {"red": "31", "green": "32", "yellow": "33", "bold": "1", "dim": "2", "cyan": "36"}
    return f"\033[{codes[colour]}m{text}\033[0m" if _tty(stream or sys.stdout) else text


def fail(message: str) -> int:
    print(paint(f"Error: {message}", "red", sys.stderr), file=sys.stderr)
    return 1


def emit_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def table(rows: list[list[str]], headers: list[str]) -> None:
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows, strict=False)]
    print("  ".join(paint(h.ljust(w), "bold") for h, w in zip(headers, widths, strict=True)))
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))


def ask(question: str, default: str | None = None, secret: bool = False) -> str | None:
    """A prompt on a terminal; without one, the default (``None``: the caller reports what is missing)."""
    if not sys.stdin.isatty():
        return default
    suffix = f" [{default}]" if default else ""
    if secret:
        import getpass

        answer = getpass.getpass(f"{question}{suffix}: ")
    else:
        answer = input(f"{question}{suffix}: ")
    return answer.strip() or default


def confirm(question: str, yes: bool) -> bool:
    if yes:
        return True
    if not sys.stdin.isatty():
        print(f"{question} Not confirmed (no terminal): add --yes.", file=sys.stderr)
        return False
    return (input(f"{question} [y/N]: ").strip().lower() or "n") in {"y", "yes"}


def when(value: str | None) -> str:
    if not value:
        return "Never"
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M:%S UTC")
    except ValueError:
        return value


# -- commands ---------------------------------------------------------------------------------------------


def _keys_list(client: Client, args: argparse.Namespace) -> int:
    keys = list(client.api_keys.iterate(user_id=args.user_id))
    if args.json:
        emit_json(keys)
        return 0
    if not keys:
        print("No API keys found.")
        return 0
    table([[k["id"], k.get("maskedKey") or "", k.get("userId") or "-", ",".join(k.get("scopes") or []),
            when(k.get("createdAt")), when(k.get("lastUsedAt")), k.get("status") or ""] for k in keys],
          ["ID", "Key", "User ID", "Scopes", "Created", "Last Used", "Status"])
    print(f"\nFound {len(keys)} API key(s)")
    return 0


def _keys_create(client: Client, args: argparse.Namespace) -> int:
    user_id = args.user_id or ask("User ID (owner label for this key)")
    if not user_id:
        return fail("a user id is required: pass --user-id")
    scopes_text = args.scopes or ask(f"Scopes, comma-separated ({', '.join(SCOPES)})", "read,write")
    scopes = [s.strip() for s in (scopes_text or "").split(",") if s.strip()]
    if not scopes:
        return fail("at least one scope is required: pass --scopes read,write")
    name = args.name or ask("Name (optional)") or f"CLI key for {user_id}"
    key = client.api_keys.create(name=name, scopes=scopes, user_id=user_id)
    if args.json:
        emit_json(key)
        return 0
    print(paint("API key created. Save it now: it will not be shown again.", "yellow"))
    print(f"\n  {paint(key['key'], 'bold')}\n")
    print(f"Key ID:  {key['id']}\nUser ID: {key.get('userId')}\nScopes:  {', '.join(key['scopes'])}\n"
          f"Name:    {key['name']}")
    return 0


def _keys_revoke(client: Client, args: argparse.Namespace) -> int:
    if not confirm(f"Revoke API key {args.key_id}? Requests using it will fail.", args.yes):
        return 1
    key = client.api_keys.revoke(args.key_id)
    if args.json:
        emit_json(key)
    else:
        print(paint(f"API key {key['id']} revoked.", "green"))
    return 0


def _keys_token(client: Client, args: argparse.Namespace) -> int:
    token = client.api_keys.create_token(args.key_id, ttl=args.ttl)
    if args.json:
        emit_json(token)
        return 0
    print(f"Token:   {paint(token['token'], 'bold')}\nKey ID:  {token.get('keyId')}\n"
          f"Scopes:  {', '.join(token.get('scopes') or [])}\nExpires: {when(token.get('expiresAt'))}")
    print(paint(f"This token will expire in {args.ttl} seconds.", "yellow"))
    return 0


def _health(client: Client, args: argparse.Namespace) -> int:
    report = client.system.health_detailed()
    if args.json:
        emit_json(report)
        return 0 if report.get("status") != "unhealthy" else 1
    colour = {"healthy": "green", "degraded": "yellow"}.get(report.get("status", ""), "red")
    print(f"Status:  {paint(str(report.get('status', '?')).upper(), colour)}   version {report.get('version')}")
    for name, dependency in (report.get("dependencies") or {}).items():
        state = dependency.get("status", "?")
        latency = f"{dependency['latency']} ms" if dependency.get("latency") is not None else ""
        extra = dependency.get("error") or ""
        print(f"  {name:<14} {paint(state.ljust(9), {'healthy': 'green', 'degraded': 'yellow'}.get(state, 'red'))}"
              f" {latency:>8}  {extra}")
    return 0 if report.get("status") != "unhealthy" else 1


def _maintenance_status(client: Client, args: argparse.Namespace) -> int:
    state = client.system.maintenance_status()
    if args.json:
        emit_json(state)
    elif state.get("enabled"):
        print(f"Maintenance: {paint('ENABLED', 'yellow')}\nMessage:     {state.get('message')}\n"
              f"Enabled at:  {when(state.get('enabledAt'))}\nEnabled by:  {state.get('enabledBy')}")
    else:
        print(f"Maintenance: {paint('NORMAL', 'green')} (the API accepts writes)")
    return 0


def _maintenance_enable(client: Client, args: argparse.Namespace) -> int:
    if not confirm("Enable maintenance mode? The API will be read-only.", args.yes):
        return 1
    message = args.message or ask("Message", DEFAULT_MAINTENANCE_MESSAGE) or DEFAULT_MAINTENANCE_MESSAGE
    state = client.system.maintenance_enable(message=message)
    if args.json:
        emit_json(state)
    else:
        print(paint("Maintenance mode enabled: the API is read-only.", "yellow"))
        print(f"Message: {state.get('message')}")
    return 0


def _maintenance_disable(client: Client, args: argparse.Namespace) -> int:
    if not confirm("Disable maintenance mode? The API will accept writes again.", args.yes):
        return 1
    state = client.system.maintenance_disable()
    if args.json:
        emit_json(state)
    else:
        print(paint("Maintenance mode disabled: the API accepts writes.", "green"))
    return 0


def describe(event: dict[str, Any]) -> str:
    """One human line for an event: time, type, aggregate, and the payload's telling fields."""
    payload = event.get("payload") or {}
    shown = [f"{k}={payload[k]}" for k in ("status", "amount", "netAmount", "source", "decision", "reason")
             if payload.get(k) not in (None, "")]
    moment = str(event.get("occurredAt", ""))[11:23]
    return f"{moment}  {event.get('eventType', '?'):<28} {event.get('aggregateId', '')}  {' '.join(shown)}".rstrip()


def _events_tail(client: Client, args: argparse.Namespace) -> int:
    client.api_keys.me()  # a server that is down or a refused key fails here, clearly, instead of retrying forever
    if not args.json:
        filters = f" types={args.types}" if args.types else ""
        filters += f" resourceTypes={args.resource_types}" if args.resource_types else ""
        print(paint(f"Following events{filters} (Ctrl-C to stop)", "dim"), file=sys.stderr)

    def reconnecting(cursor: str | None) -> None:
        print(paint(f"… reconnecting after {cursor or 'now'}", "dim"), file=sys.stderr)

    def gap(notice: dict[str, Any]) -> None:
        print(paint(f"Events before position {notice.get('oldestAvailable')} are no longer kept; "
                    f"replaying from there (asked for {notice.get('requestedCursor')})", "yellow"), file=sys.stderr)

    stream = client.events.stream(types=args.types, resource_types=args.resource_types,
                                  last_event_id=args.since, on_reconnect=reconnecting, on_gap=gap)
    for count, event in enumerate(stream, start=1):
        if args.json:
            print(json.dumps({"position": event.position, **event}), flush=True)
        else:
            print(describe(event), flush=True)
        if args.limit and count >= args.limit:
            break
    return 0


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A forwarded webhook is never redirected, as the delivery workers never follow one."""

    def redirect_request(self, *_: Any, **__: Any) -> None:
        return None


def forward(url: str, secret: str, event: dict[str, Any], position: str | None, timeout: float = 10.0) -> str:
    """POST one event to ``url`` signed as the delivery workers sign it; returns the status or the error."""
    body = json.dumps(dict(event)).encode()  # the SSE data line's bytes again (same keys, same order)
    stamp = int(time.time())
    headers = {"Content-Type": "application/json", "User-Agent": "offerhub-cli webhooks listen",
               "webhook-id": str(event.get("eventId")), "webhook-timestamp": str(stamp),
               "webhook-signature": webhook_sign(secret, str(event.get("eventId")), stamp, body)}
    if position is not None:
        headers["OfferHub-Event-Position"] = str(position)
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310 - http(s) only
    try:
        with urllib.request.build_opener(_NoRedirects).open(request, timeout=timeout) as answer:
            return str(answer.status)
    except urllib.error.HTTPError as error:
        return str(error.code)
    except (urllib.error.URLError, OSError) as error:
        return f"failed: {getattr(error, 'reason', error)}"


def _webhooks_listen(client: Client, args: argparse.Namespace) -> int:
    """Like ``stripe listen``: live events from the SSE stream, signed with a secret printed here and
    POSTed to a local URL, so a receiver is developed against real, verifiable requests."""
    if not args.forward_to.startswith(("http://", "https://")):
        return fail("--forward-to must be an http(s) URL, e.g. http://localhost:3000/hooks")
    client.api_keys.me()  # a server that is down or a refused key fails here, clearly
    secret = args.secret or "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    print(paint(f"Ready. Your webhook signing secret is {secret}", "green"), file=sys.stderr)
    print(paint(f"Forwarding events to {args.forward_to} (Ctrl-C to stop)", "dim"), file=sys.stderr)
    stream = client.events.stream(types=args.events, last_event_id=args.since)
    for count, event in enumerate(stream, start=1):
        outcome = forward(args.forward_to, secret, event, event.position)
        if args.json:
            print(json.dumps({"eventId": event.get("eventId"), "eventType": event.get("eventType"),
                              "position": event.position, "status": outcome}), flush=True)
        else:
            print(f"{describe(event)}  --> {outcome}", flush=True)
        if args.limit and count >= args.limit:
            break
    return 0


def _config_show(args: argparse.Namespace) -> int:
    target = resolve(args)
    stored = read_config_file()
    if target.url is None and target.key is None:
        print("No configuration found.\n")
        print(HOW_TO_CONFIGURE)
        return 0
    shown = {"apiUrl": normalise_url(target.url) if target.url else None,
             "apiKey": f"{target.key[:10]}..." if target.key else None,
             "paymentProvider": stored.get("paymentProvider") or "crypto (default)",
             "source": target.source, "configPath": str(CONFIG_PATH)}
    if args.json:
        emit_json(shown)
        return 0
    print(f"API URL:          {shown['apiUrl']}\nAPI key:          {shown['apiKey']}\n"
          f"Payment provider: {shown['paymentProvider']}\nFrom:             {shown['source']}\n"
          f"Config file:      {shown['configPath']}")
    return 0


def _config_set(args: argparse.Namespace) -> int:
    url = args.api_url or ask("API URL", "http://localhost:4000")
    if not url or not url.startswith(("http://", "https://")):
        return fail("the API URL must start with http:// or https://")
    key = args.api_key or ask("API key", secret=True)
    if not key:
        return fail("an API key is required: pass --api-key")
    provider = args.payment_provider or ask("Payment provider (crypto|airtm)", "crypto") or "crypto"
    if provider not in {"crypto", "airtm"}:
        return fail("the payment provider is crypto or airtm")
    CONFIG_PATH.parent.mkdir(parents=True, exist_ok=True)
    CONFIG_PATH.write_text(json.dumps({"apiUrl": url, "apiKey": key, "paymentProvider": provider}, indent=2))
    CONFIG_PATH.chmod(0o600)
    if provider == "crypto":
        print("Put this fresh key in the server's .env (it seals the wallet secrets):")
        print(f"  WALLET_ENCRYPTION_KEY={secrets.token_hex(32)}")
    print(f"Configuration saved to {CONFIG_PATH}")
    return 0


def _demo(client: Client, args: argparse.Namespace) -> int:
    from orchestrator.cli import demo

    return demo.run(client, args)


def _smoke(client: Client, args: argparse.Namespace) -> int:
    from orchestrator.cli import smoke

    return smoke.run(client, args)


# -- wiring -----------------------------------------------------------------------------------------------

Command = Callable[[Client, argparse.Namespace], int]


def add_commands(sub: Any) -> None:
    """The HTTP commands, each taking ``--url/--key/--json`` after its name too."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=argparse.SUPPRESS, help="API base URL")
    common.add_argument("--key", default=argparse.SUPPRESS, help="API key (or master key)")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")

    def command(parent: Any, name: str, handler: Command, text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = parent.add_parser(name, help=text, description=text, parents=[common])
        parser.set_defaults(http=handler)
        return parser

    def group(name: str, text: str) -> Any:
        parser = sub.add_parser(name, help=text, description=text)
        return parser.add_subparsers(dest="action", metavar="<action>", required=True)

    keys = group("keys", "API keys: list, create, revoke, mint short-lived tokens")
    listing = command(keys, "list", _keys_list, "list API keys")
    listing.add_argument("-u", "--user-id", help="only the keys of this owner label")
    create = command(keys, "create", _keys_create, "create an API key (its secret is shown once)")
    create.add_argument("-u", "--user-id", help="owner label (required; prompted on a terminal)")
    create.add_argument("-s", "--scopes", help="comma-separated: read,write,support")
    create.add_argument("-n", "--name", help="a name for the key")
    revoke = command(keys, "revoke", _keys_revoke, "revoke an API key and every token minted from it")
    revoke.add_argument("key_id", metavar="keyId")
    revoke.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    token = command(keys, "token", _keys_token, "mint a short-lived token from a key")
    token.add_argument("key_id", metavar="keyId")
    token.add_argument("-t", "--ttl", type=int, default=3600, help="seconds (60-86400, default 3600)")

    command(sub, "health", _health, "the detailed health of the server and its dependencies")

    maintenance = group("maintenance", "maintenance mode: the API refuses writes while it is on")
    command(maintenance, "status", _maintenance_status, "show whether maintenance mode is on")
    enable = command(maintenance, "enable", _maintenance_enable, "make the API read-only")
    enable.add_argument("-m", "--message", help=f"shown to callers (default: {DEFAULT_MAINTENANCE_MESSAGE})")
    enable.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    disable = command(maintenance, "disable", _maintenance_disable, "accept writes again")
    disable.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")

    events = group("events", "the live event stream")
    tail = command(events, "tail", _events_tail, "follow events as they happen (SSE, resumes after drops)")
    tail.add_argument("--types", help="comma-separated event types; wildcards like order.*")
    tail.add_argument("--resource-types", help="comma-separated aggregate types, e.g. Order,Balance")
    tail.add_argument("--since", help="replay after a position, an evt_ id or an ISO time first")
    tail.add_argument("--limit", type=int, default=0, help="stop after this many events")

    _webhook_commands(group("webhooks", "outbound webhooks: develop a receiver against live events"), command)

    config = group("config", "the CLI's own configuration (~/.offerhub/config.json)")
    show = config.add_parser("show", help="show the configuration in use", parents=[common])
    show.set_defaults(local=_config_show)
    setter = config.add_parser("set", help="save the API URL and key", parents=[common])
    setter.add_argument("--api-url")
    setter.add_argument("--api-key")
    setter.add_argument("--payment-provider", choices=["crypto", "airtm"])
    setter.set_defaults(local=_config_set)

    _demo_command(sub, command)
    _smoke_command(sub, command)


def _demo_command(sub: Any, command: Callable[..., argparse.ArgumentParser]) -> None:
    demo = command(sub, "demo", _demo, "run the seed flows (money in, release, refund, split dispute; a withdrawal "
                                       "in AirTM mode) against a running system on the sandbox, printing each "
                                       "step and event, and the book beside the ledger (and AirTM)")
    demo.add_argument("--provider", choices=["crypto", "airtm"], default="crypto",
                      help="the instance's PAYMENT_PROVIDER (checked against its /config): crypto deposits USDC "
                           "into the buyer's wallet; airtm tops up through the sandbox's AirTM checkout, escrows "
                           "are funded by the treasury pool and the seller withdraws to AirTM (default: crypto)")
    demo.add_argument("--sandbox-url", help="the sandbox's control plane (default: SANDBOX_URL, .env, "
                                            "http://127.0.0.1:4100)")
    demo.add_argument("--deposit", default="250.00", help="what the buyer pays in first: USDC on the ledger "
                                                          "(crypto) or USD topped up at AirTM (airtm)")
    demo.add_argument("--withdraw", default="20.00", help="airtm: USD the seller withdraws to AirTM at the end")


def _smoke_command(sub: Any, command: Callable[..., argparse.ArgumentParser]) -> None:
    from orchestrator.cli.smoke import add_arguments

    add_arguments(command(sub, "smoke", _smoke, "one whole lifecycle against a running instance on testnet or "
                                                "the sandbox, each step with its transaction hashes confirmed on "
                                                "Horizon, and a verdict (exit 0 only if all passed)"))


def _webhook_commands(hooks: Any, command: Callable[..., argparse.ArgumentParser]) -> None:
    listen = command(hooks, "listen", _webhooks_listen, "forward live events to a local URL, signed per Standard "
                                                       "Webhooks with a secret printed at start")
    listen.add_argument("--forward-to", required=True, help="the receiver, e.g. http://localhost:3000/hooks")
    listen.add_argument("--events", help="comma-separated event types; wildcards like order.* (default: all)")
    listen.add_argument("--secret", help="sign with this whsec_ secret instead of a fresh one")
    listen.add_argument("--since", help="forward events after a position, an evt_ id or an ISO time first")
    listen.add_argument("--limit", type=int, default=0, help="stop after this many events")


def run(args: argparse.Namespace, started: Callable[[], None] = lambda: None) -> int:
    """Run an HTTP (or local) command with the resolved configuration; errors become exit 1 and a message.
    ``started`` is called once the command proper begins (``offerhub``'s Ctrl-C handling changes then)."""
    args.json = getattr(args, "json", False)
    local = getattr(args, "local", None)
    if local is not None:
        started()
        return int(local(args))
    target = resolve(args)
    public = args.http is _health  # a public route: no key needed
    if not target.url or not (target.key or public):
        print(HOW_TO_CONFIGURE, file=sys.stderr)
        return 1
    url = normalise_url(target.url)
    client = Client(url, target.key or "anonymous", retries=2, backoff=0.25)
    started()
    try:
        return int(args.http(client, args))
    except AuthenticationError as error:
        return fail(f"the API key was refused ({error.code}): {error.message}. Check --key, OFFERHUB_API_KEY or "
                    f"the .env it came from ({target.source}).")
    except AuthorizationError as error:
        if error.required_scope:
            held = ", ".join(error.current_scopes) or "none"
            return fail(f"permission denied: this needs the '{error.required_scope}' scope and the key holds "
                        f"{held}. Use a key with '{error.required_scope}' (or the master key).")
        return fail(f"permission denied ({error.code}): {error.message}")
    except NetworkError as error:
        return fail(f"cannot reach the orchestrator at {url} ({error.message}). Is it running? "
                    "Start it with scripts/dev, or pass --url.")
    except OfferHubError as error:
        request = f", request {error.request_id}" if error.request_id else ""
        return fail(f"{error.message} ({error.code}, HTTP {error.status_code}{request})")
    except TimeoutError as error:  # a wait of the CLI's own (the demo's steps) ran out
        return fail(str(error))
    finally:
        client.close()
