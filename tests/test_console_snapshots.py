"""How the console looks (pytest-textual-snapshot; Textual is pinned exactly).

The main screen, the form and the help screen come from a real embedded node
with a fixed seed (so its peer id is stable). Stream panes show timings, so
those two are drawn from records filled on a fixed clock: they pin the looks;
tests/test_console.py proves the behaviour against real streams.
Update baselines with `./run tests tests/test_console_snapshots.py --snapshot-update`.
"""
from __future__ import annotations

import time

from textual.widgets import Input

from console.app import OlaneConsole
from console.core.session import ConsoleSession
from console.core.stream_store import StreamRecord
from console_helpers import select_method, set_field, wait_for

SIZE = (130, 40)


class FixedClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def snapshot_app() -> OlaneConsole:
    return OlaneConsole(session=ConsoleSession(seed="olane-snapshot"))


async def connected(pilot) -> None:
    app = pilot.app
    await wait_for(pilot, lambda: app.session.targets and app.session.targets[0].state == "connected",
                   what="discovery")
    await pilot.pause(0.2)
    for field in app.query(Input):
        field.cursor_blink = False


def fill(record: StreamRecord, clock: FixedClock, sequences: list[int]) -> None:
    for i, seq in enumerate(sequences):
        clock.t += 0.0125 if i % 7 else 0.04
        record.add_chunk({"id": seq, "data": f"Item {seq}", "timestamp": "2026-11-24T12:00:00.000000+00:00"},
                         seq, 92 + len(str(seq)))


def open_record(app: OlaneConsole, streaming_method: str, params: dict, clock: FixedClock) -> StreamRecord:
    target = app.session.targets[0]
    record = StreamRecord(title=f"{streaming_method} #1", target=target.multiaddr, address="o://demo",
                          method=streaming_method, params=params, clock=clock)
    record.number = 1
    record.mark_running()
    app.session.calls.append(record)
    app._open_tab(record)
    return record


def test_main_screen(snap_compare):
    assert snap_compare(snapshot_app(), terminal_size=SIZE, run_before=connected)


def test_form_with_a_validation_error(snap_compare):
    async def run_before(pilot) -> None:
        await connected(pilot)
        panel = await select_method(pilot.app, pilot, "o://sqlite", "query")
        await set_field(pilot, panel, "params", "[1, 2")
        await pilot.pause(0.2)
        for field in pilot.app.query(Input):
            field.cursor_blink = False

    assert snap_compare(snapshot_app(), terminal_size=SIZE, run_before=run_before)


def test_help_screen(snap_compare):
    async def run_before(pilot) -> None:
        await connected(pilot)
        await pilot.press("question_mark")
        await pilot.pause(0.2)

    assert snap_compare(snapshot_app(), terminal_size=SIZE, run_before=run_before)


def test_running_stream(snap_compare):
    async def run_before(pilot) -> None:
        await connected(pilot)
        clock = FixedClock()
        record = open_record(pilot.app, "stream_items", {"count": 500, "delayMs": 10}, clock)
        # in order, then a gap (48, 49 missing), one late arrival and a duplicate
        fill(record, clock, list(range(1, 48)) + [50, 51, 48, 52, 52, 53, 54])
        await pilot.pause(0.3)

    assert snap_compare(snapshot_app(), terminal_size=SIZE, run_before=run_before)


def test_failed_stream(snap_compare):
    async def run_before(pilot) -> None:
        await connected(pilot)
        clock = FixedClock()
        record = open_record(pilot.app, "stream_with_error", {"failAt": 3, "delayMs": 100}, clock)
        fill(record, clock, [1, 2, 3])
        clock.t += 0.1
        record.fail(4001, "UNKNOWN", "Intentional error at item 3", {"failAt": 3, "chunksSent": 3})
        await pilot.pause(0.3)

    assert snap_compare(snapshot_app(), terminal_size=SIZE, run_before=run_before)


def test_main_screen_at_100x30(snap_compare):
    """Narrow: the footer keeps its most useful keys whole, the tab names its node, the
    chunk log's data column gets the width left over."""
    async def run_before(pilot) -> None:
        await connected(pilot)
        clock = FixedClock()
        record = open_record(pilot.app, "stream_items", {"count": 500, "delayMs": 10}, clock)
        fill(record, clock, list(range(1, 31)))
        await pilot.pause(0.3)

    assert snap_compare(snapshot_app(), terminal_size=(100, 30), run_before=run_before)
