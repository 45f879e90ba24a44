"""``gc_tuning.settle``: start-up's survivors leave the collector's walk; its garbage does not survive."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from orchestrator.gc_tuning import settle


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # the rest of the test run collects as before


@pytest.mark.usefixtures("unfrozen")
def test_settle_freezes_what_is_alive_and_collects_cycles_first() -> None:
    alive = Node()
    garbage = Node()
    gone = weakref.ref(garbage)
    del garbage
    assert gc.get_freeze_count() == 0
    settle()
    assert gone() is None  # collected before the freeze, not kept forever in the permanent generation
    assert gc.get_freeze_count() > 1000  # everything imported so far, and ``alive``, is out of the walk
    assert gc.is_tracked(alive)
    assert not any(o is alive for o in gc.get_objects())  # the collector no longer walks it
