"""The reference pages say what the code does: generated pages are current, every setting, error code,
event type, CLI command and SDK error class is documented, and ``.env.example`` agrees with ``Settings``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from scripts import docs_gen

ROOT = Path(__file__).resolve().parents[2]
ENV_EXAMPLE = ROOT / ".env.example"
#: Values ``.env.example`` gives that are not the default: the local sandbox's own credentials, so
#: that ``scripts/dev`` works out of the box (the defaults are empty).
SANDBOX_CREDENTIALS = {"TRUSTLESS_API_KEY", "AIRTM_API_KEY", "AIRTM_API_SECRET", "AIRTM_WEBHOOK_SECRET"}
#: Defaults computed from another variable, which ``.env.example`` spells out.
COMPUTED = {"SANDBOX_URL": "http://127.0.0.1:4100"}
#: Left empty on purpose: ``Procfile.dev`` turns it on when it is empty (``${WEBHOOKS_ALLOW_PRIVATE:-true}``),
#: which a ``false`` in ``.env`` would defeat.
EMPTY_ON_PURPOSE = {"WEBHOOKS_ALLOW_PRIVATE"}


def test_the_generated_pages_are_current() -> None:
    """Fails after a setting, error code or event changed without ``python -m scripts.docs_gen``."""
    assert docs_gen.stale_pages() == [], "run python -m scripts.docs_gen and commit docs/reference/"


def test_every_variable_settings_reads_is_documented() -> None:
    read = set(docs_gen.settings_variables())
    documented = {name for group in docs_gen.VARIABLES.values() for name in group}
    assert read - documented == set(), "add a line to VARIABLES in scripts/docs_gen.py"
    assert documented - read == set(), "VARIABLES documents a variable Settings no longer reads"
    page = (ROOT / "docs" / "reference" / "configuration.md").read_text()
    assert all(f"| `{name}` |" in page for name in read)


def test_every_error_code_the_server_sends_is_in_the_catalogue_with_its_status() -> None:
    from orchestrator import errors
    from web.errors import status_of

    known = docs_gen.known_error_codes()
    assert {"INSUFFICIENT_FUNDS", "METHOD_NOT_ALLOWED", "SERVICE_UNAVAILABLE", "NOT_FOUND"} <= set(known)
    assert set(known) == set(docs_gen.ERRORS), "add (or remove) a line in ERRORS of scripts/docs_gen.py"
    page = (ROOT / "docs" / "reference" / "errors.md").read_text()
    rows = dict(re.findall(r"^\| `([A-Z_]+)` \| (\d{3}) \|", page, re.MULTILINE))
    assert {code: int(status) for code, status in rows.items()} == {
        code: status_of(errors.from_dict({"code": code})) for code in known}
    fields = docs_gen.field_codes_in_code() - set(known)
    assert fields - set(docs_gen.FIELD_CODES) == set(), "add a line to FIELD_CODES in scripts/docs_gen.py"


def test_every_event_type_is_in_the_catalogue() -> None:
    from orchestrator.events import CATALOG

    page = (ROOT / "docs" / "reference" / "events.md").read_text()
    assert set(re.findall(r"^\| `([a-z_]+\.[a-z_]+)` \|", page, re.MULTILINE)) == CATALOG


def env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def same_default(example: str, default: str | None) -> bool:
    """``30`` and ``30.0``, ``true`` and ``True``, ``5,300`` and ``(5.0, 300.0)`` are the same default."""
    return (docs_gen.show_default(default) in ("—", "empty") and example == "") or \
        docs_gen.show_default(default) == docs_gen.show_default(example or None)


def test_env_example_lists_every_variable_settings_reads_with_its_default() -> None:
    example = env_example()
    per_network = docs_gen.settings_variables()
    missing = sorted(set(per_network) - set(example))
    assert missing == [], f".env.example lacks {missing}"
    wrong = {}
    for name, defaults in per_network.items():
        value = example[name]
        if name in SANDBOX_CREDENTIALS or (name in EMPTY_ON_PURPOSE and value == ""):
            continue
        if name in COMPUTED:
            assert value == COMPUTED[name], name
            continue
        varies = len({docs_gen.show_default(v) for v in defaults.values()}) > 1
        if varies and value == "":
            continue  # a default that depends on the network: left empty, the page says which
        if not same_default(value, defaults.get("sandbox", next(iter(defaults.values())))):
            wrong[name] = (value, defaults)
    assert wrong == {}, "values in .env.example that are not Settings' defaults"


def test_env_example_has_no_variable_nobody_reads() -> None:
    unknown = set(env_example()) - set(docs_gen.settings_variables()) - set(docs_gen.OTHER_VARIABLES)
    assert unknown == set(), "document it in OTHER_VARIABLES of scripts/docs_gen.py, or drop it"


def test_every_cli_command_has_its_section() -> None:
    """Each command has a ``### `name…``` heading, and each of its actions (``keys create``) is named."""
    import argparse

    from orchestrator.cli.main import build_parser

    page = (ROOT / "docs" / "developers" / "cli.md").read_text()

    def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
        found = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        return dict(found[0].choices) if found else {}

    commands = subcommands(build_parser())
    assert len(commands) > 15
    for name, parser in commands.items():
        assert f"### `{name}" in page, f"docs/developers/cli.md has no section for {name}"
        actions = list(subcommands(parser)) or [c for a in parser._actions if a.dest == "action"
                                                 for c in (a.choices or ())]
        for action in actions:
            assert f"`{name} {action}" in page, f"docs/developers/cli.md never names {name} {action}"


@pytest.mark.parametrize("name", ["Client", "AsyncClient"])
def test_the_sdk_page_names_every_error_class_and_group(name: str) -> None:
    from orchestrator.client import errors
    from orchestrator.client.clients import AsyncClient

    page = (ROOT / "docs" / "developers" / "sdk.md").read_text()
    classes = {n for n, v in vars(errors).items() if isinstance(v, type) and issubclass(v, errors.OfferHubError)}
    assert {c for c in classes if f"`{c}`" not in page} == set()
    client = AsyncClient("http://127.0.0.1:1", "k")
    groups = {n for n, v in vars(client).items() if hasattr(v, "_call")}
    assert groups, name
    assert {g for g in groups if f"`{g}`" not in page} == set()
