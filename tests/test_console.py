"""The console as an operator uses it: a real embedded node serving the tool
library over real libp2p on 127.0.0.1, driven by Pilot."""
from __future__ import annotations

import json
import signal

import trio

from console.core.config import Settings
from console.core.stream_store import GAP, REORDERED, State
from console.screens.dialogs import ConfirmScreen
from console.screens.help import HelpScreen
from console.widgets.call_view import CallView
from console.widgets.chunk_log import ChunkLog
from console.widgets.node_tree import MethodRef, NodeTree
from console_helpers import (active_requests, embedded_target, running_console, select_method, set_field, start_call,
                             visible_text, wait_for)
from process_helpers import start_node, stop_process


async def test_tree_lists_the_tool_librarys_tools_and_methods():
    async with running_console() as (app, pilot):
        target = embedded_target(app)
        assert target.state == "connected"
        assert {t.address for t in target.tools} == {"o://demo", "o://sqlite", "o://files", "o://metrics"}
        tree = app.query_one(NodeTree)
        methods = set()
        for node in list(tree.root.children):
            node.expand_all()
        await pilot.pause()
        for line in range(tree.last_line + 1):
            data = tree.get_node_at_line(line).data
            if isinstance(data, MethodRef):
                methods.add((data.address, data.method.name))
        for expected in [("o://demo", "stream_items"), ("o://demo", "get_items"), ("o://sqlite", "query"),
                         ("o://files", "read"), ("o://metrics", "watch"), ("o://demo", "ping")]:
            assert expected in methods


async def test_selecting_a_method_shows_description_parameters_and_streaming():
    async with running_console() as (app, pilot):
        panel = await select_method(app, pilot, "o://demo", "stream_items")
        assert panel.method.streaming
        assert {"count", "delayMs"} <= set(panel._fields)
        assert panel._fields["count"]["widget"].value == "10"  # the default, filled in
        assert "streams" in str(panel.query_one(".method-title").render())


async def test_unary_call_shows_its_result_with_duration():
    async with running_console() as (app, pilot):
        panel = await select_method(app, pilot, "o://demo", "get_items")
        await set_field(pilot, panel, "count", "3")
        await pilot.press("f5")
        record = app.session.calls[-1]
        await wait_for(pilot, lambda: record.state.ended, what="the answer")
        await pilot.pause(0.2)
        assert record.state is State.COMPLETED and not record.streaming
        assert record.final["total"] == 3
        view = app.current_view
        shown = view.views.value  # {items: [3 records], total}: a table of the items
        assert shown.table_view is not None and shown.table_view.model.row_count == 3
        assert "total: 3" in shown.caption()
        assert "completed in" in str(view.query_one(".call-end").render())


async def test_stream_items_200_shows_200_chunks_in_order_and_completes():
    async with running_console() as (app, pilot):
        panel = await select_method(app, pilot, "o://demo", "stream_items")
        await set_field(pilot, panel, "count", "200")
        await set_field(pilot, panel, "delayMs", "1")
        await pilot.press("f5")
        record = app.session.calls[-1]
        assert record.params == {"count": 200, "delayMs": 1}
        await wait_for(pilot, lambda: record.state.ended, what="the stream to end")
        await pilot.pause(0.3)
        assert record.state is State.COMPLETED
        assert record.count == 200
        assert [c.sequence for c in record.chunks()] == list(range(1, 201))
        assert record.lint() == []
        log = app.current_view.query_one(ChunkLog)
        text = visible_text(log)
        assert "{\"id\":200" in text.replace(" ", "") or '"id":200' in text  # following the tail
        assert "✔ stream_items #1" in str(app.query_one("#calls").get_tab("call-1").label)


async def test_stream_with_error_ends_failed_with_code_and_message():
    async with running_console() as (app, pilot):
        panel = await select_method(app, pilot, "o://demo", "stream_with_error")
        await set_field(pilot, panel, "failAt", "3")
        await set_field(pilot, panel, "delayMs", "0")
        await pilot.press("f5")
        record = app.session.calls[-1]
        await wait_for(pilot, lambda: record.state.ended, what="the failure")
        await pilot.pause(0.2)
        assert record.state is State.FAILED and record.count == 3
        assert record.error.code == 4001 and "Intentional error at item 3" in record.error.message
        end = str(app.current_view.query_one(".call-end").render())
        assert "4001 UNKNOWN" in end and "Intentional error at item 3" in end
        assert any(e.code == 4001 for e in app.session.errors)  # the app-wide errors log
        await pilot.press("e")
        assert type(app.screen).__name__ == "ErrorsScreen"


async def test_cancel_stops_the_stream_and_the_node_frees_the_request():
    async with running_console() as (app, pilot):
        panel = await select_method(app, pilot, "o://demo", "stream_items")
        await set_field(pilot, panel, "count", "100000")
        await set_field(pilot, panel, "delayMs", "5")
        await pilot.press("f5")
        record = app.session.calls[-1]
        await wait_for(pilot, lambda: record.count >= 5, what="chunks")
        target = embedded_target(app)
        assert await active_requests(app, target) == 1
        app.query_one(ChunkLog).focus()
        await pilot.press("x")
        await wait_for(pilot, lambda: record.state is State.CANCELLED, what="cancelled")
        count = record.count
        await wait_for(pilot, lambda: True)
        for _ in range(40):  # the node cancels the generator once the reset reaches it
            if await active_requests(app, target) == 0:
                break
            await pilot.pause(0.05)
        assert await active_requests(app, target) == 0
        await pilot.pause(0.2)
        assert record.count == count  # nothing more arrived
        assert "cancelled" in str(app.current_view.query_one(".call-end").render())


async def test_two_streams_run_at_once_in_two_tabs():
    async with running_console() as (app, pilot):
        target = embedded_target(app)
        demo = target.tool("o://demo")
        # long enough (2 s, 1.5 s) that both still run when a loaded machine gets to look
        first = start_call(app, "o://demo", "stream_items", {"count": 200, "delayMs": 10})
        second = start_call(app, "o://demo", "stream_progress", {"totalSteps": 150, "delayMs": 10})
        await wait_for(pilot, lambda: first.count > 5 and second.count > 5, what="both streams flowing")
        assert not first.state.ended and not second.state.ended  # both at once
        assert len(app.views) == 2 and app.query_one("#calls").tab_count == 2
        await wait_for(pilot, lambda: first.state.ended and second.state.ended, what="both ends")
        assert (first.state, first.count) == (State.COMPLETED, 200)
        assert (second.state, second.count) == (State.COMPLETED, 150)
        assert second.chunk(149).data["progress"] == 100


async def test_a_node_killed_mid_stream_turns_the_pane_to_an_error_and_the_app_stays_usable():
    proc, multiaddr = start_node("--tools", "demo")
    try:
        async with running_console(targets=[multiaddr], embedded=False) as (app, pilot):
            target = app.session.targets[0]
            assert target.state == "connected"
            record = start_call(app, "o://demo", "stream_items", {"count": 100000, "delayMs": 5}, target)
            await wait_for(pilot, lambda: record.count >= 5, what="chunks from the node")
            proc.send_signal(signal.SIGKILL)
            await wait_for(pilot, lambda: record.state.ended, what="the pane to notice")
            await pilot.pause(0.2)
            assert record.state is State.FAILED
            assert record.error.code == 4020 and record.missing_final
            assert "4020 RECEIVE_FAILED" in str(app.current_view.query_one(".call-end").render())
            await wait_for(pilot, lambda: target.state == "unreachable", what="the node marked unreachable")
            await pilot.press("question_mark")
            assert isinstance(app.screen, HelpScreen)
            await pilot.press("escape")
            assert not isinstance(app.screen, HelpScreen)
    finally:
        stop_process(proc)


async def test_gaps_and_reordering_by_a_chosen_json_path_are_flagged():
    from node_runtime import Request, Tool
    from tool_library import build_tools

    class Shuffled(Tool):
        address = "o://shuffled"

        async def _tool_numbers(self, request: Request):
            for n in [1, 2, 4, 3, 3, 7]:
                yield {"n": n}

    from console.core.session import ConsoleSession

    session = ConsoleSession(embedded_tools=[*build_tools(["demo"]), Shuffled()])
    async with running_console(session=session) as (app, pilot):
        record = start_call(app, "o://shuffled", "numbers", {})
        await wait_for(pilot, lambda: record.state.ended, what="the stream")
        assert record.lint() == []  # our node's _sequence is in order
        await pilot.press("o")
        await pilot.press(*"n", "enter")
        await pilot.pause(0.2)
        flags = [c.flags for c in record.chunks()]
        assert flags[2] & GAP and flags[3] & REORDERED
        findings = str(app.current_view.query_one(".call-findings").render())
        assert "out of order" in findings and "duplicate" in findings and "ordered by n" in findings


async def test_invalid_form_input_is_flagged_and_not_sent():
    async with running_console() as (app, pilot):
        panel = await select_method(app, pilot, "o://sqlite", "query")
        await set_field(pilot, panel, "params", "[1, 2")
        await pilot.pause()
        error = panel.query_one(f"#{panel._fields['params']['widget'].id}-error")
        assert "not JSON" in str(error.render())
        await pilot.press("f5")
        await pilot.pause()
        assert app.session.calls == []  # nothing was sent


async def test_raw_json_toggle_round_trips_the_parameters():
    async with running_console() as (app, pilot):
        panel = await select_method(app, pilot, "o://demo", "stream_items")
        await set_field(pilot, panel, "count", "7")
        await pilot.press("f2")
        await pilot.pause()
        raw = panel.query_one(".method-raw")
        assert json.loads(raw.text) == {"count": 7, "delayMs": 100}
        raw.text = '{"count": 4, "delayMs": 0}'
        await pilot.press("f2")
        await pilot.pause()
        assert panel._fields["count"]["widget"].value == "4"
        await pilot.press("f5")
        record = app.session.calls[-1]
        await wait_for(pilot, lambda: record.state.ended)
        assert record.count == 4


async def test_high_risk_methods_ask_before_running():
    async with running_console() as (app, pilot):
        await select_method(app, pilot, "o://demo", "stop")
        await pilot.press("f5")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("escape")
        await pilot.pause()
        assert app.session.calls == []


async def test_added_nodes_and_the_theme_are_remembered(tmp_path):
    config = tmp_path / "config.json"
    proc, multiaddr = start_node("--tools", "metrics")
    try:
        async with running_console(settings_path=config) as (app, pilot):
            await pilot.press("a")
            await pilot.pause()
            await pilot.press(*multiaddr)
            await pilot.press("enter")
            await wait_for(pilot, lambda: len(app.session.targets) == 2 and app.session.targets[1].state == "connected",
                           what="the added node")
            assert app.session.targets[1].tools[0].address == "o://metrics"
            await pilot.press("t")
            await pilot.pause()
            assert app.theme == "olane-light"
        saved = Settings.load(config)
        assert [t.multiaddr for t in saved.targets] == [multiaddr] and saved.theme == "olane-light"
        async with running_console(settings_path=config) as (app, pilot):
            assert app.theme == "olane-light"
            assert any(t.multiaddr == multiaddr and t.state == "connected" for t in app.session.targets)
    finally:
        stop_process(proc)


async def test_history_reruns_export_and_copy_as_cli(tmp_path, monkeypatch):
    monkeypatch.setenv("OLANE_DATA_DIR", str(tmp_path))
    async with running_console() as (app, pilot):
        record = start_call(app, "o://demo", "stream_items", {"count": 5, "delayMs": 0})
        await wait_for(pilot, lambda: record.state.ended)
        copied = []
        monkeypatch.setattr(app, "copy_to_clipboard", copied.append)
        await pilot.press("y")
        assert copied and " olane stream /ip4/127.0.0.1/tcp/" in copied[0]  # ./run olane, or a full path
        assert "stream_items --address o://demo --params" in copied[0] and '{"count":5,"delayMs":0}' in copied[0]
        await pilot.press("s")
        files = list((tmp_path / "exports").glob("*.jsonl"))
        lines = [json.loads(l) for l in files[0].read_text().splitlines()]
        assert lines[0]["olane"] == "recording" and lines[0]["method"] == "stream_items"  # docs/recordings.md
        assert [l["seq"] for l in lines[1:-1]] == [1, 2, 3, 4, 5]
        assert lines[-1]["end"] == "completed" and lines[-1]["chunks"] == 5
        await pilot.press("h")
        await pilot.pause()
        await pilot.press("enter")
        await wait_for(pilot, lambda: len(app.session.calls) == 2 and app.session.calls[1].state.ended)
        assert app.session.calls[1].count == 5 and app.session.calls[1].params == record.params


def test_trio_still_runs_after_the_console_exits():
    # the console's guest run must be fully gone; a later trio.run in this thread works
    assert trio.run(trio.sleep, 0) is None


async def test_moving_up_pauses_keeps_the_chosen_chunk_in_view_and_end_follows_again():
    async with running_console() as (app, pilot):
        record = start_call(app, "o://demo", "stream_items", {"count": 100000, "delayMs": 1})
        await wait_for(pilot, lambda: record.count > 300, what="chunks")
        log = app.current_view.query_one(ChunkLog)
        log.focus()
        await pilot.press("up", "up", "up", "up", "up")
        await pilot.pause(0.3)
        chosen = log.cursor + 1  # receive numbers are 1-based
        assert not log.following
        assert any(line.split()[0] == str(chosen) for line in visible_text(log).splitlines() if line.strip())
        assert f"chunk #{chosen}" in str(app.current_view.query_one(".call-detail-body").render())
        await wait_for(pilot, lambda: log.new_below > 0, what="new chunks counted while paused")
        assert "paused" in str(app.current_view.query_one(".call-columns").render())
        await pilot.press("end")
        await pilot.pause(0.3)
        assert log.following and log.new_below == 0
        await pilot.press("x")
        await wait_for(pilot, lambda: record.state is State.CANCELLED)

        def newest_shown() -> int:
            return int(visible_text(log).strip().splitlines()[-1].split()[0])

        # following again: the tail is in view (once the next refresh has drawn it)
        await wait_for(pilot, lambda: newest_shown() == record.count, what="the newest chunk on screen")


async def test_a_node_that_cannot_list_methods_still_takes_a_typed_method():
    from node_runtime import ErrorCode, OlaneError, Request, Tool
    from console.core.session import ConsoleSession

    class PlainTypeScriptLike(Tool):
        address = "o://plain"

        async def _tool_handshake(self, request: Request):  # what plain TypeScript nodes answer
            raise OlaneError(ErrorCode.NOT_IMPLEMENTED, "Method not implemented")

        async def _tool_echo(self, request: Request, message: str = ""):
            return {"echo": message}

    async with running_console(session=ConsoleSession(embedded_tools=[PlainTypeScriptLike()])) as (app, pilot):
        tool = embedded_target(app).tool("o://plain")
        assert tool.methods == {} and "4003" in tool.listing_error
        assert app.session.errors == []  # 4003 is expected there, not an error to shout about
        tree = app.query_one(NodeTree)
        line = next(l for l in range(tree.last_line + 1)
                    if isinstance(tree.get_node_at_line(l).data, MethodRef)
                    and tree.get_node_at_line(l).data.method.typed_by_hand)
        tree.focus()
        tree.cursor_line = line
        await pilot.press("enter")
        await pilot.pause()
        name = app.query_one(f"#f{app.method_panel._generation}-method-name")
        name.focus()
        await pilot.press(*"echo")
        app.method_panel.query_one(".method-raw").text = '{"message": "typed"}'
        await pilot.press("f5")
        await wait_for(pilot, lambda: app.session.calls and app.session.calls[-1].state.ended)
        record = app.session.calls[-1]
        assert record.state is State.COMPLETED and record.final == {"echo": "typed"}


async def test_quitting_with_a_flat_out_stream_running_ends_cleanly():
    app = None
    async with running_console() as (app, pilot):
        record = start_call(app, "o://demo", "stream_items", {"count": 10**6, "delayMs": 0})
        await wait_for(pilot, lambda: record.count > 2000, what="a firehose")
        await pilot.press("q")  # asks once: a stream is running
        await wait_for(pilot, lambda: type(app.screen).__name__ == "QuitScreen", what="the question")
        await pilot.press("q")
    assert not app.bridge.running and app.bridge.crashed is None
    assert trio.run(trio.sleep, 0) is None  # the guest run is gone; trio works in this thread


async def test_filter_shows_only_matching_chunks_and_clears():
    async with running_console() as (app, pilot):
        record = start_call(app, "o://demo", "stream_items", {"count": 50, "delayMs": 0})
        await wait_for(pilot, lambda: record.state.ended)
        await pilot.pause(0.2)
        log = app.current_view.query_one(ChunkLog)
        await pilot.press("slash")
        await pilot.press(*"item 4", "enter")
        await pilot.pause(0.3)
        shown = [int(line.split()[0]) for line in visible_text(log).splitlines() if line.strip()]
        assert shown == [4] + list(range(40, 50))  # "Item 4" and "Item 40" .. "Item 49"
        assert "11 of 50" in str(app.current_view.query_one(".call-columns").render())
        log.focus()
        await pilot.press("up")
        assert record.chunk(log.cursor).data["id"] == 48  # the cursor walks matching chunks only
        await pilot.press("slash")
        await pilot.press("ctrl+a", "ctrl+k", "enter")  # empty: everything again
        await pilot.pause(0.3)
        assert log.filter_text is None and log._line_count() == 50


async def test_a_hung_node_turns_unreachable_and_comes_back_when_it_answers_again():
    from console.core.session import ConsoleSession

    proc, multiaddr = start_node("--tools", "demo")
    try:
        session = ConsoleSession(embedded=False, heartbeat=0.3, heartbeat_timeout=1.0)
        async with running_console(session=session, targets=[multiaddr]) as (app, pilot):
            target = app.session.targets[0]
            assert target.state == "connected"
            proc.send_signal(signal.SIGSTOP)  # hung: the connection stays open, nothing answers
            await wait_for(pilot, lambda: target.state == "unreachable", what="the hung node noticed")
            assert "ping" in target.error
            proc.send_signal(signal.SIGCONT)
            await wait_for(pilot, lambda: target.state == "connected", what="the node back")
    finally:
        proc.send_signal(signal.SIGCONT)
        stop_process(proc)
