"""Resource id prefixes (spec api.md §1.3) and the only id generator."""

from __future__ import annotations

import re
import secrets
import string

#: Resource name -> id prefix. ``cmd_`` (commands) is ours; the rest are the spec's.
PREFIXES: dict[str, str] = {
    "user": "usr_",
    "order": "ord_",
    "escrow": "esc_",
    "dispute": "dsp_",
    "withdrawal": "wd_",
    "topup": "topup_",
    "event": "evt_",
    "audit": "aud_",
    "api_key": "key_",
    "wallet": "wal_",
    "command": "cmd_",
    "milestone": "ms_",
    "step": "stp_",
    "reconciliation": "rec_",
    "webhook_endpoint": "whe_",  # DESIGN decision 28
    "webhook_delivery": "whd_",
}

_ALNUM = string.ascii_letters + string.digits
_EVENT_ALPHABET = _ALNUM + "_-"
#: The spec's pattern for an id received in a body or query: prefix, then 1-64 of [A-Za-z0-9_-].
_BODY = re.compile(r"[A-Za-z0-9_-]{1,64}")


def new_id(resource: str) -> str:
    """A fresh id: 32 alphanumeric characters (21 URL-safe ones for events, as the original)."""
    prefix = PREFIXES[resource]
    if resource == "event":
        return prefix + _random(_EVENT_ALPHABET, 21)
    return prefix + _random(_ALNUM, 32)


def _random(alphabet: str, length: int) -> str:
    """``length`` characters drawn uniformly from ``alphabet`` out of one ``secrets.token_bytes`` read.

    ``secrets.choice`` per character cost a system call and a rejection loop each: a credit draws four
    ids, and that was 6 % of its worker CPU (issue 16 profile). A byte at or above the largest multiple
    of the alphabet's size is skipped, so every character stays equally likely.
    """
    size = len(alphabet)
    limit = 256 - 256 % size
    chars: list[str] = []
    while len(chars) < length:
        chars.extend(alphabet[b % size] for b in secrets.token_bytes(length + 8) if b < limit)
    return "".join(chars[:length])


def is_valid(resource: str, value: object) -> bool:
    """Whether ``value`` looks like an id of ``resource`` (prefix plus an allowed body)."""
    prefix = PREFIXES[resource]
    return isinstance(value, str) and value.startswith(prefix) and bool(_BODY.fullmatch(value[len(prefix):]))
