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
    """Everything a fresh instance needs before its processes start (DESIGN decision 9)."""
    return _migrate(settings, args)


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


COMMANDS = {"migrate": _migrate, "bootstrap": _bootstrap, "check": _check, "scheduler": _scheduler}


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
