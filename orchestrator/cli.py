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
    from orchestrator import check
    from orchestrator.db import create_sync_engine

    report = check.verify(create_sync_engine(settings.database_url, pool_size=1))
    for problem in report.problems:
        print(f"FAIL {problem}")
    print("OK: the book is consistent" if report.ok else f"{len(report.problems)} problem(s)")
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
            "monitor": _monitor}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestrator", description="Orchestrator operator commands")
    parser.add_argument("command", choices=sorted(COMMANDS))
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except ConfigError as error:
        print(error.message, file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    return COMMANDS[args.command](settings, args)


if __name__ == "__main__":
    sys.exit(main())
