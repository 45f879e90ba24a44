"""``offerhub``: operator commands that act on the server read its settings and database directly."""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import os
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:  # the settings pull in stellar_sdk (seconds to import): only operator commands load them
    from orchestrator.settings import Settings


def _migrate(settings: Settings, _: argparse.Namespace) -> int:
    from orchestrator.db.migrate import upgrade

    upgrade(settings.database_url)
    print("Database is at the latest migration.")
    return 0


def _bootstrap(settings: Settings, args: argparse.Namespace) -> int:
    """Everything a fresh instance needs before its processes start (DESIGN decision 9): the schema,
    then the platform user and its wallet (cli-sdk.md §2.4). Running it again changes nothing."""
    from actors.dispatch import dispatch  # the one permitted upward import: sending the wallet's steps
    from orchestrator.accounts import bootstrap, platform
    from orchestrator.db import create_sync_engine

    _migrate(settings, args)
    engine = create_sync_engine(settings.database_url, pool_size=1)
    user_id, created, messages = bootstrap.bootstrap(engine, settings)
    dispatch(messages)
    found = platform.find(engine.connect(), settings)
    wallet = found.wallet if found else None
    print(f"{'Created' if created else 'Found'} the platform user.")
    if wallet is not None:
        print(f"Platform wallet {wallet.public_key} ({wallet.status})")
        if settings.is_mainnet and wallet.status != "ACTIVE":
            print("Fund this account with XLM from an exchange or your treasury; its trustline follows.")
    print(f"PLATFORM_USER_ID={user_id}")
    return 0


def _check(settings: Settings, _: argparse.Namespace) -> int:
    """The book's invariants, each wallet's ledger USDC against the book (decision 7; in either mode, since
    WALLET-backed users keep their wallets after a switch), the treasury pool against the journal and the
    recorded float, and (while AirTM money exists) the enterprise balance against the AIRTM-backed claims."""
    from orchestrator.db import create_sync_engine
    from orchestrator.operations import check, reconcile
    from orchestrator.providers.horizon import Horizon

    horizon = Horizon(settings)
    engine = create_sync_engine(settings.database_url, pool_size=1)
    report = check.verify(engine, horizon, stuck_after=settings.payout_stuck_after)
    pool = check.verify_pool(engine, horizon, report)
    print(pool.describe())
    client = reconcile.airtm_client(settings, engine)
    if client is not None:
        client.close()
        _check_treasury(settings, engine, report)
    for problem in report.problems:
        print(f"FAIL {problem}")
    for stuck in report.stuck:
        print(f"STUCK {stuck}")
    for difference in report.differences:
        print(f"DIFF {difference.describe()}")
    if horizon is not None:
        print(f"Compared {report.wallets_compared} wallet(s) with the ledger: {len(report.differences)} difference(s)")
    print("OK: the book is consistent" if report.ok
          else f"{len(report.problems) + len(report.differences) + len(report.stuck)} problem(s)")
    return 0 if report.ok else 1


def _check_treasury(settings: Settings, engine: Any, report: Any) -> None:
    """AirTM mode: the enterprise balance must cover what the book owes the users; the platform's treasury
    on the ledger (its wallet's XLM and USDC) is reported beside it."""
    from orchestrator.airtm import enterprise
    from orchestrator.providers.airtm import AirtmClient, AirtmFailure
    from orchestrator.providers.horizon import Horizon

    try:
        with AirtmClient(settings) as client:
            treasury = enterprise.read(engine, client, settings, Horizon(settings, timeout=10.0))
    except AirtmFailure as failure:
        report.problems.append(f"the AirTM enterprise balance could not be read: {failure.message}")
        return
    print(treasury.describe())
    wallet = treasury.platform_wallet
    if wallet is not None and wallet.public_key is not None and wallet.error:
        report.problems.append(f"the platform wallet could not be read on the ledger: {wallet.error}")
    if not treasury.covered:
        report.problems.append(f"the AirTM enterprise balance does not cover the users' balances: "
                               f"{treasury.describe()}")
    from orchestrator.operations import check

    check.verify_enterprise(engine, treasury, report)


def _wallets(settings: Settings, args: argparse.Namespace) -> int:
    """``wallets rotate-key``: re-seal every wallet secret under the current key
    (orchestrator/operations/rotation.py)."""
    from orchestrator import crypto
    from orchestrator.db import create_sync_engine
    from orchestrator.operations import rotation

    keyring = crypto.Keyring.from_settings(settings.wallet_encryption_key, settings.wallet_encryption_key_previous)
    engine = create_sync_engine(settings.database_url, pool_size=1)
    result = rotation.rotate(engine, keyring, batch_size=args.batch_size)
    print(f"Re-sealed {result.resealed} wallet secret(s) under key version {keyring.version}; "
          f"{result.current} already current.")
    if result.unopened:
        print(f"{len(result.unopened)} secret(s) open under neither key (set WALLET_ENCRYPTION_KEY_PREVIOUS to the "
              f"key that sealed them and run again): {', '.join(result.unopened)}")
        return 1
    if keyring.previous is not None:
        print("Every secret is sealed under the current key: remove WALLET_ENCRYPTION_KEY_PREVIOUS and restart.")
    return 0


def _audit(settings: Settings, args: argparse.Namespace) -> int:
    """``audit verify``: walk the audit hash chain and name the first entry changed, removed or reordered."""
    from orchestrator import audit
    from orchestrator.db import create_sync_engine, session
    from orchestrator.outbox import relay

    engine = create_sync_engine(settings.database_url, pool_size=1)
    relay.relay(engine)  # chain what has committed so far, so the walk covers it
    with session.transaction(engine) as conn:
        conn.exec_driver_sql(session.SNAPSHOT)
        found = audit.verify(conn)
    if found.ok:
        print(f"OK: {found.checked} audit entries chained, none changed, removed or out of order")
        if found.head_hash:
            print(f"Head: position {found.head}, hash {found.head_hash} (record it elsewhere to detect a rewrite)")
        if found.unchained:
            print(f"{found.unchained} entry(ies) not chained yet (in transactions still open)")
        return 0
    print(f"FAIL: {found.problem}")
    if found.entry_id:
        print(f"Entry: {found.entry_id}")
    print(f"Checked {found.checked} entries before it.")
    return 1


def _reconcile(settings: Settings, args: argparse.Namespace) -> int:
    """``reconcile``: compare the book with the ledger (and AirTM), store the report, print every difference;
    ``--record-float`` first records the operator's float as it is now (after the operator paid into the pool
    or the enterprise account, or took some out)."""
    from orchestrator.db import create_sync_engine
    from orchestrator.operations import reconcile
    from orchestrator.outbox import relay

    engine = create_sync_engine(settings.database_url, pool_size=1)
    horizon, trustless = reconcile.providers(settings)
    airtm = reconcile.airtm_client(settings, engine)
    if getattr(args, "record_float", False):
        refused = reconcile.record_float(engine, horizon, airtm)
        if refused:
            print(f"FAIL the float was not recorded: {refused}")
            return 1
    report = reconcile.run(engine, settings, horizon=horizon, trustless=trustless, airtm=airtm, trigger="cli")
    relay.relay(engine)  # number the event and chain the audit entry now, not at the scheduler's next pass
    for problem in report.problems:
        print(f"FAIL {problem}")
    for item in report.differences:
        print(f"DIFF {item['kind']}: {item.get('detail')} (book {item.get('book')})")
    for item in report.pending:
        print(f"PENDING {item['kind']}: {item.get('detail')} (a ledger step or deposit is still running)")
    summary = report.summary
    airtm_summary = summary.get("airtm")
    if isinstance(airtm_summary, dict):
        airtm_summary = (f"enterprise available {airtm_summary['enterpriseAvailable']} vs users' balances "
                         f"{airtm_summary['userBalances']}, {airtm_summary['itemsCompared']} item(s) compared")
    pool = summary.get("treasuryPool")
    if isinstance(pool, dict):
        print(f"Treasury pool: {pool['usdc']} USDC, float {pool['float']} (recorded {pool['recordedFloat']}), backs "
              f"{pool['backedEscrows']} escrow(s) holding {pool['backedAmount']}")
    print(f"Compared {summary.get('walletsCompared') or 0} wallet(s) and {summary.get('escrowsCompared')} escrow(s); "
          f"AirTM: {airtm_summary}")
    print(f"Report {report.id}: " + ("OK, no differences" if report.ok else
                                      f"{len(report.differences)} difference(s), {len(report.problems)} problem(s)"))
    return 0 if report.ok else 1


def _scheduler(settings: Settings, _: argparse.Namespace) -> int:
    from actors import scheduler  # the one permitted upward import: the process entrypoint

    scheduler.run()
    return 0


def _monitor(settings: Settings, _: argparse.Namespace) -> int:
    from actors import monitor  # the one permitted upward import: the process entrypoint

    monitor.run()
    return 0


COMMANDS = {"migrate": _migrate, "bootstrap": _bootstrap, "check": _check, "scheduler": _scheduler,
            "monitor": _monitor, "wallets": _wallets, "audit": _audit,
            "reconcile": _reconcile}
#: Commands that take an action word, and the actions each accepts.
ACTIONS = {"wallets": ["rotate-key"], "audit": ["verify"]}
HELP = {"migrate": "upgrade the database to the latest migration",
        "bootstrap": "schema, then the platform user and its wallet; prints PLATFORM_USER_ID",
        "check": "verify the book's invariants and each wallet's ledger USDC against the book",
        "scheduler": "run the scheduler process (relay backstop, sweeps, pruning)",
        "monitor": "run the deposit monitor process (Horizon's payment stream)",
        "wallets": "wallet secrets: rotate-key re-seals them under WALLET_ENCRYPTION_KEY",
        "audit": "the audit hash chain: verify names the first entry changed, removed or reordered",
        "reconcile": "compare the book with the ledger (and AirTM), store the report, print every difference"}


class Parser(argparse.ArgumentParser):
    """An unknown command is "Invalid command" with a hint and exit 1 (cli-sdk.md §2.2); other usage errors 2."""

    def error(self, message: str) -> NoReturn:
        if "invalid choice" in message:
            self.print_usage(sys.stderr)
            print(f"Invalid command: {message.split(': ', 1)[-1]}\nRun '{self.prog} --help' to see the commands.",
                  file=sys.stderr)
            raise SystemExit(1)
        super().error(message)


def build_parser(prog: str = "offerhub") -> argparse.ArgumentParser:
    """Operator commands (``operator=``: read the server's settings and database, DESIGN decision 9) and the
    HTTP commands of ``orchestrator/cli/api.py`` (``http=``: through the SDK, OFFERHUB_API_URL/KEY)."""
    from orchestrator.cli import api as cli_api

    parser = Parser(prog=prog, description="OFFER-HUB Orchestrator: operator and API commands")
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    parser.add_argument("--url", help="API base URL (default: OFFERHUB_API_URL, .env, ~/.offerhub/config.json)")
    parser.add_argument("--key", help="API key or master key (default: OFFERHUB_API_KEY, .env, config file)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    sub = parser.add_subparsers(dest="command", metavar="<command>", parser_class=Parser)
    for name, command in COMMANDS.items():
        text = HELP.get(name) or (command.__doc__ or name).strip().splitlines()[0]  # a new command needs no HELP
        operator = sub.add_parser(name, help=text, description=text)
        operator.set_defaults(operator=command)
        if name in ACTIONS:
            operator.add_argument("action", choices=ACTIONS[name], help=", ".join(ACTIONS[name]))
        if name == "wallets":
            operator.add_argument("--batch-size", type=_positive, default=100, help="wallets per transaction")
        if name == "reconcile":
            operator.add_argument("--record-float", action="store_true",
                                  help="first record the treasury pool's and the AirTM enterprise's operator float "
                                       "as they are now (after the operator paid in or took out)")
    text = "show every setting's effective value and where it came from (environment, .env, default)"
    sub.add_parser("settings", help=text, description=text)
    cli_api.add_commands(sub)
    return parser


def _settings(args: argparse.Namespace) -> int:
    """Print every setting's effective value and source (secrets masked); exit 2 when they cannot work."""
    import json

    from orchestrator.cli.settings_report import effective

    variables, problems = effective()
    if args.json:
        print(json.dumps({"variables": [vars(v) for v in variables], "problems": problems}, indent=2))
    else:
        width = max(len(v.name) for v in variables)
        for variable in variables:
            shown = "(unset)" if variable.value is None else variable.value
            print(f"{variable.name:<{width}}  {shown}  [{variable.source}]")
        for problem in problems:
            print(f"problem: {problem}", file=sys.stderr)
    return 2 if problems else 0


def version() -> str:
    """This installation's version, from the package metadata (setup.cfg)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("offerhub-orchestrator")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


#: The exit status of a command ended by Ctrl-C, as shells report a SIGINT (128 + 2).
INTERRUPTED = 130


def main(argv: list[str] | None = None, prog: str = "offerhub") -> int:
    """Run one command; Ctrl-C at any point of it (imports included) exits 130 without a traceback.

    ``kill -USR1`` prints every thread's stack to stderr (POSIX): a command that seems stuck can say where.
    """
    if hasattr(signal, "SIGUSR1"):
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    starting = (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler)
    if starting:
        signal.signal(signal.SIGINT, _exit_while_starting)
    try:
        return _run(argv, prog)
    except KeyboardInterrupt:
        return INTERRUPTED
    finally:
        _started()


def _exit_while_starting(signum: int, frame: object) -> None:
    """Ctrl-C while the command starts (its imports, the parser): exit 130 at once. A KeyboardInterrupt
    raised there can be lost: one that lands while the import system runs a module lock's weakref callback
    is printed as "Exception ignored" and swallowed, and the command ran on (1 of 50 interrupts in
    tests/cli/test_interrupt.py). Nothing has begun yet that a prompt exit would leave half done."""
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(INTERRUPTED)


def _started() -> None:
    """The command proper begins: Ctrl-C raises KeyboardInterrupt again (smoke reports its verdict then)."""
    if signal.getsignal(signal.SIGINT) is _exit_while_starting:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _run(argv: list[str] | None, prog: str) -> int:
    from orchestrator.cli import api as cli_api

    parser = build_parser(prog)
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        parser.print_help()
        return 0
    args = parser.parse_args(argv)
    if getattr(args, "operator", None) is None and args.command != "settings":
        if getattr(args, "http", None) is None and getattr(args, "local", None) is None:
            parser.parse_args([*argv, "--help"])
        return cli_api.run(args, started=_started)  # once its client is made: no more imports on this thread
    if args.command == "settings":  # shows an invalid configuration too, so it needs no Settings
        _started()
        return _settings(args)
    from orchestrator.errors import ConfigError
    from orchestrator.logs import configure_logging
    from orchestrator.settings import Settings

    try:
        settings = Settings.from_env()
    except ConfigError as error:
        print(error.message, file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    _started()
    return int(args.operator(settings, args))


if __name__ == "__main__":
    sys.exit(main(prog="python -m orchestrator.cli.main"))
