"""`olane bench-console` runs end to end: a smoke test with a small stream. It checks
that every figure line is printed and every chunk arrived, never how fast (speed is
for the bench itself)."""
from __future__ import annotations

import json
import subprocess

from process_helpers import olane


def bench_console(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return olane("bench-console", *args, timeout=timeout)


def test_quick_run_prints_every_figure_and_completes():
    out = bench_console("--quick", "--chunks", "20000", "--rows", "5000", "--json", timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    for part in ("single stream of 20,000", "two concurrent streams of 10,000"):
        assert part in text, text
    for figure in ("chunks into the console", "screen (visible stream): newest shown", "screen trails the record",
                   "key latency"):
        assert text.count(figure) == 2, (figure, text)
    for figure in ("UI event-loop stall", "console RSS MB", "garbage collector:"):  # and the two view runs
        assert text.count(figure) == 4, (figure, text)
    assert "rows into the table view" in text and "chunks into the chart view" in text
    assert "summary:" in text
    summary = json.loads(text.splitlines()[-1])
    assert summary["failures"] == []
    rows = {r["name"]: r for r in summary["rows"]}
    assert rows["single_chunks_per_s"]["chunks"] == 20_000 and rows["two_chunks_per_s"]["chunks"] == 20_000
    assert rows["single_screen"]["newest_shown"] == 20_000  # the last chunk reached the screen
    assert rows["table_rows_per_s"]["rows"] == 5_000 and rows["table_rows_per_s"]["newest_row_drawn"] == 5_000
    assert rows["chart_chunks_per_s"]["charted"] == 4_000  # a fifth of --chunks, every value charted
    assert rows["table_sort"]["rows"] == 5_000 and "stall p99" in rows["table_sort"]["target"]  # S, as typed
    # issue 14's targets for the single stream, next to the load average
    assert "p99 <= 16, max <= 50 ms" in rows["single_stall"]["target"] and rows["single_gc"]["target"] == "<= 2 full"
    assert rows["single_chunks_per_s"]["target"] == ">= 150,000 chunks/s" and "load average" in text
    assert all(r["verdict"] in ("PASS", "MISS") for r in rows.values() if r["target"])


def test_help_is_the_bench_own():
    out = bench_console("--help", timeout=60)
    assert out.returncode == 0
    assert "--chunks" in out.stdout and "--quick" in out.stdout
