"""The web process's ``LISTEN`` dispatch: a waiting request gets the state its command's notification
carried, the latest one wins, and none is lost between two waits (a flow ending right after its
command)."""

from __future__ import annotations

import json

from orchestrator.db.commands import DONE_CHANNEL
from web.listener import Listener


def _note(command_id: str, status: str, flow: str | None = None) -> str:
    return json.dumps({"id": command_id, "status": status, "result": None, "error": None, "flowStatus": flow,
                       "flowError": None})


async def test_a_note_resolves_the_waiter_with_the_state_it_carried() -> None:
    listener = Listener("", {})
    future = listener.expect("cmd_a")
    listener._dispatch(DONE_CHANNEL, _note("cmd_a", "DONE"))
    assert (await future) == json.loads(_note("cmd_a", "DONE"))


async def test_a_note_between_two_waits_is_kept_and_the_latest_wins() -> None:
    listener = Listener("", {})
    first = listener.expect("cmd_a")
    listener._dispatch(DONE_CHANNEL, _note("cmd_a", "DONE", "RUNNING"))
    assert (await first)["flowStatus"] == "RUNNING"
    listener._dispatch(DONE_CHANNEL, _note("cmd_a", "DONE", "DONE"))  # before the waiter took the first
    listener._dispatch(DONE_CHANNEL, _note("cmd_a", "DONE", "FAILED"))
    listener.taken("cmd_a", first)  # taking an older future does not drop the newer note
    second = listener.expect("cmd_a")
    assert second is not first
    assert (await second)["flowStatus"] == "FAILED"
    listener.taken("cmd_a", second)
    assert not listener.expect("cmd_a").done()  # nothing newer: the next wait waits


async def test_a_bare_id_or_an_id_alone_asks_the_waiter_to_read_the_row() -> None:
    listener = Listener("", {})
    bare, alone = listener.expect("cmd_a"), listener.expect("cmd_b")
    listener._dispatch(DONE_CHANNEL, "cmd_a")  # a worker of an earlier release
    listener._dispatch(DONE_CHANNEL, json.dumps({"id": "cmd_b"}))  # a state too long for a notification
    assert (await bare) is None
    assert (await alone) is None


async def test_notes_for_nobody_waiting_are_dropped() -> None:
    listener = Listener("", {})
    listener._dispatch(DONE_CHANNEL, _note("cmd_z", "DONE"))
    assert listener.waiters == {}
