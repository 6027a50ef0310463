"""`olane bench` runs end to end: a smoke test with small counts. It checks that the
figures are printed and every chunk arrived, never how fast (speed is for the bench)."""
from __future__ import annotations

import json
import subprocess
import sys

from process_helpers import OLANE


def bench(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([OLANE, "bench", *args], capture_output=True, text=True, timeout=timeout)


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
