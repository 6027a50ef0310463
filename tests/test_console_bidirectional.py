"""A bidirectional call in the console (Pilot, the real embedded node): its tab has
a send box, shows what was sent and what came back, and ends when the input ends."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from console.core.outbox import Outbox, parse_lines
from console.core.stream_store import State
from console.widgets.send_box import SendInput

from console_helpers import running_console, select_method, wait_for

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_send_box_lines_parse_one_json_value_each_and_the_outbox_is_bounded():
    assert parse_lines('{"n": 1}\n\n2\n"x"') == ([{"n": 1}, 2, "x"], None)
    values, error = parse_lines('1\nnope')
    assert values == [] and error.startswith("line 2 is not JSON")
    box = Outbox(max_pending=2)
    assert box.put([1, 2, 3]) == 2 and list(box.pending) == [1, 2]
    box.ask_end()
    assert box.put([4]) == 0


@pytest.mark.asyncio
async def test_a_bidirectional_tab_sends_lines_and_shows_both_directions():
    async with running_console(size=(140, 40)) as (app, pilot):
        panel = await select_method(app, pilot, "o://demo", "echo_stream")
        assert panel.method.takes_input
        await pilot.press("f5")
        record = app.session.calls[-1]
        await wait_for(pilot, lambda: record.state is State.RUNNING, what="the call running")
        view = app.current_view
        await wait_for(pilot, lambda: view.send_box is not None and view.send_box.is_mounted, what="send box")
        box = view.send_box
        box.input.focus()
        await pilot.pause()
        for line in ('{"n": 1}', '"two"', "[3]"):
            await pilot.press(*line, "enter")
        await wait_for(pilot, lambda: record.count == 3, what="three echoes")
        box.input.value = "not json"
        await pilot.press("enter")
        await pilot.pause(0.3)
        assert record.outbox.count == 3 and box.input.value == "not json"  # refused, kept for fixing
        box.input.value = ""
        await pilot.pause(0.3)
        if os.environ.get("OLANE_SAVE_SCREENSHOTS"):  # how docs/console-bidirectional.svg is made
            app.save_screenshot("console-bidirectional.svg", str(DOCS))  # running: both directions, the box open
        await pilot.press("ctrl+d")
        await wait_for(pilot, lambda: record.state.ended, what="the end")
        await pilot.pause(0.3)
        assert record.state is State.COMPLETED and record.final == {"count": 3}
        assert [c.data for c in record.chunks()] == [{"count": 1, "data": {"n": 1}}, {"count": 2, "data": "two"},
                                                     {"count": 3, "data": [3]}]
        assert [v for _, v in record.outbox.sent] == [{"n": 1}, "two", [3]] and record.outbox.ended
        sent = str(box.query_one(".send-sent").render())
        assert "→ sent 3" in sent and "input ended" in sent and '→ #3  [3]' in sent
        assert "⇄ sent 3" in str(view.query_one(".call-status").render())
        assert box.query_one(SendInput).disabled
