"""``offerhub settings``: the effective value of every variable and where it came from, secrets masked.

The list is the variables ``Settings`` actually reads (recorded as it reads them), so it cannot drift from
the code; each comes from the environment, the ``.env`` file, or the default (DESIGN decision 30).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from orchestrator import dotenv
from orchestrator.settings import variables_read

#: Variables whose whole value is a secret.
SECRET_NAME = re.compile(r"KEY|SECRET|PASSWORD|TOKEN")
#: ``scheme://user:password@host``: the password part of a URL is masked, the rest is shown.
URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@]+:)(?P<password>[^@]+)(?P<tail>@)", re.IGNORECASE)
MASK = "****"


@dataclass(frozen=True)
class Variable:
    """One setting as this process would see it."""

    name: str
    value: str | None
    source: str  # "environment", the dotenv file's name, or "default"


def mask(name: str, value: str | None) -> str | None:
    """``value`` safe to print: secrets become ``****`` (with their last 4 characters when long enough)."""
    if value is None:
        return None
    if SECRET_NAME.search(name):
        return f"{MASK}{value[-4:]}" if len(value) >= 16 else MASK
    return URL_PASSWORD.sub(lambda m: f"{m['head']}{MASK}{m['tail']}", value)


def effective(environ: Mapping[str, str] | None = None) -> tuple[list[Variable], list[str]]:
    """Every variable ``Settings`` reads, its masked effective value and source; and the problems found."""
    environ = os.environ if environ is None else environ
    from_file = dotenv.from_file(environ)
    file_name = str(dotenv.env_file(environ) or ".env")
    read, problems = variables_read(dotenv.merged(environ))
    variables = []
    for name in sorted(read):
        value: str | None
        if environ.get(name, "").strip():
            value, source = environ[name].strip(), "environment"
        elif from_file.get(name, "").strip():
            value, source = from_file[name].strip(), file_name
        else:
            value, source = read[name], "default"
        variables.append(Variable(name, mask(name, value), source))
    return variables, problems
