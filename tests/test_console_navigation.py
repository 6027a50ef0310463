"""Finding one's way in the console and trusting what it says: jump-to, tabs that
name their node and stay in view, a footer that fits, ordering diagnostics that
say when they could not judge. Real embedded node over real libp2p, driven by Pilot."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from pathlib import Path

from textual.widgets import Tabs

from console.app import OlaneConsole, build_console

from console.core.config import Settings
from console.core.session import olane_program
from console.core.stream_store import NOKEY, State
from console.screens.dialogs import QuitScreen
from console.screens.jump import JumpScreen
from console.widgets.key_bar import KeyBar
from console.widgets.node_tree import MethodRef, NodeTree
from console_helpers import embedded_target, running_console, start_call, wait_for
from process_helpers import OLANE, olane

ROOT = Path(__file__).resolve().parent.parent


def noted(monkeypatch) -> list[str]:
    """What the console notifies from now on (the real notify still runs)."""
    notes: list[str] = []
    real = OlaneConsole.notify

    def notify(self, message, *args, **kwargs):
        notes.append(str(message))
        return real(self, message, *args, **kwargs)

    monkeypatch.setattr(OlaneConsole, "notify", notify)
    return notes


def visible(widget, within) -> bool:
    """The widget is drawn, whole, inside the region of `within`."""
    region = widget.region
    return bool(region.area) and within.region.contains_region(region)


async def test_ordering_by_a_path_the_chunks_lack_is_flagged_with_counts():
    async with running_console() as (app, pilot):
        record = start_call(app, "o://demo", "stream_items", {"count": 12, "delayMs": 0})
        await wait_for(pilot, lambda: record.state.ended, what="the stream")
        await pilot.pause(0.2)
        view = app.current_view
        assert "no gaps" in str(view.query_one(".call-findings").render())  # _sequence: all judged
        await pilot.press("o")
        await pilot.press(*"nope", "enter")
        await wait_for(pilot, lambda: "nope" in str(view.query_one(".call-findings").render()),
                       what="the findings to change")
        findings = str(view.query_one(".call-findings").render())
        assert "no gaps" not in findings
        assert "ordering not judged" in findings and "12 chunk(s) without nope" in findings
        assert all(c.flags & NOKEY for c in record.chunks())
        log = view.log
        lines = [strip.text for strip in log.render_lines(log.region.reset_offset)]
        assert sum("NOKEY" in line for line in lines) == 12
        await pilot.pause(0.2)
        assert "NOKEY" in app.export_screenshot()  # on the screen too, not only when rendered afresh
        # a path only some chunks carry as a whole number: those are judged, the rest counted
        await pilot.press("o")
        await pilot.press("ctrl+a", "ctrl+k", *"progress", "enter")
        await wait_for(pilot, lambda: "progress" in str(view.query_one(".call-findings").render()),
                       what="the findings to change")
        findings = str(view.query_one(".call-findings").render())
        assert "where progress is not a whole number" in findings and "no gaps" not in findings


async def test_jump_to_finds_stream_items_and_shows_it():
    async with running_console() as (app, pilot):
        await pilot.press("g")
        await wait_for(pilot, lambda: isinstance(app.screen, JumpScreen), what="the jump-to list")
        screen = app.screen
        await pilot.press(*"strmitems")  # fuzzy: letters in order are enough
        await pilot.pause(0.1)
        assert screen.matches and screen.matches[0].kind == "method"
        assert screen.matches[0].data.method.name == "stream_items"
        await pilot.press("enter")
        await wait_for(pilot, lambda: not isinstance(app.screen, JumpScreen), what="the list to close")
        await wait_for(pilot, lambda: app.method_panel.method is not None
                       and app.method_panel.method.name == "stream_items", what="the method shown")
        tree = app.query_one(NodeTree)
        assert isinstance(tree.cursor_node.data, MethodRef) and tree.cursor_node.data.method.name == "stream_items"
        # straight into its form (typing goes to its first field, as after Enter in the tree)
        await wait_for(pilot, lambda: app.focused is not None and app.method_panel in app.focused.ancestors
                       and app.focused.id != "run", what="the form's first field focused")
        title = str(app.method_panel.query_one(".method-title").render())
        assert "o://demo" in title and "stream_items" in title and "embedded node" in title
        # a built-in, folded away at first, is opened to be shown
        await pilot.press("escape", "colon")  # out of the form (keys there type), then jump
        await wait_for(pilot, lambda: isinstance(app.screen, JumpScreen))
        await pilot.press(*"sqlite ping", "enter")
        await wait_for(pilot, lambda: app.method_panel.method is not None and app.method_panel.method.name == "ping"
                       and app.method_panel.address == "o://sqlite", what="a built-in shown")
        assert tree.cursor_node.data.method.name == "ping"
        await wait_for(pilot, lambda: app.focused is app.method_panel.query_one("#run"), what="Run, for no fields")


async def test_with_12_tabs_the_active_one_is_visible_and_keys_switch_tabs():
    async with running_console(size=(100, 30)) as (app, pilot):
        records = [start_call(app, "o://demo", "get_items", {"count": 1}) for _ in range(12)]
        await wait_for(pilot, lambda: all(r.state.ended for r in records), timeout=60, what="12 answers")
        bar = app.call_tabs.query_one(Tabs)
        scroll = bar.query_one("#tabs-scroll")
        await wait_for(pilot, lambda: bar.active == "--content-tab-call-12", what="the newest tab active")
        await wait_for(pilot, lambda: visible(bar.active_tab, scroll), what="the active tab in view")
        assert "get_items #12 · embedded" in str(bar.active_tab.label)  # which node, in the tab
        app.action_focus_tree()
        await pilot.press("right_square_bracket")  # wraps to the first
        await wait_for(pilot, lambda: bar.active == "--content-tab-call-1")
        await wait_for(pilot, lambda: visible(bar.active_tab, scroll), what="tab 1 in view")
        for _ in range(5):
            await pilot.press("left_square_bracket")
        await wait_for(pilot, lambda: bar.active == "--content-tab-call-8")
        await wait_for(pilot, lambda: visible(bar.active_tab, scroll), what="tab 8 in view")
        await pilot.press("ctrl+pagedown")
        await wait_for(pilot, lambda: bar.active == "--content-tab-call-9")
        assert app.current_view.record is records[8]


async def test_the_footer_drops_keys_whole_when_narrow():
    async with running_console(size=(100, 30)) as (app, pilot):
        record = start_call(app, "o://demo", "stream_items", {"count": 10**6, "delayMs": 5})
        await wait_for(pilot, lambda: record.count > 3, what="chunks")
        await pilot.pause(0.2)
        keys = app.query_one(KeyBar)
        line = keys.render().plain
        assert len(line) <= 100 and line.rstrip().endswith("^p palette")
        assert {"run_method", "cancel_call", "help", "quit"} <= set(keys.shown)
        assert "more" in line  # some dropped, and it says so
        for action in keys.shown:  # every key shown is whole, with its description
            binding = next(b for b in app.BINDINGS if b.action == action)
            assert f" {binding.description}  " in line or f" {binding.description}   │" in line
        narrow = list(keys.shown)
        await pilot.resize_terminal(200, 40)
        await pilot.pause(0.2)
        keys.render()
        assert len(keys.shown) > len(narrow) and set(narrow) <= set(keys.shown)
        await pilot.press("x")
        await wait_for(pilot, lambda: record.state is State.CANCELLED)


async def test_quitting_with_a_running_stream_asks_once_and_a_setting_turns_it_off(tmp_path):
    config = tmp_path / "config.json"
    async with running_console(settings_path=config) as (app, pilot):
        target = embedded_target(app)
        record = start_call(app, "o://demo", "stream_items", {"count": 10**6, "delayMs": 5})
        await wait_for(pilot, lambda: record.count > 3, what="chunks")
        await pilot.press("q")
        await wait_for(pilot, lambda: isinstance(app.screen, QuitScreen), what="the question")
        await pilot.press("escape")  # stay
        await wait_for(pilot, lambda: not isinstance(app.screen, QuitScreen))
        assert app.is_running and not record.state.ended
        await pilot.press("q")
        await wait_for(pilot, lambda: isinstance(app.screen, QuitScreen), what="the question again")
        await pilot.press("a")  # quit, and never ask again
    assert record.state is State.CANCELLED
    assert Settings.load(config).confirm_quit is False
    async with running_console(settings_path=config) as (app, pilot):
        target = embedded_target(app)
        record = start_call(app, "o://demo", "stream_items", {"count": 10**6, "delayMs": 5})
        await wait_for(pilot, lambda: record.count > 3, what="chunks")
        await pilot.press("q")  # the setting: no question
    assert not app.is_running and record.state is State.CANCELLED


async def test_copied_command_runs_as_pasted_and_is_also_written_to_a_file(tmp_path, monkeypatch):
    monkeypatch.setenv("OLANE_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("TMUX", raising=False)
    notes = noted(monkeypatch)
    async with running_console() as (app, pilot):
        record = start_call(app, "o://demo", "stream_items", {"count": 4, "delayMs": 0})
        await wait_for(pilot, lambda: record.state.ended)
        copied = []
        monkeypatch.setattr(app, "copy_to_clipboard", copied.append)
        await pilot.press("y")
        command = copied[0]
        assert command.startswith("./run olane stream /ip4/127.0.0.1/tcp/")  # this clone's .venv runs the tests
        path = tmp_path / "copied-command.txt"
        assert path.read_text().strip() == command
        assert any(str(path) in note for note in notes)  # the notification says where
        # pasted into a shell in the project folder, it repeats the call (against this console's node)
        proc = await asyncio.create_subprocess_shell(command, cwd=ROOT, stdout=asyncio.subprocess.PIPE,
                                                     stderr=asyncio.subprocess.PIPE, start_new_session=True)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), 60)
        finally:  # a hung call must not outlive the test: the shell and its olane
            if proc.returncode is None:
                os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        assert proc.returncode == 0, err.decode()
        lines = [json.loads(line) for line in out.decode().splitlines()]
        assert [line["seq"] for line in lines[:-1]] == [1, 2, 3, 4] and lines[-1]["chunks"] == 4


def test_olane_program_is_run_from_a_clone_else_the_full_path(tmp_path):
    clone = tmp_path / "clone"
    (clone / ".venv" / "bin").mkdir(parents=True)
    (clone / "run").write_text("#!/bin/sh\n")
    (clone / "pyproject.toml").write_text("")
    assert olane_program(str(clone / ".venv" / "bin" / "python")) == ["./run", "olane"]
    elsewhere = tmp_path / "env" / "bin"
    elsewhere.mkdir(parents=True)
    (elsewhere / "olane").write_text("")
    assert olane_program(str(elsewhere / "python")) == [str(elsewhere / "olane")]


async def test_run_argument_opens_with_that_call_running_in_its_tab():
    built = build_console([], run=("o://demo", "stream_items", {"count": 7, "delayMs": 0}))
    async with running_console(app=built) as (app, pilot):
        await wait_for(pilot, lambda: app.session.calls and app.session.calls[0].state.ended, what="the --run call")
        record = app.session.calls[0]
        assert (record.address, record.method, record.params) == ("o://demo", "stream_items",
                                                                  {"count": 7, "delayMs": 0})
        assert record.state is State.COMPLETED and record.count == 7
        await wait_for(pilot, lambda: app.current_view is not None and app.current_view.record is record)
        panel = app.method_panel
        assert panel.method.name == "stream_items" and panel.values()[0] == {"count": 7, "delayMs": 0}


async def test_run_argument_for_an_address_no_node_serves_says_so(monkeypatch):
    notes = noted(monkeypatch)
    async with running_console(run=("o://nowhere", "stream_items", {})) as (app, pilot):
        await wait_for(pilot, lambda: any("no node here serves o://nowhere" in note for note in notes),
                       what="the notification")
        assert app.session.calls == []


def test_console_run_option_is_checked_before_the_console_opens():
    for args, problem in ((["--run", "stream_items"], "--run"), (["--run", "o://demo stream_items", "--params", "[1"], "not JSON"),
                          (["--params", "{}"], "goes with --run")):
        out = olane("console", *args)
        assert out.returncode == 2 and problem in out.stderr, out.stderr


async def test_tab_walks_the_form_field_by_field_to_run_with_no_hidden_stops():
    """Typing after each Tab lands in the next field; Tab after the last field is Run; Tab
    from the tree is the first field (the form's scroll box is no stop of its own, it
    showed no focus and swallowed what was typed next). Closing the call's tab drops it."""
    from console_helpers import select_method

    async with running_console() as (app, pilot):
        panel = await select_method(app, pilot, "o://demo", "stream_items")
        count, delay = panel._fields["count"]["widget"], panel._fields["delayMs"]["widget"]
        assert app.focused is count
        await pilot.press("3", "tab", "1", "0", "tab")  # a focused field's text is selected: typing replaces it
        assert app.focused is panel.query_one("#run")
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.session.calls and app.session.calls[-1].state.ended, what="the call")
        record = app.session.calls[-1]
        assert record.params == {"count": 3, "delayMs": 10} and record.held == 3
        await pilot.press("ctrl+w")  # closing its tab lets go of the call's data
        await wait_for(pilot, lambda: not app.views, what="the tab closed")
        assert app.session.calls == [] and record.held == 0 and record.count == 3
        app.node_tree.focus()
        await pilot.pause()
        await pilot.press("tab")
        assert app.focused is count
        await pilot.press("shift+tab")
        assert app.focused is app.node_tree
