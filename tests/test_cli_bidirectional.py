"""`olane stream --input` and `--compress zstd --stats` as a user runs them: a real
`olane node` process and real `olane stream` processes on 127.0.0.1."""
from __future__ import annotations

import json
import re
import sqlite3

from process_helpers import olane, start_node, stop_process


def test_stream_input_from_stdin_and_compressed_stats(tmp_path):
    db = tmp_path / "shop.db"

    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, status TEXT, total REAL)")
        conn.executemany("INSERT INTO orders (status, total) VALUES (?, ?)",
                         [("shipped" if i % 3 else "pending", i * 1.5) for i in range(20_000)])
    proc, ma = start_node("--tools", "demo,sqlite", "--sqlite-db", str(db))
    try:
        # one JSON value a line (blank lines skipped), each sent as it is read
        lines = "".join(json.dumps({"n": i}) + "\n" for i in range(1, 201)) + "\n"
        echo = olane("stream", ma, "echo_stream", "--address", "o://demo", "--input", "-", input=lines)
        assert echo.returncode == 0, echo.stderr
        out = [json.loads(line) for line in echo.stdout.splitlines()]
        assert out[:-1] == [{"seq": i, "data": {"count": i, "data": {"n": i}}} for i in range(1, 201)]
        assert out[-1] == {"final": {"count": 200}, "chunks": 200}

        run = olane("stream", ma, "query", "--address", "o://sqlite", "--params",
                    json.dumps({"sql": "SELECT * FROM orders"}), "--compress", "zstd", "--stats")
        assert run.returncode == 0, run.stderr
        last = run.stderr.strip().splitlines()[-1]
        m = re.fullmatch(r"stats chunks=(\d+) wire_bytes=(\d+) data_bytes=(\d+) elapsed_ms=(\d+)", last)
        assert m, last
        chunks, wire, data = int(m.group(1)), int(m.group(2)), int(m.group(3))
        printed = [json.loads(line) for line in run.stdout.splitlines()]
        rows = [r for line in printed[:-1] for r in line["data"].get("rows", [])]
        with sqlite3.connect(db) as conn:
            assert rows == [list(r) for r in conn.execute("SELECT * FROM orders")]
        assert chunks == len(printed) - 1 == printed[-1]["chunks"]
        assert wire < 0.35 * data, (wire, data)  # data_bytes: the same frames uncompressed
    finally:
        stop_process(proc)
