"""Views of a stream, as an operator uses them: the real console on its embedded node
(real libp2p on 127.0.0.1), driven by Pilot, every wait under a deadline."""
from __future__ import annotations

import json

from console.core.config import Settings
from console.screens.value import ValueScreen
from console.widgets.views.chart_view import ChartView
from console.widgets.views.table_view import TableView
from console.widgets.views.value_tree import ValueTree
from console_helpers import running_console, select_method, set_field, start_call, visible_lines, wait_for


async def run_call(app, pilot, address: str, method: str, params: dict):
    record = start_call(app, address, method, params)
    await wait_for(pilot, lambda: record.state.ended, timeout=30, what=f"{method} to end")
    await pilot.pause(0.3)
    return record


async def test_a_query_opens_in_the_table_view_with_its_rows_and_sorts_by_total():
    async with running_console() as (app, pilot):
        panel = await select_method(app, pilot, "o://sqlite", "query")
        await set_field(pilot, panel, "sql", "SELECT id, status, total FROM orders LIMIT 3000")
        await pilot.press("f5")
        record = app.session.calls[-1]
        await wait_for(pilot, lambda: record.state.ended, timeout=30, what="the query to end")
        await pilot.pause(0.3)
        assert record.count == 7  # {columns}, then 6 batches of 500
        view = app.current_view
        assert view.views.name == "table"  # the chunks carry rows: the table, unasked
        table = app.query_one(TableView)
        assert table.display and app.focused is table
        model = table.model
        assert model.columns == ["id", "status", "total"] and model.row_count == 3000
        header = visible_lines(table)[0].split()
        assert header == ["#", "id", "status", "total"]  # "#": the row as it arrived
        assert "3,000 rows × 3 columns" in str(view.query_one(".call-columns").render())
        # sort by total: move to the column, S (ascending), S again (descending)
        await pilot.press("right", "right", "S")
        totals = [model.record(i)["total"] for i in range(3000)]
        assert totals == sorted(totals)
        await pilot.press("S")
        totals = [model.record(i)["total"] for i in range(3000)]
        assert totals == sorted(totals, reverse=True)
        first = visible_lines(table)[1].split()
        assert float(first[-1]) == totals[0]  # the top line shows the largest total
        # a big table sorts in slices and the keys keep working meanwhile (here 3,000 rows
        # made to sort slowly: 500 rows a step, the loop let run 30 ms after each)
        table.sort_in_place_rows, table.sort_step_rows, table.sort_slice_seconds, table.sort_pause = 0, 500, 0, 0.03
        await pilot.press("left", "S")  # by status
        assert model.sorting is not None and model.sorting[0] == 1
        await wait_for(pilot, lambda: "sorting by status ↑" in str(view.query_one(".call-columns").render()),
                       what="the header saying so")
        await pilot.press("right")  # answered while sorting
        assert table.column == 2 and model.sorting is not None
        await wait_for(pilot, lambda: model.sorting is None, timeout=20, what="the sort to end")
        statuses = [model.record(i)["status"] for i in range(3000)]
        assert statuses == sorted(statuses) and model.sort_column == 1 and table.cursor == 0
        await pilot.press("S", "S")  # total ↑, then ↓ (the second S cancels the first and goes on)
        await wait_for(pilot, lambda: model.sorting is None and model.descending, timeout=20, what="the sort")
        await pilot.pause(0.1)
        # Enter shows the row whole
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ValueScreen), what="the row")
        tree = app.screen.query_one(ValueTree)
        assert f"total: {totals[0]}" in tree.text_lines()
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, ValueScreen), what="the row to close")


async def test_metrics_watch_charts_cpu_without_typing_a_path():
    async with running_console() as (app, pilot):
        record = start_call(app, "o://metrics", "watch", {"intervalMs": 100, "count": 0})
        await wait_for(pilot, lambda: record.count >= 3, timeout=20, what="three samples")
        view = app.current_view
        assert view.views.name == "log"
        while view.views.name != "chart":
            await pilot.press("v")
        chart = app.query_one(ChartView)
        assert chart.display
        assert chart.model.paths == ["cpu.percent", "memory.percent"]
        await wait_for(pilot, lambda: chart.model.series[0].count >= 3, what="cpu values charted")
        cpu = chart.model.series[0]
        assert 0.0 <= cpu.low <= cpu.last <= cpu.high <= 100.0
        await wait_for(pilot, lambda: "cpu.percent" in chart.render().plain, what="the chart drawn")
        text = chart.render().plain
        assert "last" in text and "min" in text and "max" in text
        assert any(block in text for block in "▁▂▃▄▅▆▇█")
        await pilot.press("x")  # cancel the endless stream
        await wait_for(pilot, lambda: record.state.ended, what="the cancel")
        # the choice is remembered for o://metrics watch: the next one opens charting cpu
        # (paths taken from its first chunk, which comes after the view opened)
        assert Settings.load().views["o://metrics watch"] == "chart"
        again = start_call(app, "o://metrics", "watch", {"intervalMs": 100, "count": 3})
        await wait_for(pilot, lambda: again.state.ended, timeout=20, what="the second watch")
        await pilot.pause(0.2)
        view = app.current_view
        assert view.record is again and view.views.name == "chart"
        assert view.views.chart.model.paths == ["cpu.percent", "memory.percent"]


async def test_files_read_of_a_text_file_shows_its_text():
    async with running_console() as (app, pilot):
        record = await run_call(app, pilot, "o://files", "read", {"path": "notes/haiku.txt"})
        data = record.data_at(0)["data"]
        text = data.decode() if isinstance(data, bytes) else data
        view = app.current_view
        assert view.views.name == "log"
        line = "".join(visible_lines(view.log))
        assert "chunks cross the network" in line and "bytes>" not in line
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ValueScreen), what="the chunk whole")
        lines = app.screen.query_one(ValueTree).text_lines()
        assert "data: <72 bytes, UTF-8 text>" in lines
        for expected in text.splitlines():
            assert expected in lines
        tree = app.screen.query_one(ValueTree)
        tree.cursor_line = lines.index("data: <72 bytes, UTF-8 text>")
        await pilot.press("c")  # copy the value under the cursor: the text itself
        assert app.clipboard == text


async def test_a_unary_list_of_records_shows_as_a_table_and_v_shows_its_tree():
    async with running_console() as (app, pilot):
        await run_call(app, pilot, "o://sqlite", "tables", {})
        view = app.current_view
        shown = view.views.value
        assert shown.table_view is not None
        names = {shown.table_view.model.record(i)["name"] for i in range(shown.table_view.model.row_count)}
        assert {"orders", "customers", "products"} <= names
        assert "readOnly: true" in shown.caption()
        await pilot.press("v")
        await wait_for(pilot, lambda: view.views.value is not None and view.views.value.value_tree is not None,
                       what="the tree")
        await pilot.pause(0.2)
        lines = view.views.value.value_tree.text_lines()
        assert "readOnly: true" in lines and any(line.startswith("tables: [") for line in lines)


async def test_fields_view_shows_the_chosen_paths_as_columns_remembered_per_method():
    async with running_console() as (app, pilot):
        await run_call(app, pilot, "o://demo", "stream_items", {"count": 5, "delayMs": 0})
        view = app.current_view
        await pilot.press("v")
        assert view.views.name == "fields"
        log = view.log
        assert log.fields == ["id", "name", "data", "timestamp", "progress"]  # the first chunk's keys
        await pilot.press("p")
        await pilot.pause(0.2)
        screen = app.screen
        from textual.widgets import Input, SelectionList

        selection = screen.query_one(SelectionList)
        selection.deselect_all()
        selection.select("name")
        screen.query_one(Input).value = "progress"
        screen.action_done()
        await pilot.pause(0.3)
        assert log.fields == ["name", "progress"]
        header = str(view.query_one(".call-columns").render())
        assert "name" in header and "progress" in header and "data" not in header.split("flag")[1]
        lines = visible_lines(log)
        assert "Item 5" in lines[-1] or any("Item 5" in line for line in lines)
        saved = Settings.load()
        assert saved.fields["o://demo stream_items"] == ["name", "progress"]
        assert saved.views["o://demo stream_items"] == "fields"
        # a new call of the same method opens in the same view with the same columns
        await run_call(app, pilot, "o://demo", "stream_items", {"count": 3, "delayMs": 0})
        again = app.current_view
        assert again is not view and again.views.name == "fields" and again.log.fields == ["name", "progress"]
        # more fields than the pane is wide: → and ← shift them a field at a time, the columns before stay
        log = again.log
        log.set_fields(["timestamp", "name", "data", "timestamp", "id", "progress"])
        log.focus()
        await pilot.pause(0.3)
        header = str(again.query_one(".call-columns").render())
        first = visible_lines(log)[0]
        assert header.rstrip().endswith("▶") and "◀" not in header and first.split()[0] == "1"
        assert len(first.rstrip()) <= log.size.width and "progress" not in header  # cut at the pane's edge
        await pilot.press("right", "right", "right")
        await pilot.pause(0.3)
        header = str(again.query_one(".call-columns").render())
        assert "◀" in header and "progress" in header and visible_lines(log)[0].split()[0] == "1"
        assert "Item 1" in visible_lines(log)[0] and log.data_x > 0  # shifted no further than the last field needs
        await pilot.press("left", "left", "left")
        await pilot.pause(0.3)
        assert log.data_x == 0 and "◀" not in str(again.query_one(".call-columns").render())


async def test_maximize_fills_the_screen_with_the_pane_and_restores_it():
    async with running_console() as (app, pilot):
        await run_call(app, pilot, "o://demo", "stream_items", {"count": 3, "delayMs": 0})
        width = app.call_tabs.size.width
        await pilot.press("z")
        await pilot.pause(0.2)
        assert app.screen.maximized is app.call_tabs
        assert app.call_tabs.size.width > width
        await pilot.press("z")
        await pilot.pause(0.2)
        assert app.screen.maximized is None and app.call_tabs.size.width == width
