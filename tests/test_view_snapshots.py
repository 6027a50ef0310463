"""How the views look (pytest-textual-snapshot; Textual is pinned exactly): table, fields,
chart and value tree, drawn from records filled on a fixed clock (their behaviour
against real streams is in tests/test_console_views.py). The app runs its embedded
node with a fixed seed, so the tree is stable.
Update baselines with `./run tests tests/test_view_snapshots.py --snapshot-update`.
"""
from __future__ import annotations

import math

from console.screens.value import ValueScreen
from test_console_snapshots import FixedClock, connected, open_record, snapshot_app

SIZE = (160, 45)


def metrics_sample(n: int) -> dict:
    cpu = round(35 + 30 * math.sin(n / 6) + (n % 5), 1)
    memory = round(40 + n * 0.25, 1)
    return {"sample": n, "timestamp": f"2026-12-01T20:00:{n % 60:02d}.000Z", "time": 1764619200 + n,
            "cpu": {"percent": cpu, "perCpu": [cpu, cpu], "count": 2, "load1": 0.5},
            "memory": {"total": 8_000_000_000, "used": 3_200_000_000, "percent": memory, "swapPercent": 0.0},
            "missed": 0}


def fill_query(record, clock) -> None:
    record.add_chunk({"columns": ["id", "status", "total", "customer"]}, 1, 44)
    statuses = ["paid", "shipped", "delivered", "pending", "cancelled"]
    for b in range(4):
        clock.t += 0.02
        rows = [[i + 1, statuses[i % 5], round((i * 7919) % 100000 / 100, 2), f"customer {(i * 37) % 500}"]
                for i in range(b * 250, b * 250 + 250)]
        record.add_chunk({"rows": rows, "offset": b * 250, "batch": b}, b + 2, 9000)
    clock.t += 0.01
    record.finish({"columns": ["id", "status", "total", "customer"], "rowCount": 1000, "batches": 4,
                   "changes": 0, "elapsedMs": 81.0}, 6, 5)


def fill_metrics(record, clock, count: int = 120) -> None:
    for n in range(1, count + 1):
        clock.t += 0.25
        record.add_chunk(metrics_sample(n), n, 520)


def test_table_view_sorted_by_total(snap_compare):
    async def run_before(pilot) -> None:
        await connected(pilot)
        clock = FixedClock()
        record = open_record(pilot.app, "query", {"sql": "SELECT id, status, total, customer FROM orders"}, clock)
        record.address = "o://sqlite"
        fill_query(record, clock)
        await pilot.pause(0.3)
        table = pilot.app.current_view.views.table
        table.focus()
        await pilot.press("right", "right", "S", "S", "down", "down")
        await pilot.pause(0.3)

    assert snap_compare(snapshot_app(), terminal_size=SIZE, run_before=run_before)


def test_fields_view_of_metrics(snap_compare):
    async def run_before(pilot) -> None:
        await connected(pilot)
        clock = FixedClock()
        record = open_record(pilot.app, "watch", {"intervalMs": 250}, clock)
        record.address = "o://metrics"
        fill_metrics(record, clock, 60)
        await pilot.pause(0.2)
        views = pilot.app.current_view.views
        views.show("fields", remember=False)
        views.set_paths(["sample", "cpu.percent", "memory.percent", "cpu.load1", "timestamp"])
        views.focus_target.focus()  # as `v` leaves it (the footer shows the focused view's keys)
        await pilot.pause(0.3)

    assert snap_compare(snapshot_app(), terminal_size=SIZE, run_before=run_before)


def test_chart_view_of_cpu_and_memory(snap_compare):
    async def run_before(pilot) -> None:
        await connected(pilot)
        clock = FixedClock()
        record = open_record(pilot.app, "watch", {"intervalMs": 250}, clock)
        record.address = "o://metrics"
        fill_metrics(record, clock)
        await pilot.pause(0.2)
        views = pilot.app.current_view.views
        views.show("chart", remember=False)
        views.focus_target.focus()
        await pilot.pause(0.5)

    assert snap_compare(snapshot_app(), terminal_size=SIZE, run_before=run_before)


def test_value_tree_of_a_chunk_with_bytes(snap_compare):
    async def run_before(pilot) -> None:
        await connected(pilot)
        chunk = {"offset": 0, "data": b"chunks cross the network\none frame after another\nthe hash still matches\n",
                 "raw": bytes(range(0, 40)), "meta": {"path": "notes/haiku.txt", "sizes": [72, 40], "ok": True,
                                                      "none": None}}
        pilot.app.push_screen(ValueScreen(chunk, "read #1 › chunk #1 (309 bytes)"))
        await pilot.pause(0.3)

    assert snap_compare(snapshot_app(), terminal_size=SIZE, run_before=run_before)
