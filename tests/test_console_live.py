"""The console and live streams, on a real embedded node: another caller's stream
listed under the node, Enter taps it in a pane marked TAP; a call whose
connection is killed is resumed in the same pane ("resumed at seq N")."""
from __future__ import annotations

import os
from pathlib import Path

import trio

from console.app import OlaneConsole
from console.core.session import ConsoleSession, MethodInfo
from console.core.stream_store import State, StreamRecord
from console.widgets.node_tree import NodeTree, StreamRef
from node_runtime import Client

from console_helpers import running_console, start_call, wait_for

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _stream_line(app, method: str) -> int | None:
    tree = app.query_one(NodeTree)
    for line in range(tree.last_line + 1):
        node = tree.get_node_at_line(line)
        if node is not None and isinstance(node.data, StreamRef) and node.data.stream.get("method") == method:
            return line
    return None


async def test_another_callers_stream_is_listed_tapped_and_a_killed_call_resumes_in_its_pane():
    session = ConsoleSession(embedded=True, stream_refresh=0.3)
    async with running_console(session=session) as (app, pilot):
        target = next(t for t in app.session.targets if t.embedded)
        other_done = trio.Event()

        async def other_caller() -> None:  # a stranger streams from the embedded node
            with trio.fail_after(40):
                async with Client() as client:
                    call = client.use_streaming("o://demo", "stream_items", {"count": 200, "delayMs": 20},
                                                via=target.multiaddr)
                    async for _ in call:
                        pass
            other_done.set()

        app.bridge.submit(other_caller)
        line = await wait_for(pilot, lambda: _stream_line(app, "stream_items"), what="the stream in the tree")
        tree = app.query_one(NodeTree)
        tree.focus()
        tree.cursor_line = line
        await pilot.press("enter")
        tap = app.session.calls[-1]
        assert tap.tap_of and tap.title.startswith("tap stream_items")
        await wait_for(pilot, lambda: tap.count >= 10, what="tapped chunks")
        first = tap.wire_sequence(0)
        assert first is not None and first >= 1  # the stream's own sequences
        await pilot.pause(0.3)
        status = str(app.current_view.query_one(".call-status").render())
        assert "TAP" in status and "RUNNING" in status
        assert not tap.lint()  # no gaps: this tap keeps up
        if os.environ.get("OLANE_SAVE_SCREENSHOTS"):  # how docs/console-tap.svg is made
            app.save_screenshot(str(DOCS / "console-tap.svg"))

        # a call of the console's own, its connection killed mid-stream: same pane, resumed
        demo = target.tool("o://demo")
        record = start_call(app, "o://demo", "stream_items", {"count": 150, "delayMs": 5})
        await wait_for(pilot, lambda: record.count >= 30, what="chunks of the console's call")
        tabs_before = len(app.views)
        assert await app.bridge.call(app.session.abort_connection, record)
        await wait_for(pilot, lambda: record.state.ended, timeout=20, what="the call to end")
        assert record.state is State.COMPLETED and record.count == 150 and not record.lint()
        assert record.resumed_at and record.resumed_at[0] > 30
        assert len(app.views) == tabs_before
        await pilot.pause(0.3)
        status = str(app.current_view.query_one(".call-status").render())
        assert f"resumed at seq {record.resumed_at[-1]:,}" in status


def test_a_tap_record_flags_lost_chunks_as_gaps():
    record = StreamRecord(title="tap stream_items #1", method="tap")
    record.tap_of = "s-1"
    for seq in (7, 8, 12, 13):  # the tap started at 7 and lost 9..11
        record.add_chunk({"n": seq}, seq, 10)
    record.tap_dropped = 3
    record.finish({"message": ""}, 101, 100)  # the whole stream's count: not a finding for a tap
    findings = record.lint()
    assert findings == ["tap lost 3 chunk(s) (read too slowly)", "3 sequence(s) missing in 1 gap(s)"]
