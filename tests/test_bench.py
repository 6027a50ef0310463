"""`olane bench` runs end to end: a smoke test with small counts. It checks that the
figures are printed and every chunk arrived, never how fast (speed is for the bench)."""
from __future__ import annotations

import json
import subprocess
import sys

from process_helpers import olane


def bench(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return olane("bench", *args, timeout=timeout)


def test_quick_throughput_prints_figures_for_both_codecs():
    out = bench("--quick", "--only", "throughput", "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    for codec in ("json", "msgpack"):
        assert any(l.split()[:2] == [codec, "100"] and "chunks/s" in l for l in lines), out.stdout
        assert any(l.split()[:2] == [codec, "64"] and "MB/s" in l for l in lines), out.stdout
    assert any(l.startswith("summary:") for l in lines)
    summary = json.loads(lines[-1])
    rows = {r["name"]: r for r in summary["rows"]}
    assert set(rows) == {"json_100", "json_65536", "msgpack_100", "msgpack_65536"}
    assert all(r["complete"] and r["in_order"] and r["verdict"] in ("PASS", "MISS") for r in rows.values())
    assert summary["failures"] == []


def test_unknown_section_is_a_usage_error():
    out = bench("--only", "nonsense", timeout=60)
    assert out.returncode == 2
    assert "unknown section" in out.stderr


def test_bench_module_does_not_import_textual():
    code = "import sys, benchmarks.runtime; assert 'textual' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


def test_quick_soak_runs_end_to_end():
    """`olane bench --soak` with tiny counts: every phase prints its line; figures are not judged here
    (crashes make the exit code 1, which tests/test_fuzz.py judges)."""
    out = bench("--soak", "--quick", "--frames", "100", "--connections", "20", "--json", timeout=300)
    assert out.returncode in (0, 1), out.stdout + out.stderr
    assert "Traceback" not in out.stdout, out.stdout
    lines = out.stdout.splitlines()
    summary = json.loads(lines[-1])
    assert summary["sections"] == ["soak"]
    rows = {r["name"]: r for r in summary["rows"]}
    assert {"fuzz", "connections", "hog", "hog_callers", "partial", "partial_callers"} <= set(rows), out.stdout
    assert rows["fuzz"]["frames"] >= 1 and rows["connections"]["attempted"] >= 1
    assert rows["partial"]["rss_peak_mib"] > 0 and rows["hog_callers"]["pings"] >= 1
    assert any(l.strip().startswith("/proc/loadavg") for l in lines)


def test_quick_compare_prints_every_contender_and_the_ratios():
    out = bench("--quick", "--only", "compare", "--json", timeout=400)
    assert out.returncode == 0, out.stdout + out.stderr
    summary = json.loads(out.stdout.splitlines()[-1])
    names = {r["name"] for r in summary["rows"]}
    for name in ("raw64_100", "raw64_100_stock", "json_100", "msgpack_100", "batched_msgpack_100", "batched_json_100",
                 "grpc_100", "raw_64k", "raw_64k_stock", "msgpack_64k", "grpc_64k", "unary_use", "unary_reused",
                 "unary_grpc",
                 "ratio:json_100/raw64_100_stock", "ratio:batched_msgpack_100/raw64_100_stock",
                 "ratio:batched_msgpack_100/raw64_100", "ratio:raw64_100/raw64_100_stock", "ratio:unary_use/unary_grpc"):
        assert name in names, (name, out.stdout)
    assert "ratios" in out.stdout and summary["failures"] == []
