"""The view models (console/core/views) over real StreamRecords, without a screen."""
from __future__ import annotations

import base64
import math

from console.core.config import Settings, method_key
from console.core.stream_store import StreamRecord
from console.core.views import ValueSource
from console.core.views.cells import base64_bytes, cell_text, hex_dump
from console.core.views.paths import suggest_chart, suggest_fields
from console.core.views.rows import TableModel, carries_rows
from console.core.views.series import ChartModel
from console.core.views.values import describe_bytes, records_of, summary


def sqlite_stream(rows: int, batch: int, max_chunks: int = 100_000) -> StreamRecord:
    """What the sqlite tool sends for `SELECT id, status, total ...`."""
    record = StreamRecord(title="query", max_chunks=max_chunks)
    record.add_chunk({"columns": ["id", "status", "total"]}, 1, 40)
    for n, offset in enumerate(range(0, rows, batch)):
        record.add_chunk({"rows": [[i + 1, ["paid", "open", "shipped"][i % 3], round((i * 7919) % 1000 / 10, 2)]
                                   for i in range(offset, min(rows, offset + batch))],
                          "offset": offset, "batch": n}, n + 2, 100)
    return record


def test_sqlite_batches_become_one_row_per_record_under_their_columns():
    record = sqlite_stream(3000, 500)
    model = TableModel(record)
    model.sync()
    assert model.columns == ["id", "status", "total"]
    assert model.row_count == 3000
    assert model.record(0) == {"id": 1, "status": "paid", "total": 0.0}
    assert model.record(2999)["id"] == 3000
    assert model.chunk_of(2999) == 6  # 0-based: the sixth batch, after the columns chunk
    assert model.numeric(0) and not model.numeric(1) and model.numeric(2)
    assert model.widths == [4, 8, 7]  # the widest value or the name with room for a sort arrow
    assert carries_rows(record.data_at(0)) and carries_rows(record.data_at(1))


def test_new_chunks_are_taken_in_incrementally():
    record = sqlite_stream(1000, 500)
    model = TableModel(record)
    model.sync()
    assert model.row_count == 1000
    version = model.version
    assert not model.sync() and model.version == version  # nothing new: nothing done
    record.add_chunk({"rows": [[1001, "late", 1.5]], "offset": 1000, "batch": 2}, 4, 20)
    assert model.sync()
    assert model.row_count == 1001 and model.record(1000) == {"id": 1001, "status": "late", "total": 1.5}


def test_flat_objects_are_rows_and_new_keys_add_columns():
    record = StreamRecord(title="items")
    for i in range(4):
        record.add_chunk({"id": i, "name": f"Item {i}", **({"extra": True} if i == 2 else {})}, i + 1, 50)
    model = TableModel(record)
    model.sync()
    assert model.columns == ["id", "name", "extra"]
    assert model.row_count == 4
    assert model.cells(model.row(2)) == [2, "Item 2", True]
    assert model.cells(model.row(3)) == [3, "Item 3", None]
    assert not model.looks_like_table  # one object a chunk: the log stays the default
    assert not carries_rows(record.data_at(0))


def test_arrays_of_objects_expand_into_rows():
    record = StreamRecord(title="stream_query")
    record.add_chunk({"records": [{"id": 1, "v": "a"}, {"id": 2, "v": "b"}], "offset": 0, "hasMore": True}, 1, 80)
    record.add_chunk([{"id": 3, "v": "c"}, {"id": 4, "w": 9}], 2, 60)
    model = TableModel(record)
    model.sync()
    assert model.row_count == 4
    assert model.columns == ["id", "v", "w"]
    assert [model.record(i)["id"] for i in range(4)] == [1, 2, 3, 4]
    assert model.looks_like_table


def test_sorting_by_a_column_and_rows_that_arrive_after_it():
    record = sqlite_stream(3000, 500)
    model = TableModel(record)
    model.sync()
    model.sort(2, descending=True)
    totals = [model.record(i)["total"] for i in range(3000)]
    assert totals == sorted(totals, reverse=True)
    model.sort(1)
    statuses = [model.record(i)["status"] for i in range(3000)]
    assert statuses == sorted(statuses)
    record.add_chunk({"rows": [[3001, "aaa", 0.5]], "offset": 3000, "batch": 6}, 8, 20)
    model.sync()
    assert model.unsorted_below == 1 and model.record(3000)["id"] == 3001  # below the sorted rows
    model.sort(1)
    assert model.record(0)["status"] == "aaa" and model.unsorted_below == 0
    model.sort(None)
    assert model.record(0)["id"] == 1


def test_sorting_a_column_with_missing_values_puts_them_last():
    record = StreamRecord(title="x")
    for value in [3, None, 1, "b", 2]:
        record.add_chunk({"k": value} if value is not None else {"other": 1}, 1, 10)
    model = TableModel(record)
    model.sync()
    model.sort(0)
    assert [model.record(i).get("k") for i in range(5)] == [1, 2, 3, "b", None]


def test_rows_leave_the_table_with_their_chunks():
    record = StreamRecord(title="query", max_chunks=5)  # the ring holds the newest 5 chunks
    record.add_chunk({"columns": ["id"]}, 1, 10)
    model = TableModel(record)
    model.sync()  # the refresh saw the columns before they left the ring
    for n in range(20):
        record.add_chunk({"rows": [[i + 1] for i in range(n * 100, n * 100 + 100)], "offset": n * 100}, n + 2, 100)
        if n == 3:
            model.sync()
    model.sync()
    assert model.row_count == 500
    assert model.record(0)["id"] == 1501 and model.record(499)["id"] == 2000 and model.first_row > 0


def test_a_million_rows_are_indexed_per_chunk_not_per_row():
    record = sqlite_stream(1_000_000, 500)
    model = TableModel(record)
    model.sync()
    assert model.row_count == 1_000_000
    assert len(model._chunk) == 2000  # one entry per batch
    assert model.record(999_999)["id"] == 1_000_000


def test_a_unary_value_is_a_one_chunk_source():
    tables = {"database": "sample.db", "readOnly": True,
              "tables": [{"name": "orders", "rowCount": 120000}, {"name": "products", "rowCount": 50}]}
    assert records_of(tables) == tables["tables"]
    model = TableModel(ValueSource(tables))
    model.sync()
    assert model.columns == ["name", "rowCount"] and model.row_count == 2
    assert records_of({"path": ".", "entries": [{"name": "a"}], "truncated": False}) == [{"name": "a"}]
    assert records_of({"a": 1}) is None and records_of([1, 2]) is None


def test_chart_series_keep_min_max_last_over_every_chunk_and_stay_bounded():
    record = StreamRecord(title="watch")
    times = iter(range(10_000))
    record.clock = lambda: 1000.0 + next(times, 10_000) * 0.01
    record.started = 1000.0
    for i in range(5000):
        record.add_chunk({"cpu": {"percent": float(i % 100)}, "memory": {"percent": 50}}, i + 1, 100)
    record.add_chunk({"cpu": {}}, 5001, 10)  # no number there
    model = ChartModel(record, ["cpu.percent", "memory.percent"], times=record.time_at, max_points=1000)
    while model.sync():
        pass
    cpu, memory = model.series
    assert (cpu.low, cpu.high, cpu.last, cpu.count, cpu.missing) == (0.0, 99.0, 99.0, 5000, 1)
    assert memory.low == memory.high == 50.0
    assert cpu.kept <= 1000 and model.stride > 1  # thinned, counters still whole
    columns = model.buckets(cpu, 40)
    assert len(columns) == 40 and all(c is None or 0 <= c <= 99 for c in columns)
    assert model.buckets(cpu, 40, by_time=False)  # over the receive index too


def test_chart_of_a_path_added_later_reads_the_chunks_held():
    record = StreamRecord(title="p")
    for i in range(10):
        record.add_chunk({"progress": i / 10}, i + 1, 10)
    model = ChartModel(record, times=record.time_at)
    model.add("progress")
    assert model.series[0].count == 10 and math.isclose(model.series[0].last, 0.9)


def test_suggested_paths_from_the_first_chunk():
    sample = {"sample": 1, "timestamp": "2026-12-01T20:00:00Z", "time": 1.5,
              "cpu": {"percent": 12.5, "perCpu": [10, 15], "count": 2, "load1": 0.4},
              "memory": {"total": 8_000_000_000, "used": 1, "percent": 40.1}, "missed": 0}
    assert suggest_chart(sample) == ["cpu.percent", "memory.percent"]
    fields = suggest_fields(sample)
    assert fields[:3] == ["sample", "timestamp", "time"] and "cpu.percent" in fields
    assert suggest_chart({"id": 1, "name": "x", "progress": 0.5}) == ["progress"]


def test_bytes_show_as_text_when_utf8_else_as_a_hex_dump():
    assert describe_bytes("héllo\nworld".encode()) == ("text", "héllo\nworld")
    assert describe_bytes(bytes(range(8)))[0] == "hex"  # valid UTF-8, but control characters
    kind, dump = describe_bytes(bytes([0, 255, 16, 65]))
    assert kind == "hex" and dump.startswith("00000000  00 ff 10 41") and dump.endswith("...A")
    assert summary(b"abc") == "<3 bytes, UTF-8 text>"
    assert cell_text(b"a\nb") == "a⏎b" and cell_text(b"\xff") == "<1 bytes>"
    encoded = base64.b64encode(b"chunks cross the network\n").decode()
    assert base64_bytes(encoded) == b"chunks cross the network\n"
    assert base64_bytes("not base64!") is None and base64_bytes("abcd") is None  # too short to judge
    assert len(hex_dump(bytes(100), limit=32).splitlines()) == 3


def test_settings_remember_views_and_paths_per_method(tmp_path):
    path = tmp_path / "config.json"
    settings = Settings()
    key = method_key("o://metrics", "watch")
    assert settings.remember_view(key, "chart") and not settings.remember_view(key, "chart")
    settings.charts[key] = ["cpu.percent"]
    settings.fields[method_key("o://demo", "stream_items")] = ["id", "progress"]
    settings.save(path)
    again = Settings.load(path)
    assert again.views == {key: "chart"}
    assert again.charts == {key: ["cpu.percent"]}
    assert again.fields == {"o://demo stream_items": ["id", "progress"]}


def test_view_models_import_neither_textual_nor_rich():
    import subprocess
    import sys

    code = ("import sys; import console.core.views, console.core.views.rows, console.core.views.series, "
            "console.core.views.paths, console.core.views.values, console.core.views.cells; "
            "bad = [m for m in ('textual', 'rich') if m in sys.modules]; assert not bad, bad")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_a_sort_in_slices_orders_as_one_sort_does_and_keeps_ties_in_arrival_order():
    from console.core.views.slice_sort import sort_in_slices

    keys = [(i * 7919) % 13 for i in range(2_000)] + [None, "a"]  # ties, then keys that do not compare
    job = sort_in_slices(keys[:2_000], step=64, descending=True)
    steps = 0
    try:
        while True:
            assert 0.0 <= next(job) <= 1.0
            steps += 1
    except StopIteration as done:
        order = done.value
    assert steps > 30  # many small steps, not one
    assert order == sorted(range(2_000), key=keys.__getitem__, reverse=True)  # stable, as sorted() is
    # the table's sort in slices: the same rows as the sort in one go, even for mixed values
    record = StreamRecord(title="x")
    for n, value in enumerate(keys):
        record.add_chunk({"k": value, "n": n} if value is not None else {"n": n}, n + 1, 10)
    model = TableModel(record)
    model.sync()
    for _ in model.sort_steps(0, False, rows_per_step=100):
        assert model.sorting is not None and model.sorting[:2] == (0, False)
    assert model.sorting is None and model.sort_column == 0
    sliced = [model.record(i)["n"] for i in range(len(keys))]
    model.sort(0)
    assert sliced == [model.record(i)["n"] for i in range(len(keys))]
    assert model.record(len(keys) - 1).get("k") is None and model.record(len(keys) - 2)["k"] == "a"


def test_computed_floats_read_short_in_cells_and_labels_but_sort_and_export_exact():
    """55.00000000000001 (a computed total) reads 55.0 in the table, fields and value
    views: at most 12 significant digits, still a float; short values as Python writes
    them; the raw JSON keeps every digit and sorting uses the exact numbers."""
    from console.core.views.cells import compact

    assert cell_text(55.00000000000001) == "55.0" and cell_text(0.1 + 0.2) == "0.3"
    assert cell_text(3.14159265358979) == "3.14159265359" and cell_text(123456.789) == "123456.789"
    assert cell_text(1e20) == "1e+20" and cell_text(1.5e-7) == "1.5e-07" and cell_text(2**60 * 1.0) == "1.15292150461e+18"
    assert cell_text(float("inf")) == "inf" and cell_text(7) == "7"
    assert summary(55.00000000000001) == "55.0"
    assert compact({"total": 55.00000000000001}) == '{"total":55.00000000000001}'
    record = StreamRecord(title="query")
    record.add_chunk({"columns": ["id", "total"]}, 1, 20)
    record.add_chunk({"rows": [[1, 55.00000000000001], [2, 55.0]]}, 2, 40)
    model = TableModel(record)
    model.sync()
    model.sort(1)
    assert [model.cell(model.row(i), 1) for i in range(2)] == [55.0, 55.00000000000001]
    assert [cell_text(model.cell(model.row(i), 1)) for i in range(2)] == ["55.0", "55.0"]
