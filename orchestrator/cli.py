"""``offerhub``: operator commands that act on the server read its settings and database directly."""

from __future__ import annotations

import argparse
import sys

from orchestrator.errors import ConfigError
from orchestrator.logs import configure_logging
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
    from orchestrator import platform
    from orchestrator.db import create_sync_engine

    _migrate(settings, args)
    engine = create_sync_engine(settings.database_url, pool_size=1)
    user_id, created, messages = platform.bootstrap(engine, settings)
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
    """The book's invariants and, in crypto mode, each wallet's ledger USDC against the book (decision 7)."""
    from orchestrator import check
    from orchestrator.db import create_sync_engine
    from orchestrator.providers.horizon import Horizon

    horizon = Horizon(settings) if settings.payment_provider == "crypto" else None
    report = check.verify(create_sync_engine(settings.database_url, pool_size=1), horizon,
                          stuck_after=settings.payout_stuck_after)
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


def _wallets(settings: Settings, args: argparse.Namespace) -> int:
    """``wallets rotate-key``: re-seal every wallet secret under the current key (orchestrator/rotation.py)."""
    from orchestrator import crypto, rotation
    from orchestrator.db import create_sync_engine

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


def _scheduler(settings: Settings, _: argparse.Namespace) -> int:
    from actors import scheduler  # the one permitted upward import: the process entrypoint

    scheduler.run()
    return 0


def _monitor(settings: Settings, _: argparse.Namespace) -> int:
    from actors import monitor  # the one permitted upward import: the process entrypoint

    monitor.run()
    return 0


COMMANDS = {"migrate": _migrate, "bootstrap": _bootstrap, "check": _check, "scheduler": _scheduler,
            "monitor": _monitor, "wallets": _wallets}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestrator", description="Orchestrator operator commands")
    parser.add_argument("command", choices=sorted(COMMANDS))
    parser.add_argument("action", nargs="?", choices=["rotate-key"], help="wallets: rotate-key")
    parser.add_argument("--batch-size", type=int, default=100, help="wallets rotate-key: wallets per transaction")
    args = parser.parse_args(argv)
    if (args.command == "wallets") != (args.action is not None):
        parser.error("'wallets' takes an action (rotate-key); the other commands take none")
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    try:
        settings = Settings.from_env()
    except ConfigError as error:
        print(error.message, file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    return COMMANDS[args.command](settings, args)


if __name__ == "__main__":
    sys.exit(main())
