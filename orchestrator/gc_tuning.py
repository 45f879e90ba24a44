"""The garbage collector's settings for a long-running process, applied once it has started.

A process of ours imports SQLAlchemy, marshmallow, stellar-sdk, aiohttp and our own modules: about
170,000 objects the cyclic collector tracks, none of which will ever be garbage. Each full collection
walks all of them (about 80 ms on this machine, during which a web process answers nothing), and the
allocations of a busy process trigger one from time to time. ``gc.freeze()`` moves
everything alive at start-up into the permanent generation the collector skips, so a full collection
walks only what the process made since (the Python docs' advice for long-running processes:
https://docs.python.org/3/library/gc.html#gc.freeze).
"""

from __future__ import annotations

import gc


def settle() -> None:
    """Collect what start-up left behind, then freeze the survivors out of every later collection."""
    gc.collect()
    gc.freeze()
