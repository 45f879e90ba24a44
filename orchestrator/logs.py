"""Logging set-up shared by every process: one JSON object per line, with the bound context.

Every module logs through the standard library (``logging.getLogger(__name__)``); the root handler's
formatter turns each record into JSON and merges structlog's context variables, which the web
middleware (``request_id``, ``command_id``) and the actor middleware (``message_id``, ``actor``,
``command_id``, ``request_id``, ``step_id``) bind for the task or thread handling the work. Secrets
never reach a line: keys that name one are dropped and values shaped like one are masked. E-mail
addresses (an AirTM refusal quotes the recipient's) keep their first character and domain, as the audit
trail keeps them (spec api.md §15).
"""

from __future__ import annotations

import logging
import re
from collections.abc import MutableMapping
from typing import Any

import structlog

#: Field names whose values are never written.
SECRET_FIELDS = frozenset({"authorization", "password", "secret", "secret_key", "seed", "api_key", "master_key",
                           "token", "wallet_encryption_key", "sealed_secret"})
#: A Stellar secret seed (``S`` + 55 base32 characters) and our own credentials (``ohk_…``).
_SEED = re.compile(r"\bS[A-Z2-7]{55}\b")
_CREDENTIAL = re.compile(r"\b(ohk_(?:live|test|tok)_)[A-Za-z0-9_.\-]{6,}")
REDACTED = "[REDACTED]"
#: An e-mail address: its first character and its domain are kept (``a***@example.com``).
EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})")


def mask_emails(text: str) -> str:
    return EMAIL.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", text) if "@" in text else text


def redact_text(text: str) -> str:
    """Mask anything shaped like a secret seed, an API credential or an e-mail address inside free text."""
    text = mask_emails(text)
    if "S" in text:
        text = _SEED.sub(REDACTED, text)
    if "ohk_" in text:
        text = _CREDENTIAL.sub(lambda m: m.group(1) + REDACTED, text)
    return text


def redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: the last line of defence against a secret in a log line."""
    for key in list(event):
        value = event[key]
        if key.lower() in SECRET_FIELDS:
            event[key] = REDACTED
        elif isinstance(value, str):
            event[key] = redact_text(value)
    return event


def _shared() -> list[Any]:
    return [structlog.contextvars.merge_contextvars, structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name, structlog.stdlib.ExtraAdder(),
            structlog.processors.TimeStamper(fmt="iso", utc=True)]


def json_formatter() -> logging.Formatter:
    """Renders standard-library records and structlog events alike as one JSON object per line."""
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared(),
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, redact, structlog.processors.JSONRenderer()])


def configure_logging(level: str = "INFO") -> None:
    """JSON on every handler of the root logger (adding one on stderr when there is none).

    Existing handlers keep their streams (the Dramatiq CLI pipes each worker process's output to its
    parent) and get the JSON formatter.
    """
    numeric = getattr(logging, level, logging.INFO)
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler())
    formatter = json_formatter()
    for handler in root.handlers:
        handler.setFormatter(formatter)
    root.setLevel(numeric)
    for noisy in ("pika", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(max(numeric, logging.WARNING))
    structlog.configure(
        processors=[*_shared(), structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        cache_logger_on_first_use=True)


def bind(**values: Any) -> None:
    """Add fields to every later log line of this task or thread (the caller clears them)."""
    structlog.contextvars.bind_contextvars(**{k: v for k, v in values.items() if v is not None})
