"""The tool library over real libp2p on 127.0.0.1: the seed's examples, a real
SQLite file, real files, the machine's metrics, and every tool's metadata.
Every network operation runs under a deadline (run_trio)."""
from __future__ import annotations

import base64
import errno
import hashlib
import json
import os
import random
import sqlite3
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import trio

from node_runtime import Client, ErrorCode, Limits, OlaneError
from tool_library import TOOL_NAMES, DemoTool, FilesTool, MetricsTool, SqliteTool, build_tools
from tool_library.files import open_beneath, openat2_available
from tool_library.sample_data import ORDERS, build_sample_db

from process_helpers import OLANE, olane, start_node, stop_process
from trio_helpers import NodeAndClient, run_trio


def serve(*tools, codec: str = "auto") -> NodeAndClient:
    nc = NodeAndClient(list(tools))
    nc.client = Client(codec=codec)
    return nc


async def stream(nc: NodeAndClient, address: str, method: str, params: dict | None = None):
    """(chunks, final data) of one streamed call."""
    call = nc.client.use_streaming(address, method, params or {}, via=nc.ma)
    chunks = [c async for c in call]
    return chunks, call.final


async def error_of(awaitable) -> OlaneError:
    with pytest.raises(OlaneError) as info:
        await awaitable
    return info.value


async def wait_until(predicate, what: str, timeout: float = 5.0) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.01)


async def active_requests(nc: NodeAndClient, address: str) -> int:
    metrics = await nc.client.use(address, "get_metrics", via=nc.ma)
    return metrics["activeRequests"]


# --- demo: the seed's examples ------------------------------------------------------------


def test_get_items_and_stream_items_follow_the_seed():
    async def body():
        async with serve(DemoTool()) as nc:
            result = await nc.client.use("o://demo", "get_items", {"count": 3}, via=nc.ma)
            assert result["total"] == 3 and [i["id"] for i in result["items"]] == [1, 2, 3]
            assert result["items"][0]["name"] == "Item 1"
            assert (await nc.client.use("o://demo", "get_items", via=nc.ma))["total"] == 10  # seed default

            chunks, final = await stream(nc, "o://demo", "stream_items", {"count": 5, "delayMs": 0})
            assert [c["id"] for c in chunks] == [1, 2, 3, 4, 5]
            assert [c["progress"] for c in chunks] == [20, 40, 60, 80, 100]
            assert chunks[2]["name"] == chunks[2]["data"] == "Item 3" and chunks[2]["timestamp"]
            assert final == {"message": ""}  # the TypeScript default final frame: no deltas here

    run_trio(body)


def test_stream_items_spaces_chunks_by_delay_on_a_grid():
    async def body():
        async with serve(DemoTool()) as nc:
            chunks, _ = await stream(nc, "o://demo", "stream_items", {"count": 6, "delayMs": 100})
            stamps = [datetime.fromisoformat(c["timestamp"].replace("Z", "+00:00")) for c in chunks]
            gaps = [(b - a).total_seconds() for a, b in zip(stamps, stamps[1:])]
            # loose bounds: the schedule is start + n * 100 ms, so no gap is near 0 or 200 ms
            assert all(0.05 <= g <= 0.18 for g in gaps), gaps
            assert 0.4 <= (stamps[-1] - stamps[0]).total_seconds() <= 0.7

    run_trio(body)


def test_stream_text_reassembles_the_text_and_its_final_message():
    text = "Hello from olane, one piece at a time."
    async def body():
        async with serve(DemoTool()) as nc:
            chunks, final = await stream(nc, "o://demo", "stream_text", {"text": text, "chunkSize": 5, "delayMs": 0})
            assert "".join(c["text"] for c in chunks) == text
            assert [c["position"] for c in chunks] == list(range(0, len(text), 5))
            assert [c["isComplete"] for c in chunks] == [False] * (len(chunks) - 1) + [True]
            assert all(c["delta"] == c["text"] for c in chunks)
            assert final == {"message": text}

    run_trio(body)


def test_stream_query_sends_batches_with_offsets_and_has_more():
    async def body():
        async with serve(DemoTool()) as nc:
            chunks, _ = await stream(nc, "o://demo", "stream_query", {"query": "SELECT * FROM users", "delayMs": 0})
            assert [c["offset"] for c in chunks] == [0, 10, 20, 30, 40]  # seed: 50 records, batches of 10
            assert [c["hasMore"] for c in chunks] == [True, True, True, True, False]
            records = [r for c in chunks for r in c["records"]]
            assert [r["id"] for r in records] == list(range(1, 51))
            assert records[0] == {"id": 1, "data": "Record 1", "query": "SELECT * FROM users"}
            chunks, _ = await stream(nc, "o://demo", "stream_query", {"query": "q", "batchSize": 15, "delayMs": 0})
            assert [c["batchSize"] for c in chunks] == [15, 15, 15, 5]  # the last batch is cut at the total
            err = await error_of(nc.client.use("o://demo", "stream_query", {}, via=nc.ma))
            assert err.code == ErrorCode.MISSING_PARAMETERS and "query" in err.message

    run_trio(body)


def test_stream_progress_counts_steps_to_complete():
    async def body():
        async with serve(DemoTool()) as nc:
            chunks, _ = await stream(nc, "o://demo", "stream_progress",
                                     {"taskName": "Import", "totalSteps": 4, "delayMs": 0})
            assert [c["currentStep"] for c in chunks] == [1, 2, 3, 4]
            assert [c["progress"] for c in chunks] == [25, 50, 75, 100]
            assert [c["status"] for c in chunks] == ["running"] * 3 + ["complete"]
            assert all(c["taskName"] == "Import" and c["totalSteps"] == 4 for c in chunks)
            chunks, _ = await stream(nc, "o://demo", "stream_progress", {"totalSteps": 2, "delayMs": 20})
            assert [c["estimatedTimeRemaining"] for c in chunks] == ["0.0s", "0.0s"]
            assert chunks[0]["taskName"] == "Processing"

    run_trio(body)


def test_stream_with_error_sends_exactly_fail_at_chunks_then_the_error():
    async def body():
        async with serve(DemoTool()) as nc:
            call = nc.client.use_streaming("o://demo", "stream_with_error", {"failAt": 3, "delayMs": 0}, via=nc.ma)
            got = []
            with pytest.raises(OlaneError) as info:
                async for chunk in call:
                    got.append(chunk)
            assert [c["id"] for c in got] == [0, 1, 2]
            assert got[0]["message"] == "Item 0 processed successfully"
            assert info.value.code == ErrorCode.UNKNOWN
            assert info.value.message == "Intentional error at item 3"
            assert info.value.details == {"failAt": 3, "chunksSent": 3}
            chunks, _ = await stream(nc, "o://demo", "stream_with_error", {"delayMs": 0})  # failAt -1: never
            assert [c["id"] for c in chunks] == list(range(10))
            err = await error_of(nc.client.use("o://demo", "stream_items", {"delayMs": -1}, via=nc.ma))
            assert err.code == ErrorCode.INVALID_PARAMETERS

    run_trio(body)


# --- sqlite -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shop_db(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sqlite") / "shop.db"
    build_sample_db(path)
    return path


def test_sample_database_is_built_on_first_use_under_the_data_dir():
    tool = SqliteTool()

    async def body():
        async with serve(tool) as nc:
            tables = await nc.client.use("o://sqlite", "tables", via=nc.ma, timeout=30)
            by_name = {t["name"]: t for t in tables["tables"]}
            assert by_name["orders"]["rowCount"] == ORDERS >= 100_000
            assert by_name["customers"]["rowCount"] > 0 and by_name["products"]["rowCount"] > 0
            assert tables["readOnly"] is True
            return Path(tables["database"])

    path = run_trio(body, timeout=60)
    assert path == Path(os.environ["OLANE_DATA_DIR"]) / "sample.db"
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []  # built atomically
    print(f"sample db: {tool.sample_build_seconds:.2f} s, {path.stat().st_size / 1e6:.1f} MB")


def test_schema_describes_a_table_and_refuses_unknown_ones(shop_db):
    async def body():
        async with serve(SqliteTool(db_path=shop_db)) as nc:
            schema = await nc.client.use("o://sqlite", "schema", {"table": "orders"}, via=nc.ma)
            assert [c["name"] for c in schema["columns"]][:3] == ["id", "customer_id", "product_id"]
            assert schema["columns"][0]["primaryKey"] is True
            assert {"column": "customer_id", "table": "customers", "to": "id"} in schema["foreignKeys"]
            err = await error_of(nc.client.use("o://sqlite", "schema", {"table": "nope"}, via=nc.ma))
            assert err.code == ErrorCode.NOT_FOUND

    run_trio(body)


def test_query_streams_100k_rows_in_order_in_batches_with_bounded_memory(shop_db):
    tool = SqliteTool(db_path=shop_db)

    async def body():
        async with serve(tool) as nc:
            call = nc.client.use_streaming("o://sqlite", "query", {
                "sql": "SELECT id, customer_id, total FROM orders WHERE id <= ? ORDER BY id",
                "params": [100_000], "batchSize": 500}, via=nc.ma)
            chunks = aiter(call)
            assert await anext(chunks) == {"columns": ["id", "customer_id", "total"]}
            batches = [c async for c in chunks]
            assert [b["batch"] for b in batches] == list(range(1, 201))
            assert [b["offset"] for b in batches] == list(range(0, 100_000, 500))
            assert all(len(b["rows"]) == 500 for b in batches)
            ids = [row[0] for b in batches for row in b["rows"]]
            assert ids == list(range(1, 100_001))
            assert call.final["rowCount"] == 100_000 and call.final["batches"] == 200
            assert tool.stats.max_rows_held <= 500  # never more than one batch in hand
            assert tool.stats.active == 0 and tool.stats.completed == 1

    run_trio(body)


def test_a_paused_consumer_holds_the_cursor_back(shop_db):
    """The cursor runs ahead of the consumer by at most what the transport holds (Yamux
    window, at most 16 MiB, plus the node's write buffer), never by the whole result."""
    tool = SqliteTool(db_path=shop_db)
    row_bytes, batch = 2000, 100

    async def body():
        async with serve(tool) as nc:
            got = 0
            async for chunk in nc.client.use_streaming("o://sqlite", "query", {
                    "sql": "SELECT id, randomblob(?) FROM orders", "params": [row_bytes],
                    "batchSize": batch}, via=nc.ma):
                if "rows" in chunk:
                    got += len(chunk["rows"])
                    await trio.sleep(0.5)  # a consumer that stops reading for a while
                    break
            # 120k rows of 2 kB = 240 MB. What may be ahead of us: the Yamux window (16 MiB),
            # the node's write buffer and our read buffer (256 KiB each), and a few batches
            # in hand or in flight (one being encoded, one being written, one in the tool)
            bound = (16 * 1024 * 1024 + 2 * 256 * 1024) // row_bytes + 4 * batch
            assert got == batch and tool.stats.rows_fetched <= bound < ORDERS // 10, (tool.stats, bound)
            await wait_until(lambda: tool.stats.active == 0, "the query's finally")
            assert tool.stats.max_rows_held <= batch

    run_trio(body)


def test_cancelling_a_query_after_the_first_batch_stops_it(shop_db):
    tool = SqliteTool(db_path=shop_db)

    async def body():
        async with serve(tool) as nc:
            async for chunk in nc.client.use_streaming("o://sqlite", "query",
                                                       {"sql": "SELECT * FROM orders", "batchSize": 500}, via=nc.ma):
                if "rows" in chunk:
                    break  # leaves the call: the stream is reset
            await wait_until(lambda: tool.stats.active == 0, "the query's finally")
            assert tool.stats.stopped == 1 and tool.stats.completed == 0
            assert tool.stats.rows_fetched < ORDERS
            assert await active_requests(nc, "o://sqlite") == 0

    run_trio(body)


def test_cancelling_a_long_running_statement_interrupts_sqlite(shop_db):
    tool = SqliteTool(db_path=shop_db)

    async def body():
        async with serve(tool) as nc:
            # a cross join of 120k x 120k rows: hours of work inside one execute() call
            with trio.move_on_after(0.5):
                async for _ in nc.client.use_streaming("o://sqlite", "query", {
                        "sql": "SELECT COUNT(*) FROM orders a, orders b"}, via=nc.ma):
                    pass
            await wait_until(lambda: tool.stats.active == 0 and tool.stats.threads_in_sqlite == 0,
                             "interrupted worker thread", timeout=5)
            assert tool.stats.stopped == 1
            assert await active_requests(nc, "o://sqlite") == 0

    run_trio(body)


@pytest.mark.parametrize("sql", [
    "INSERT INTO customers (name, email, country, city, created_at) VALUES ('x', 'x@x', 'FR', 'Paris', '')",
    "UPDATE products SET price = 0",
    "DELETE FROM orders",
    "DROP TABLE orders",
    "CREATE TABLE t (x)",
    "PRAGMA user_version = 7",
    "ATTACH DATABASE 'other.db' AS other",
])
def test_a_write_without_permission_is_not_authorized(shop_db, sql):
    async def body():
        async with serve(SqliteTool(db_path=shop_db)) as nc:
            err = await error_of(nc.client.use("o://sqlite", "query", {"sql": sql}, via=nc.ma))
            assert err.code == ErrorCode.NOT_AUTHORIZED, err
            assert "--allow-writes" in err.message

    run_trio(body)
    count = sqlite3.connect(shop_db).execute("SELECT COUNT(*) FROM orders").fetchone()[0]
    assert count == ORDERS  # nothing changed


def test_writes_work_when_allowed_and_the_metadata_says_high_risk(shop_db, tmp_path):
    db = tmp_path / "writable.db"
    db.write_bytes(shop_db.read_bytes())
    reader, writer = SqliteTool(db_path=db), SqliteTool("o://sqlite-rw", db_path=db, allow_writes=True)

    async def body():
        async with serve(reader, writer) as nc:
            _, final = await stream(nc, "o://sqlite-rw", "query", {
                "sql": "INSERT INTO products (name, category, price, stock) VALUES (?, ?, ?, ?)",
                "params": ["Quantum Teapot", "kitchen", 12.5, 3]})
            assert final["changes"] == 1 and final["columns"] == []
            chunks, _ = await stream(nc, "o://sqlite", "query", {
                "sql": "SELECT name, price FROM products WHERE name = :name", "params": {"name": "Quantum Teapot"}})
            assert chunks == [{"columns": ["name", "price"]}, {"rows": [["Quantum Teapot", 12.5]], "offset": 0,
                                                               "batch": 1}]
            ro = (await nc.client.use("o://sqlite", "handshake", {"tool": "query"}, via=nc.ma))["result"]
            rw = (await nc.client.use("o://sqlite-rw", "handshake", {"tool": "query"}, via=nc.ma))["result"]
            assert ro["methods"]["query"]["approvalMetadata"]["riskLevel"] == "low"
            assert ro["methods"]["query"]["requiresApproval"] is False
            assert rw["methods"]["query"]["approvalMetadata"]["riskLevel"] == "high"
            assert rw["methods"]["query"]["requiresApproval"] is True
            err = await error_of(nc.client.use("o://sqlite", "query", {"sql": "SELEC 1"}, via=nc.ma))
            assert err.code == ErrorCode.INVALID_PARAMETERS and "syntax error" in err.message

    run_trio(body)


NEVER_ENDING = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c"


async def outcome_of(nc: NodeAndClient, address: str, method: str, params: dict, outcomes: list) -> None:
    """Run one streamed call to its end; append the error code it ended with (or "ok")."""
    try:
        async for _ in nc.client.use_streaming(address, method, params, via=nc.ma):
            pass
        outcomes.append("ok")
    except OlaneError as exc:
        outcomes.append(exc.code)


def test_forty_never_ending_queries_leave_other_tools_and_tables_answering(shop_db, files_root):
    """The sqlite tool's own limiter: never-ending queries take its threads, never trio's
    default ones; a query that finds them all busy is refused (4016) after thread_wait;
    the files tool, ping and sqlite tables keep answering meanwhile."""
    sqlite_tool = SqliteTool(db_path=shop_db, max_threads=4, thread_wait=0.5, statement_timeout=600)

    async def body():
        async with serve(sqlite_tool, FilesTool(root=files_root)) as nc:
            outcomes: list = []
            async with trio.open_nursery() as nursery:
                for _ in range(40):
                    nursery.start_soon(outcome_of, nc, "o://sqlite", "query", {"sql": NEVER_ENDING}, outcomes)
                await wait_until(lambda: len(outcomes) == 36 and sqlite_tool.stats.threads_in_sqlite == 4,
                                 "4 queries running, 36 refused", timeout=20)
                assert set(outcomes) == {ErrorCode.CONNECTION_LIMIT_REACHED}, outcomes
                # the 4 running queries hold our limiter, not trio's default one
                assert sqlite_tool.query_threads.limiter.borrowed_tokens == 4
                assert trio.to_thread.current_default_thread_limiter().borrowed_tokens == 0

                listing = await nc.client.use("o://files", "list", {"path": "notes"}, via=nc.ma, timeout=10)
                assert [e["name"] for e in listing["entries"]] == ["a.txt"]
                chunks, final = await stream(nc, "o://files", "read", {"path": "notes/a.txt"})
                assert final["size"] == 6
                assert (await nc.client.use("o://files", "ping", via=nc.ma, timeout=10))["message"] == "Pong!"
                assert (await nc.client.use("o://sqlite", "ping", via=nc.ma, timeout=10))["message"] == "Pong!"
                tables = await nc.client.use("o://sqlite", "tables", via=nc.ma, timeout=10)
                assert "orders" in {t["name"] for t in tables["tables"]}

                err = await error_of(nc.client.use("o://sqlite", "query", {"sql": "SELECT 1"}, via=nc.ma,
                                                   timeout=10))
                assert err.code == ErrorCode.CONNECTION_LIMIT_REACHED
                assert "all 4 SQLite threads" in err.message and "busy" in err.message, err
                assert err.details == {"maxThreads": 4, "waitedSeconds": 0.5}
                nursery.cancel_scope.cancel()  # the callers leave: the node interrupts SQLite
            await wait_until(lambda: sqlite_tool.stats.active == 0 and sqlite_tool.stats.threads_in_sqlite == 0,
                             "interrupted queries", timeout=10)
            assert sqlite_tool.stats.refused == 37
            _, final = await stream(nc, "o://sqlite", "query", {"sql": "SELECT 1"})  # threads are back
            assert final["rowCount"] == 1

    run_trio(body, timeout=60)


def test_a_statement_past_its_time_limit_answers_4017_and_a_slow_consumer_is_not_counted(shop_db):
    tool = SqliteTool(db_path=shop_db, statement_timeout=0.5)

    async def body():
        async with serve(tool) as nc:
            err = await error_of(stream(nc, "o://sqlite", "query", {"sql": NEVER_ENDING}))
            assert err.code == ErrorCode.TIMEOUT, err
            assert "limit of 0.5 s" in err.message and "--sqlite-timeout" in err.message
            assert err.details["timeoutSeconds"] == 0.5 and err.details["sql"] == NEVER_ENDING
            assert tool.stats.timed_out == 1
            # the limit counts time inside SQLite: a consumer that pauses for longer is fine
            got = []
            call = nc.client.use_streaming("o://sqlite", "query", {
                "sql": "SELECT id FROM orders ORDER BY id LIMIT 1000", "batchSize": 100}, via=nc.ma)
            async for chunk in call:
                if "rows" in chunk:
                    got.extend(r[0] for r in chunk["rows"])
                    await trio.sleep(0.1)  # 10 batches: a second of pauses, twice the limit
            assert got == list(range(1, 1001)) and call.final["rowCount"] == 1000
            assert tool.stats.timed_out == 1

    run_trio(body)


def test_build_tools_passes_the_sqlite_timeout(tmp_path):
    sqlite_tool, = build_tools(["sqlite"], sqlite_db=tmp_path / "x.db", sqlite_timeout=2.5)
    assert sqlite_tool.statement_timeout == 2.5
    assert build_tools(["sqlite"])[0].statement_timeout == 30.0


def test_olane_node_sqlite_timeout_reaches_the_tool(tmp_path):
    """`olane node --sqlite-timeout 0.5`, a real process: a never-ending statement is
    stopped and `olane stream` prints the 4017 error naming the limit."""
    db = tmp_path / "x.db"
    sqlite3.connect(db).close()
    proc, ma = start_node("--tools", "sqlite", "--sqlite-db", str(db), "--sqlite-timeout", "0.5")
    try:
        out = olane("stream", ma, "query", "--params", json.dumps({"sql": NEVER_ENDING}))
        assert out.returncode == 1, out
        assert "error 4017 TIMEOUT" in out.stderr and "limit of 0.5 s" in out.stderr, out.stderr
        bad = olane("node", "--tools", "sqlite", "--sqlite-timeout", "0")
        assert bad.returncode == 2 and "--sqlite-timeout" in bad.stderr
    finally:
        assert stop_process(proc) == 0


def test_values_larger_than_the_frame_limit_are_refused_not_sent(tmp_path):
    """SQLite's length limit is the node's frame limit: a larger value fails inside SQLite
    before it is allocated; a smaller one whose encoding would not fit is refused by
    column; none becomes a frame over the limit."""
    limit = 1024 * 1024
    db = tmp_path / "blobs.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, payload BLOB)")
        conn.executemany("INSERT INTO t (name, payload) VALUES (?, ?)",
                         [("small", b"x" * 10), ("small", b"y" * 10), ("huge", b"z" * (2 * limit))])
    tool = SqliteTool(db_path=db)

    async def body():
        async with NodeAndClient([tool], limits=Limits(max_frame_bytes=limit)) as nc:
            for sql, row in [("SELECT randomblob(300000000)", 0), ("SELECT zeroblob(2000000)", 0),
                             ("SELECT id, payload FROM t ORDER BY id", 2)]:
                err = await error_of(stream(nc, "o://sqlite", "query", {"sql": sql}))
                assert err.code == ErrorCode.INVALID_RESPONSE, (sql, err)
                assert f"row {row} is larger than this node's limit of 1,048,576 bytes" in err.message, err
                assert err.details["limitBytes"] == limit and err.details["row"] == row
            # 900 kB of blob is 1.2 MB of base64: under SQLite's limit, over the frame
            err = await error_of(stream(nc, "o://sqlite", "query", {"sql": "SELECT 1 AS a, randomblob(900000) AS big"}))
            assert err.code == ErrorCode.INVALID_RESPONSE and "column 'big' of row 0" in err.message, err
            assert err.details["column"] == "big" and err.details["bytes"] > limit - 4096
            err = await error_of(stream(nc, "o://sqlite", "query", {
                "sql": "SELECT randomblob(450000) AS a, randomblob(450000) AS b"}))
            assert err.code == ErrorCode.INVALID_RESPONSE and err.message.startswith("row 0 is about"), err
            chunks, final = await stream(nc, "o://sqlite", "query", {"sql": "SELECT id, length(payload) FROM t"})
            assert [r for c in chunks[1:] for r in c["rows"]] == [[1, 10], [2, 10], [3, 2 * limit]]
            assert tool.stats.active == 0

    run_trio(body)
    async def default_limits():
        async with serve(SqliteTool(db_path=db)) as nc:
            err = await error_of(stream(nc, "o://sqlite", "query", {"sql": "SELECT randomblob(300000000)"}))
            assert err.code == ErrorCode.INVALID_RESPONSE and "16,777,216 bytes" in err.message, err

    run_trio(default_limits)


def test_batches_are_bounded_in_bytes_as_well_as_rows(shop_db):
    budget = 64 * 1024
    tool = SqliteTool(db_path=shop_db, max_batch_bytes=budget)

    async def body():
        async with serve(tool, codec="json") as nc:
            # rows of about 13.4 kB as JSON (10 kB of blob in base64): 4 fit in 64 KiB
            chunks, final = await stream(nc, "o://sqlite", "query", {
                "sql": "SELECT id, randomblob(10000) FROM orders ORDER BY id LIMIT 50", "batchSize": 500})
            batches = chunks[1:]
            assert [len(b["rows"]) for b in batches] == [4] * 12 + [2]
            assert [b["offset"] for b in batches] == list(range(0, 50, 4))
            assert [r[0] for b in batches for r in b["rows"]] == list(range(1, 51))
            assert all(len(json.dumps(b["rows"], separators=(",", ":"))) <= budget for b in batches)
            assert final["rowCount"] == 50 and final["batches"] == 13
            # a row larger than the budget still goes, alone
            chunks, final = await stream(nc, "o://sqlite", "query", {
                "sql": "SELECT id, randomblob(100000) FROM orders ORDER BY id LIMIT 3"})
            assert [len(b["rows"]) for b in chunks[1:]] == [1, 1, 1] and final["rowCount"] == 3
            assert tool.stats.max_rows_held <= 5

    run_trio(body)


# --- files ----------------------------------------------------------------------------------


@pytest.fixture
def files_root(tmp_path) -> Path:
    root = tmp_path / "root"
    (root / "notes").mkdir(parents=True)
    (root / "notes" / "a.txt").write_text("hello\n")
    (tmp_path / "secret.txt").write_text("outside the root\n")
    (root / "link-out").symlink_to(tmp_path / "secret.txt")
    (root / "dir-out").symlink_to(tmp_path)
    (root / "link-in").symlink_to(root / "notes" / "a.txt")
    return root


RESOLVERS = ["openat2", "walk"]


def files_tool(root: Path, resolver: str) -> FilesTool:
    if resolver == "openat2" and not openat2_available():
        pytest.skip("this kernel has no openat2")
    tool = FilesTool(root=root, resolver=resolver)
    assert tool.resolver == resolver
    return tool


@pytest.mark.parametrize("codec", ["json", "msgpack"])
def test_read_of_a_20_mb_file_reassembles_to_the_same_sha256(files_root, codec):
    content = random.Random(3).randbytes(20 * 1024 * 1024)
    (files_root / "big.bin").write_bytes(content)
    expected = hashlib.sha256(content).hexdigest()

    async def body():
        async with serve(FilesTool(root=files_root), codec=codec) as nc:
            call = nc.client.use_streaming("o://files", "read", {"path": "big.bin", "chunkSize": 1 << 20}, via=nc.ma)
            digest, offset = hashlib.sha256(), 0
            async for chunk in call:
                data = chunk["data"]
                # JSON carries bytes as base64 text; msgpack as bytes
                data = base64.b64decode(data) if codec == "json" else data
                assert isinstance(data, bytes) and chunk["offset"] == offset
                digest.update(data)
                offset += len(data)
            assert offset == len(content) and digest.hexdigest() == expected
            assert call.final == {"path": "big.bin", "size": len(content), "sha256": expected, "chunks": 20}

    run_trio(body)


@pytest.mark.parametrize("path", ["../secret.txt", "notes/../../secret.txt", "link-out", "dir-out/secret.txt",
                                  "/etc/passwd", "ABSOLUTE"])
@pytest.mark.parametrize("resolver", RESOLVERS)
def test_paths_that_escape_the_root_are_not_authorized(files_root, path, resolver):
    if path == "ABSOLUTE":
        path = str(files_root / "notes" / "a.txt")  # absolute, even inside the root
    tool = files_tool(files_root, resolver)

    async def body():
        async with serve(tool) as nc:
            for method in ("stat", "read", "list"):
                err = await error_of(nc.client.use("o://files", method, {"path": path}, via=nc.ma))
                assert err.code == ErrorCode.NOT_AUTHORIZED, (method, err)

    run_trio(body)


@pytest.mark.parametrize("resolver", RESOLVERS)
def test_list_stat_and_errors_inside_the_root(files_root, resolver):
    tool = files_tool(files_root, resolver)

    async def body():
        async with serve(tool) as nc:
            listing = await nc.client.use("o://files", "list", via=nc.ma)
            entries = {e["name"]: e for e in listing["entries"]}
            assert entries["notes"]["type"] == "dir" and entries["link-out"]["target"] == "outside"
            assert entries["link-in"]["target"] == "inside" and entries["link-in"]["type"] == "symlink"
            stat = await nc.client.use("o://files", "stat", {"path": "notes/../notes/./a.txt"}, via=nc.ma)
            assert stat["path"] == "notes/a.txt" and stat["size"] == 6 and stat["type"] == "file"
            assert (await nc.client.use("o://files", "stat", {"path": "notes/.."}, via=nc.ma))["path"] == "."
            chunks, final = await stream(nc, "o://files", "read", {"path": "./notes//a.txt"})
            assert chunks[0]["offset"] == 0 and final["size"] == 6 and final["path"] == "notes/a.txt"
            for method in ("stat", "read"):  # a symlink is never followed, even one that points inside
                err = await error_of(nc.client.use("o://files", method, {"path": "link-in"}, via=nc.ma))
                assert err.code == ErrorCode.NOT_AUTHORIZED and "symlink" in err.message, (method, err)
            for params, code in [({"path": "missing.txt"}, ErrorCode.NOT_FOUND),
                                 ({"path": "notes/a.txt", "chunkSize": 10}, ErrorCode.INVALID_PARAMETERS),
                                 ({"path": "notes"}, ErrorCode.INVALID_PARAMETERS)]:
                err = await error_of(nc.client.use("o://files", "read", params, via=nc.ma))
                assert err.code == code, (params, err)

    run_trio(body)


SWAPPER = """
import os, sys, time
folder, aside, outside = sys.argv[1:4]
swaps = 0
print("ready", flush=True)
while True:
    os.rename(folder, aside)
    os.symlink(outside, folder)
    os.unlink(folder)
    os.rename(aside, folder)
    swaps += 1
    time.sleep(0.0001)  # the real folder a little longer: calls get both outcomes
    if swaps % 100 == 0 and os.path.exists(folder + ".stop"):
        break
print(swaps, flush=True)
"""


class ParentSwapper:
    """A process that swaps `root/d` (a real folder) for a symlink to a folder outside
    the root and back, as fast as it can, until stopped (a process: no GIL shared with
    the node)."""

    def __init__(self, root: Path, outside: Path) -> None:
        self.folder = root / "d"
        self.args = [str(self.folder), str(root / ".d-aside"), str(outside)]
        self.swaps = 0

    def __enter__(self) -> "ParentSwapper":
        self.proc = subprocess.Popen([sys.executable, "-c", SWAPPER, *self.args], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline() == "ready\n"
        return self

    def __exit__(self, *exc) -> None:
        Path(str(self.folder) + ".stop").touch()
        try:
            out, _ = self.proc.communicate(timeout=10)
            self.swaps = int(out.strip() or 0)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        assert self.proc.returncode == 0


@pytest.mark.parametrize("resolver", RESOLVERS)
def test_swapping_a_parent_folder_for_a_symlink_never_leaks_outside_content(tmp_path, resolver):
    """While a process swaps root/d for a symlink to a folder outside and back: the tool's
    own read/stat/list 10,000 times in a thread, then 240 calls over libp2p. Each either
    answers with what is inside or is a clean 4005/4002; none ever shows the outside."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "d").mkdir(parents=True)
    outside.mkdir()
    (root / "d" / "f.txt").write_text("inside\n")
    (root / "d" / "inside-marker").write_text("")
    (outside / "f.txt").write_text("OUTSIDE THE ROOT, must never be served\n")
    (outside / "outside-marker").write_text("")
    tool = files_tool(root, resolver)
    clean = (ErrorCode.NOT_AUTHORIZED, ErrorCode.NOT_FOUND)
    inside = (b"inside\n", ("stat", 7), ("list", ("f.txt", "inside-marker")))
    parts = run_trio(lambda: tool.parts_of("d/f.txt"))
    outcomes: list = []

    def direct(i: int) -> Any:
        try:
            if i % 3 == 0:
                return ("stat", tool.stat_blocking(parts, "d/f.txt").st_size)
            if i % 3 == 1:
                return ("list", tuple(sorted(e["name"] for e in tool.list_blocking(parts[:1], "d")["entries"])))
            fd = tool.open_file_blocking(parts, "d/f.txt")
            try:
                return os.read(fd, 1000)
            finally:
                os.close(fd)
        except OlaneError as exc:
            return exc.code

    async def over_libp2p():
        async with serve(tool, codec="msgpack") as nc:
            async def caller(n: int) -> None:
                for i in range(n):
                    try:
                        if i % 3 == 0:
                            chunks, _ = await stream(nc, "o://files", "read", {"path": "d/f.txt"})
                            outcomes.append(b"".join(c["data"] for c in chunks))
                        elif i % 3 == 1:
                            st = await nc.client.use("o://files", "stat", {"path": "d/f.txt"}, via=nc.ma)
                            outcomes.append(("stat", st["size"]))
                        else:
                            listing = await nc.client.use("o://files", "list", {"path": "d"}, via=nc.ma)
                            outcomes.append(("list", tuple(sorted(e["name"] for e in listing["entries"]))))
                    except OlaneError as exc:
                        outcomes.append(exc.code)

            async with trio.open_nursery() as nursery:
                for _ in range(4):
                    nursery.start_soon(caller, 60)

    with ParentSwapper(root, outside) as swapper:
        outcomes.extend(direct(i) for i in range(10_000))
        run_trio(over_libp2p, timeout=120)
    assert len(outcomes) == 10_240
    escapes = [o for o in outcomes if o not in inside and o not in clean]
    served = sum(o in inside for o in outcomes)
    print(f"{resolver}: {served} served from inside, {len(outcomes) - served - len(escapes)} refused (4005/4002), "
          f"{len(escapes)} escapes, {swapper.swaps} swaps")
    assert escapes == []
    # the race was really run: calls met the folder, and the symlink or the gap
    assert served and served < len(outcomes) and swapper.swaps > 100


@pytest.mark.parametrize("resolver", RESOLVERS)
def test_open_beneath_refuses_a_symlink_in_any_component(tmp_path, resolver):
    if resolver == "openat2" and not openat2_available():
        pytest.skip("this kernel has no openat2")
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "f").write_text("x")
    (tmp_path / "link-dir").symlink_to(tmp_path / "a")
    (tmp_path / "a" / "link-file").symlink_to(tmp_path / "a" / "b" / "f")
    root_fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fd = open_beneath(root_fd, ["a", "b", "f"], os.O_RDONLY, use_openat2=resolver == "openat2")
        assert os.read(fd, 10) == b"x"
        os.close(fd)
        for parts in (["link-dir", "b", "f"], ["a", "link-file"], ["link-dir"]):
            with pytest.raises(OSError) as info:
                os.close(open_beneath(root_fd, parts, os.O_RDONLY, use_openat2=resolver == "openat2"))
            assert info.value.errno == errno.ELOOP, parts
        with pytest.raises(OSError) as info:
            open_beneath(root_fd, ["a", "nope", "f"], os.O_RDONLY, use_openat2=resolver == "openat2")
        assert info.value.errno == errno.ENOENT
    finally:
        os.close(root_fd)


def test_auto_uses_openat2_where_the_kernel_has_it_and_falls_back_on_enosys(files_root, monkeypatch):
    import tool_library.files as files_module
    assert FilesTool(root=files_root).resolver == ("openat2" if openat2_available() else "walk")

    def no_openat2(dir_fd, path, flags):
        raise OSError(errno.ENOSYS, os.strerror(errno.ENOSYS), path)

    monkeypatch.setattr(files_module, "_openat2", no_openat2)
    monkeypatch.setattr(files_module, "_openat2_works", None)  # probe again, as on an old kernel
    tool = FilesTool(root=files_root)
    assert tool.resolver == "walk" and files_module.openat2_available() is False
    with pytest.raises(ValueError):
        FilesTool(root=files_root, resolver="openat2")

    async def body():
        async with serve(tool) as nc:
            _, final = await stream(nc, "o://files", "read", {"path": "notes/a.txt"})
            assert final["size"] == 6
            err = await error_of(nc.client.use("o://files", "read", {"path": "dir-out/secret.txt"}, via=nc.ma))
            assert err.code == ErrorCode.NOT_AUTHORIZED

    run_trio(body)


def test_files_answers_fit_the_nodes_frame_limit(files_root):
    limit = 64 * 1024
    many = files_root / "many"
    many.mkdir()
    for i in range(1000):
        (many / f"{i:04d}-{'x' * 200}").touch()

    async def body():
        async with NodeAndClient([FilesTool(root=files_root)], limits=Limits(max_frame_bytes=limit)) as nc:
            err = await error_of(nc.client.use("o://files", "read", {"path": "notes/a.txt", "chunkSize": 65536},
                                               via=nc.ma))
            assert err.code == ErrorCode.INVALID_PARAMETERS and "would not fit in one frame" in err.message
            assert err.details == {"parameter": "chunkSize", "maximum": (limit - 4096) // 4 * 3}
            _, final = await stream(nc, "o://files", "read", {"path": "notes/a.txt", "chunkSize": 16384})
            assert final["size"] == 6
            listing = await nc.client.use("o://files", "list", {"path": "many"}, via=nc.ma)
            assert listing["truncated"] is True and 0 < len(listing["entries"]) < 1000

    run_trio(body)


def test_default_root_is_a_sample_folder_created_on_first_use():
    async def body():
        async with serve(FilesTool()) as nc:
            listing = await nc.client.use("o://files", "list", via=nc.ma)
            assert {"README.txt", "notes", "data"} <= {e["name"] for e in listing["entries"]}
            stat = await nc.client.use("o://files", "stat", {"path": "data/random-1MiB.bin"}, via=nc.ma)
            assert stat["size"] == 1024 * 1024

    run_trio(body)
    assert (Path(os.environ["OLANE_DATA_DIR"]) / "sample-files" / "README.txt").exists()


# --- metrics ----------------------------------------------------------------------------------


def test_watch_yields_samples_at_the_interval_and_stops_on_cancel():
    async def body():
        async with serve(MetricsTool()) as nc:
            chunks, final = await stream(nc, "o://metrics", "watch", {"intervalMs": 100, "count": 3})
            assert [c["sample"] for c in chunks] == [1, 2, 3] and final["samples"] == 3
            gaps = [b["time"] - a["time"] for a, b in zip(chunks, chunks[1:])]
            assert all(0.05 <= g <= 0.3 for g in gaps), gaps
            sample = chunks[-1]
            assert 0 <= sample["cpu"]["percent"] <= 100 and sample["memory"]["total"] > 0
            assert sample["network"]["recvPerSec"] >= 0 and "bytesSent" in sample["network"]
            assert sample["disk"]["total"] > 0 and sample["timestamp"]

            got = 0
            async for _ in nc.client.use_streaming("o://metrics", "watch", {"intervalMs": 50}, via=nc.ma):
                got += 1
                if got == 2:
                    break  # count=0 runs until cancelled
            with trio.fail_after(5):
                while await active_requests(nc, "o://metrics"):
                    await trio.sleep(0.02)
            snapshot = await nc.client.use("o://metrics", "snapshot", via=nc.ma)
            assert snapshot["host"]["hostname"] and snapshot["cpu"]["count"] >= 1

    run_trio(body)


# --- metadata, build_tools --------------------------------------------------------------------


def test_handshake_lists_every_method_with_its_parameters(tmp_path):
    tools = build_tools(files_root=tmp_path, sqlite_db=tmp_path / "x.db")
    own = {"demo": {"get_items", "stream_items", "stream_text", "stream_query", "stream_progress",
                    "stream_with_error"},
           "sqlite": {"tables", "schema", "query"}, "files": {"list", "stat", "read"},
           "metrics": {"watch", "snapshot"}}

    async def body():
        async with serve(*tools) as nc:
            for tool in tools:
                name = tool.address.segments[-1]
                listing = (await nc.client.use(tool.address.value, "handshake", via=nc.ma))["result"]
                assert own[name] <= set(listing["tools"]) and set(listing["tools"]) == set(tool.methods)
                for method in own[name]:
                    meta = listing["methods"][method]
                    spec = tool.methods[method]
                    assert meta["description"], method
                    assert meta["performance"]["supportsStreaming"] is spec.streaming
                    assert meta["approvalMetadata"]["riskLevel"] in ("low", "medium", "high")
                    assert [p["name"] for p in meta["parameters"]] == [p.name for p in spec.params]
                    for p in meta["parameters"]:
                        assert p["type"] != "any" or p["name"] == "params", (method, p)
                        assert p["description"] and p["exampleValues"], (method, p)
                        assert p["required"] or "defaultValue" in p, (method, p)
            demo = tools[0].methods
            assert [p.name for p in demo["stream_items"].params] == ["count", "delayMs"]
            assert tools[2].methods["read"].risk == "low" and tools[1].methods["query"].risk == "low"

    run_trio(body)


def test_build_tools_names_and_addresses():
    assert TOOL_NAMES == ("demo", "sqlite", "files", "metrics")
    assert [str(t.address) for t in build_tools()] == ["o://demo", "o://sqlite", "o://files", "o://metrics"]
    assert [str(t.address) for t in build_tools(["demo"], address="o://lab")] == ["o://lab"]
    assert [str(t.address) for t in build_tools(["demo", "metrics"], address="o://lab")] == \
        ["o://lab/demo", "o://lab/metrics"]
    with pytest.raises(ValueError) as info:
        build_tools(["demo", "nope"])
    assert "nope" in str(info.value) and "demo, sqlite, files, metrics" in str(info.value)


def test_tool_library_does_not_import_textual():
    code = "import sys, tool_library; assert 'textual' not in sys.modules, 'textual imported'"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_declared_minimum_and_maximum_are_enforced_by_the_node():
    async def body():
        async with NodeAndClient(build_tools(["demo", "metrics"])) as nc:
            for address, method, params, name in [
                ("o://demo", "stream_items", {"delayMs": -1}, "delayMs"),
                ("o://demo", "get_items", {"count": 10**9}, "count"),
                ("o://metrics", "watch", {"intervalMs": 1}, "intervalMs"),
            ]:
                with pytest.raises(OlaneError) as info:
                    await nc.client.use(address, method, params, via=nc.ma, timeout=10)
                assert info.value.code == ErrorCode.INVALID_PARAMETERS
                assert info.value.details["parameter"] == name and f"{name} must be" in info.value.message

    run_trio(body, timeout=30)
