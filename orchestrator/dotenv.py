"""The ``.env`` file and the environment, merged the way operators expect: the environment wins.

python-dotenv, docker compose and honcho's own ``.env`` reading all let a variable set in the environment
override the file (DESIGN decisions 19 and 30), so ``PORT=5000 scripts/dev`` binds 5000 whatever ``.env``
says. Every process reads its settings through ``merged()``; ``OFFERHUB_ENV_FILE`` names another file, and
an empty value reads none (the test suite's processes, which must not see a developer's ``.env``).
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path

#: The variable naming the dotenv file (default ``.env`` in the working directory; empty: no file).
ENV_FILE_VARIABLE = "OFFERHUB_ENV_FILE"
DEFAULT_ENV_FILE = ".env"


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=value`` lines of a dotenv file (``export`` prefixes and quotes stripped, comments skipped)."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, _, value = line.removeprefix("export ").partition("=")
        values[name.strip()] = value.strip().strip("'\"")
    return values


def env_file(environ: Mapping[str, str]) -> Path | None:
    """The dotenv file this process reads, or ``None`` when ``OFFERHUB_ENV_FILE`` is set empty."""
    named = environ.get(ENV_FILE_VARIABLE, DEFAULT_ENV_FILE)
    return Path(named) if named.strip() else None


def from_file(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables of this process's dotenv file (none when there is no file)."""
    environ = os.environ if environ is None else environ
    path = env_file(environ)
    return read_env_file(path) if path is not None else {}


def merged(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The dotenv file's variables with the environment's on top (an empty variable in the environment counts
    as unset, as ``Settings`` reads it)."""
    environ = os.environ if environ is None else environ
    given = {name: value for name, value in environ.items() if value.strip()}
    return {**from_file(environ), **given}


def export_lines(environ: Mapping[str, str] | None = None) -> list[str]:
    """``export NAME=value`` for each dotenv variable the environment does not set, for a shell to ``eval``."""
    environ = os.environ if environ is None else environ
    return [f"export {name}={shlex.quote(value)}" for name, value in from_file(environ).items()
            if not environ.get(name, "").strip() and name.isidentifier()]


if __name__ == "__main__":  # scripts/dev: eval "$(python -m orchestrator.dotenv)"
    sys.stdout.write("".join(f"{line}\n" for line in export_lines()))
