"""Recordings, comparisons, lasting history, saved calls and named targets in the
real console (embedded node over real libp2p, driven by Pilot), and `olane run`
as a real process."""
from __future__ import annotations

import json

import pytest

from console.core import collections as C
from console.core.config import Settings, data_dir
from console.core.history import FILE_NAME, History
from console.core.recording import read_recording
from console.core.session import ConsoleSession
from console.core.stream_store import State
from console.screens.history import HistoryScreen
from console.screens.recordings import DiffScreen
from console.widgets.call_view import CallView
from console.widgets.chunk_log import ChunkLog
from console.widgets.method_panel import MethodPanel
from console.widgets.replay_pane import ReplayPane
from console_helpers import embedded_target, running_console, select_method, start_call, visible_text, wait_for
from process_helpers import olane, start_node, stop_process


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A failing and a good run of the demo tool, recorded by `olane stream --record`."""
    folder = tmp_path_factory.mktemp("console-recordings")
    proc, ma = start_node("--tools", "demo", "--seed", "console-recordings-node")
    try:
        good, bad = folder / "good.jsonl", folder / "bad.jsonl"
        g = olane("stream", ma, "stream_items", "--params", '{"count": 40, "delayMs": 5}', "--record", str(good))
        b = olane("stream", ma, "stream_with_error", "--params", '{"failAt": 12, "count": 40, "delayMs": 5}',
                  "--record", str(bad))
        assert g.returncode == 0 and b.returncode == 1, (g.stderr, b.stderr)
        yield ma, good, bad
    finally:
        stop_process(proc)


async def test_console_opens_a_recording_and_replays_its_chunks(recorded):
    _, good, bad = recorded
    async with running_console(open_files=[str(bad)]) as (app, pilot):
        pane = await wait_for(pilot, lambda: next(iter(app.replays.values()), None), what="the replay tab")
        record = pane.replayer.record
        await wait_for(pilot, lambda: record.state.ended, what="the replay to end")
        await pilot.pause(0.2)
        assert record.state is State.FAILED and record.count == 12
        assert record.error.code == 4001 and "Intentional error at item 12" in record.error.message
        view = app.current_view
        assert view.record is record
        log_text = visible_text(view.query_one(ChunkLog))
        assert "Item 11 processed" in log_text or "Item 0 processed" in log_text
        assert "4001 UNKNOWN" in str(view.query_one(".call-end").render())
        assert "replay of bad.jsonl" in str(pane.query_one(".replay-bar").render())
        # (ended, so not playing) seek back: a new record is shown, fed again up to there
        first = pane.replayer.generation
        assert not pane.replayer.playing
        r = pane.replayer
        await pilot.press("left_square_bracket")
        assert r.generation > first and not r.playing
        assert r.record.count == sum(1 for f in r.recording.frames if f.t <= r.position)
        for _ in range(10):  # 10 % each: back to the start
            await pilot.press("left_square_bracket")
        assert r.position == 0 and r.record.count == 0 and not r.playing
        await wait_for(pilot, lambda: app.current_view.record is r.record, what="the new record on screen")
        assert app.current_view is not view and app.current_view.record.state is State.RUNNING
        await pilot.press("9")  # to the end
        await wait_for(pilot, lambda: app.current_view.record.state is State.FAILED, what="the end again")
        assert app.current_view.record.count == 12
        # the in-app action opens another one
        app.open_recording(str(good))
        await wait_for(pilot, lambda: len(app.replays) == 2)
        newest = app.replays[app.call_tabs.active]
        newest.replayer.set_speed(64)
        await wait_for(pilot, lambda: newest.replayer.record.state is State.COMPLETED, what="the good replay")
        assert newest.replayer.record.count == 40


async def test_compare_a_failed_recording_with_a_live_call_lists_and_jumps(recorded, tmp_path):
    _, good, bad = recorded
    async with running_console(open_files=[str(bad)]) as (app, pilot):
        replay_id = app.call_tabs.active
        record = start_call(app, "o://demo", "stream_with_error", {"failAt": -1, "count": 40, "delayMs": 0})
        await wait_for(pilot, lambda: record.state.ended, what="the live call")
        live_id = app.call_tabs.active
        assert live_id != replay_id
        await pilot.press("d")
        screen = await wait_for(pilot, lambda: isinstance(app.screen, DiffScreen) and app.screen, what="the diff")
        await pilot.pause(0.2)
        result = screen.result
        assert not result.same
        assert [r.key for r in result.missing] == list(range(13, 41))  # live A has 40, the recording B 12
        assert not result.extra and not result.changed and not result.reordered
        assert any("end: A completed" in d for d in result.end_differences)
        summary = str(screen.query_one(".diff-summary").render())
        assert "difference" in summary and "end differs" in summary
        # the first difference: seq 13, side by side (A has it, B does not)
        table = screen.query_one("#differences")
        assert screen._rows[0][0] == "missing" and "seq 13" in screen._rows[0][1]
        table.move_cursor(row=0)
        await pilot.pause(0.1)
        assert "seq 13" in str(screen.query_one("#a-body").render())
        assert "(not in this one)" in str(screen.query_one("#b-body").render())
        await pilot.press("enter")
        await wait_for(pilot, lambda: not isinstance(app.screen, DiffScreen), what="the jump")
        await pilot.pause(0.2)
        assert app.call_tabs.active == live_id
        log = app.current_view.query_one(ChunkLog)
        assert log.cursor == 12 and not log.following  # chunk #13, selected
        assert app.focused is log


async def test_export_writes_a_recording_that_replays(tmp_path):
    async with running_console() as (app, pilot):
        target = embedded_target(app)
        record = start_call(app, "o://demo", "stream_items", {"count": 7, "delayMs": 0})
        await wait_for(pilot, lambda: record.state.ended)
        await pilot.press("s")
        files = list((data_dir() / "exports").glob("*.jsonl"))
        assert len(files) == 1
    rec = read_recording(files[0])
    assert rec.header.method == "stream_items" and rec.header.params == {"count": 7, "delayMs": 0}
    assert rec.header.peer == target.peer_id and rec.header.codec in ("json", "msgpack")
    assert [f.seq for f in rec.frames] == list(range(1, 8)) and rec.end.state == "completed"
    out = olane("replay", "--instant", str(files[0]))
    assert out.returncode == 0
    assert [json.loads(l)["seq"] for l in out.stdout.splitlines()[:-1]] == list(range(1, 8))


async def test_history_survives_a_restart_and_loads_into_the_form():
    async with running_console(seed="history-node") as (app, pilot):
        record = start_call(app, "o://demo", "stream_items", {"count": 3, "delayMs": 0})
        await wait_for(pilot, lambda: record.state.ended)
        await wait_for(pilot, lambda: History(data_dir() / FILE_NAME).load(), what="the history line")
    entries = History(data_dir() / FILE_NAME).load()
    assert len(entries) == 1 and entries[0].method == "stream_items" and entries[0].outcome == "completed"
    assert entries[0].chunks == 3 and entries[0].params == {"count": 3, "delayMs": 0}
    assert entries[0].embedded
    # a new console (another embedded node: new port, new peer id): the call is there, and loads
    # into this run's embedded node
    async with running_console() as (app, pilot):
        await pilot.press("h")
        screen = await wait_for(pilot, lambda: isinstance(app.screen, HistoryScreen) and app.screen)
        assert len(screen._shown) == 1
        await pilot.press("slash")
        await pilot.press(*"nothing-like-it")
        assert screen._shown == []
        screen.query_one("#search").value = "stream_items"
        await pilot.pause(0.1)
        assert len(screen._shown) == 1
        screen.query_one("DataTable").focus()
        await pilot.press("l")
        panel = app.query_one(MethodPanel)
        await wait_for(pilot, lambda: panel.method is not None and panel.method.name == "stream_items")
        await wait_for(pilot, lambda: "count" in panel._fields and panel._fields["count"]["widget"].value == "3")
        assert panel.values()[0] == {"count": 3, "delayMs": 0}
        await pilot.press("f5")
        await wait_for(pilot, lambda: app.session.calls and app.session.calls[-1].state.ended)
        assert app.session.calls[-1].count == 3


async def test_record_every_call_keeps_recordings_within_the_cap():
    async with running_console() as (app, pilot):
        await pilot.press("R")
        assert app.settings.record_calls and Settings.load(app.settings_path).record_calls
        record = start_call(app, "o://demo", "stream_items", {"count": 4, "delayMs": 0})
        await wait_for(pilot, lambda: record.state.ended and record.recording_path is not None)
        await wait_for(pilot, lambda: History(data_dir() / FILE_NAME).load(), what="the history line")
        entry = History(data_dir() / FILE_NAME).load()[-1]
        assert entry.recording == str(record.recording_path)
        assert len(read_recording(entry.recording).frames) == 4
        # the cap: a tiny one leaves only the newest recording
        app.session.record_cap_bytes = 1
        second = start_call(app, "o://demo", "stream_items", {"count": 4, "delayMs": 0})
        await wait_for(pilot, lambda: second.state.ended and second.recording_path is not None)
        await wait_for(pilot, lambda: not record.recording_path.exists(), what="pruning")
        assert list((data_dir() / "recordings").glob("*.jsonl")) == [second.recording_path]


async def test_save_a_call_from_the_form_then_run_it_from_the_palette_list():
    async with running_console() as (app, pilot):
        panel = await select_method(app, pilot, "o://demo", "stream_items")
        panel._fields["count"]["widget"].value = "6"
        await pilot.pause()
        panel._fields["count"]["widget"].focus()
        await pilot.press("ctrl+s")
        await pilot.pause()
        app.screen.query_one("Input").value = "demo/six"
        await pilot.press("enter")
        path = C.collections_dir() / "demo" / "six.olane.json"
        await wait_for(pilot, path.exists, what="the saved file")
        # only what differs from the defaults, keys in a fixed order; the embedded node is "this node"
        assert path.read_text() == json.dumps({"address": "o://demo", "method": "stream_items",
                                               "params": {"count": 6}}, indent=2) + "\n"
        assert "Run saved call demo/six" in [c.title for c in app.saved_call_commands()]
        app.run_saved(C.load("demo/six"))
        record = app.session.calls[-1]
        await wait_for(pilot, lambda: record.state.ended)
        assert record.count == 6 and record.params == {"count": 6}


def test_a_saved_call_runs_with_olane_run_on_a_named_target(tmp_path):
    proc, ma = start_node("--tools", "demo", "--seed", "olane-run-node")
    try:
        settings = Settings()
        settings.remember_target(ma, None, "lab")
        settings.save()
        C.save(C.SavedCall("smoke/items", "stream_items", target="lab", address="o://demo",
                           params={"count": 4, "delayMs": 0}))
        C.save(C.SavedCall("smoke/ping", "ping", target="lab", stream=False))
        out = olane("run", "smoke/items", "--record", str(tmp_path / "run.jsonl"))
        assert out.returncode == 0, out.stderr
        lines = [json.loads(l) for l in out.stdout.splitlines()]
        assert [l["seq"] for l in lines[:-1]] == [1, 2, 3, 4] and lines[-1]["chunks"] == 4
        assert len(read_recording(tmp_path / "run.jsonl").frames) == 4
        out = olane("run", "items", "--params", '{"count": 2}')  # bare name; params merged over
        assert out.returncode == 0 and json.loads(out.stdout.splitlines()[-1])["chunks"] == 2
        out = olane("run", "ping")
        assert out.returncode == 0 and json.loads(out.stdout) == {"message": "Pong!"}
        assert olane("call", "lab", "ping").returncode == 0  # a named target where a multiaddr goes
        missing = olane("run", "nope")
        assert missing.returncode == 2 and "no saved call" in missing.stderr
        listed = olane("targets")
        assert listed.stdout.startswith(f"lab\t{ma}")
    finally:
        stop_process(proc)


async def test_named_targets_show_instead_of_peer_ids(tmp_path):
    proc, ma = start_node("--tools", "demo", "--seed", "named-node")
    try:
        settings = Settings()
        settings.remember_target(ma, None, "lab")
        settings.save()
        async with running_console(embedded=False) as (app, pilot):
            target = app.session.targets[0]
            assert target.name == "lab" and target.label == "lab"
            tree_text = visible_text(app.query_one("NodeTree"))
            assert "lab" in tree_text and "12D3KooW" not in tree_text
    finally:
        stop_process(proc)
