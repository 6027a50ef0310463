"""`o://sqlite`: list tables, describe one, and stream a query's rows in batches
from a real SQLite file (the sample shop database, built on first use, or one
the operator names with --sqlite-db).

`query` contract (one chunk, then one per batch, then the final frame):
- first chunk `{"columns": [names]}` (empty for a statement that returns no rows);
- then `{"rows": [[v, ...], ...], "offset": n, "batch": k}` per batch of at most
  `batchSize` rows, in the statement's order; `offset` is the index of the
  batch's first row in the result, `batch` counts from 1;
- final data `{"columns", "rowCount", "batches", "changes", "elapsedMs"}`
  (`changes`: rows written, for a write statement; else 0).
Values are SQLite's: numbers, text, null, and blobs as bytes (base64 text with
the JSON codec, bin with msgpack).

Rows are read with a server-side cursor (row by row in a worker thread), one
batch at a time: the tool holds at most one batch per query, and a slow
consumer slows the cursor (the runtime writes a chunk only when the stream has
room). Cancelling the call interrupts SQLite (`sqlite3_interrupt`) even inside
a running `execute` or fetch, then closes the connection.

Limits (each answered with a clear error, never a hang or an oversized frame):
- threads: statements run in worker threads from this tool's own trio
  CapacityLimiter (`max_threads`, default 8; `tables` and `schema` have 2 more
  of their own), never trio's default limiter that other tools use. A call that
  finds every thread busy waits up to `thread_wait` seconds (default 5), then
  answers 4016 CONNECTION_LIMIT_REACHED.
- time: a statement may spend at most `statement_timeout` seconds (default 30)
  inside SQLite, counted over its execute and every fetch (time waiting for a
  slow consumer does not count); past it SQLite is interrupted from its
  progress handler and the call answers 4017 TIMEOUT naming the limit.
- bytes: a batch holds at most `batchSize` rows and about `max_batch_bytes`
  (default 1 MiB, estimated as JSON: base64 for blobs) - a row that would pass
  the budget starts the next batch, so a batch is never empty. SQLite's own
  length limit is set to the node's frame limit (`Limits.max_frame_bytes`), so
  a larger string or blob (`randomblob(300000000)`, or one stored in the file)
  fails inside SQLite before it is allocated; that, and a value or row whose
  encoded estimate would not fit in one frame, answers 4008 INVALID_RESPONSE
  (with the column and estimated size where known).

Unless the node runs with allow_writes, the database is opened read-only
(`mode=ro`) with an authorizer that refuses any statement that would write;
such a statement is answered with 4005 NOT_AUTHORIZED. SQL errors are 4007
INVALID_PARAMETERS with SQLite's message; a missing table (schema) or database
file is 4002 NOT_FOUND.
"""
from __future__ import annotations

import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from node_runtime import ErrorCode, Limits, OlaneError, Param, Request, StreamEnd, Tool, tool_method

from .data_dir import create_atomically, data_dir
from .sample_data import build_sample_db

log = logging.getLogger("olane.tools.sqlite")

SAMPLE_DB_NAME = "sample.db"
MAX_BATCH = 10_000
DEFAULT_MAX_THREADS = 8
DEFAULT_STATEMENT_TIMEOUT = 30.0
DEFAULT_MAX_BATCH_BYTES = 1024 * 1024
DEFAULT_THREAD_WAIT = 5.0
METADATA_THREADS = 2  # tables/schema: their own threads, so a busy query pool never blocks them
PROGRESS_OPCODES = 10_000  # SQLite calls the progress handler this often (well under 1 ms of work)
FRAME_OVERHEAD = 4096  # room kept in a frame for the envelope around a chunk's data

# Statements an authorizer lets through on a read-only node: reading, functions,
# CTEs, and transaction control (harmless on a connection that cannot write).
_READ_ACTIONS = {
    sqlite3.SQLITE_READ, sqlite3.SQLITE_SELECT, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_TRANSACTION,
    sqlite3.SQLITE_SAVEPOINT, getattr(sqlite3, "SQLITE_RECURSIVE", 33),
}
# PRAGMAs that take an argument yet only read; any other PRAGMA with a value may write.
_READ_PRAGMAS = {"table_info", "table_xinfo", "index_list", "index_info", "index_xinfo", "foreign_key_list",
                 "foreign_key_check", "integrity_check", "quick_check", "table_list"}
_ACTION_NAMES = {
    getattr(sqlite3, name): name[len("SQLITE_"):].replace("_", " ")
    for name in ("SQLITE_CREATE_INDEX", "SQLITE_CREATE_TABLE", "SQLITE_CREATE_TEMP_INDEX",
                 "SQLITE_CREATE_TEMP_TABLE", "SQLITE_CREATE_TEMP_TRIGGER", "SQLITE_CREATE_TEMP_VIEW",
                 "SQLITE_CREATE_TRIGGER", "SQLITE_CREATE_VIEW", "SQLITE_DELETE", "SQLITE_DROP_INDEX",
                 "SQLITE_DROP_TABLE", "SQLITE_DROP_TEMP_INDEX", "SQLITE_DROP_TEMP_TABLE", "SQLITE_DROP_TEMP_TRIGGER",
                 "SQLITE_DROP_TEMP_VIEW", "SQLITE_DROP_TRIGGER", "SQLITE_DROP_VIEW", "SQLITE_INSERT",
                 "SQLITE_PRAGMA", "SQLITE_UPDATE", "SQLITE_ATTACH", "SQLITE_DETACH", "SQLITE_ALTER_TABLE",
                 "SQLITE_REINDEX", "SQLITE_ANALYZE", "SQLITE_CREATE_VTABLE", "SQLITE_DROP_VTABLE")
    if hasattr(sqlite3, name)
}


@dataclass
class QueryStats:
    """What the tool is doing, for tests and operators: queries and rows in flight."""

    active: int = 0  # queries with an open connection
    started: int = 0
    completed: int = 0  # read to the end
    stopped: int = 0  # ended early: cancelled, or an error
    rows_fetched: int = 0  # rows read from SQLite, all queries
    rows_held: int = 0  # rows fetched and not yet handed to the runtime
    max_rows_held: int = 0
    threads_in_sqlite: int = 0  # worker threads inside execute/fetch right now
    timed_out: int = 0  # statements stopped by statement_timeout (4017)
    refused: int = 0  # calls that found every thread busy for thread_wait (4016)


class _BoundedLimiter:
    """A trio CapacityLimiter whose acquire gives up after `wait` seconds with
    4016 instead of queueing forever. trio.to_thread.run_sync accepts any object
    with these two methods as its `limiter`."""

    def __init__(self, tokens: int, wait: float, what: str, stats: QueryStats) -> None:
        self.limiter = trio.CapacityLimiter(tokens)
        self.wait = wait
        self.what = what
        self._stats = stats

    async def acquire_on_behalf_of(self, borrower: object) -> None:
        try:
            self.limiter.acquire_on_behalf_of_nowait(borrower)
            return
        except trio.WouldBlock:
            pass
        with trio.move_on_after(self.wait):
            await self.limiter.acquire_on_behalf_of(borrower)
            return
        self._stats.refused += 1
        total = self.limiter.total_tokens
        raise OlaneError(ErrorCode.CONNECTION_LIMIT_REACHED,
                         f"all {total} SQLite threads for {self.what} on this node are busy "
                         f"(waited {self.wait:g} s); try again later",
                         {"maxThreads": total, "waitedSeconds": self.wait})

    def release_on_behalf_of(self, borrower: object) -> None:
        self.limiter.release_on_behalf_of(borrower)


class _Connection:
    """One query's connection. Worker threads use it one at a time (the lock);
    `interrupt()` may be called from anywhere, `close()` waits for the worker."""

    def __init__(self, conn: sqlite3.Connection, stats: QueryStats, stats_lock: threading.Lock,
                 timeout: float) -> None:
        self.conn = conn
        self.cursor: sqlite3.Cursor | None = None
        self.denied: list[str] = []
        self.closed = False
        self.timeout = timeout
        self.spent = 0.0  # seconds spent inside SQLite so far, over every run()
        self.timed_out = False
        self._entered: float | None = None
        self._lock = threading.Lock()
        self._stats = stats
        self._stats_lock = stats_lock
        conn.set_progress_handler(self._progress, PROGRESS_OPCODES)

    def _progress(self) -> int:
        """SQLite's progress handler (in the worker thread): non-zero interrupts the statement."""
        entered = self._entered
        if entered is not None and self.spent + (time.monotonic() - entered) > self.timeout:
            self.timed_out = True
            return 1
        return 0

    def run(self, fn, *args):
        """Run `fn(*args)` in this worker thread, unless the query was closed."""
        with self._lock:
            if self.closed:
                raise sqlite3.OperationalError("interrupted")
            with self._stats_lock:
                self._stats.threads_in_sqlite += 1
            self._entered = time.monotonic()
            try:
                return fn(*args)
            finally:
                self.spent += time.monotonic() - self._entered
                self._entered = None
                with self._stats_lock:
                    self._stats.threads_in_sqlite -= 1

    def close(self) -> None:
        with self._lock:  # waits for a worker still in SQLite (interrupted: milliseconds)
            if self.closed:
                return
            self.closed = True
            try:
                if self.cursor is not None:
                    self.cursor.close()
            finally:
                self.conn.close()


class SqliteTool(Tool):
    """Tables, schemas and streamed queries of one SQLite database file."""

    address = "o://sqlite"
    description = "A SQLite database: list tables, describe one, stream a query's rows in batches."

    def __init__(self, address: str | None = None, *, db_path: "str | Path | None" = None,
                 allow_writes: bool = False, max_threads: int = DEFAULT_MAX_THREADS,
                 statement_timeout: float = DEFAULT_STATEMENT_TIMEOUT,
                 max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES, thread_wait: float = DEFAULT_THREAD_WAIT) -> None:
        """`max_threads`: worker threads for `query` statements (tables/schema have
        METADATA_THREADS more); `thread_wait`: seconds a call waits for one before
        4016; `statement_timeout`: seconds a statement may spend in SQLite before
        4017; `max_batch_bytes`: estimated bytes per batch of rows."""
        super().__init__(address)
        if max_threads < 1:
            raise ValueError("max_threads must be at least 1")
        if not statement_timeout > 0:
            raise ValueError("statement_timeout must be a positive number of seconds")
        if max_batch_bytes < 1024:
            raise ValueError("max_batch_bytes must be at least 1024")
        if thread_wait < 0:
            raise ValueError("thread_wait must not be negative")
        self.db_path: Path | None = Path(db_path).expanduser() if db_path else None
        self.allow_writes = allow_writes
        self.statement_timeout = float(statement_timeout)
        self.max_batch_bytes = int(max_batch_bytes)
        self.stats = QueryStats()
        self.sample_build_seconds: float | None = None
        self._stats_lock = threading.Lock()
        self._db_lock = trio.Lock()
        # Our own limiters: never trio's default one, which the files tool and the
        # rest of the process share.
        self.query_threads = _BoundedLimiter(max_threads, thread_wait, "queries", self.stats)
        self.metadata_threads = _BoundedLimiter(METADATA_THREADS, thread_wait, "tables and schema", self.stats)
        self._close_threads = trio.CapacityLimiter(max_threads)  # closing is quick; waits, never refused
        if allow_writes:  # the same method, now able to change data: say so in its metadata
            query = self.methods["query"]
            query.risk = "high"
            query.requires_approval = True
            query.category = "database-write"
            query.description = query.description.replace(
                "Read-only on this node: statements that would write are refused with 4005.",
                "This node allows writes: INSERT, UPDATE, DELETE, CREATE ... change the database.")

    @property
    def max_frame_bytes(self) -> int:
        """The frame limit of the node serving this tool (the default before it is served)."""
        limits = getattr(self.node, "limits", None) or Limits()
        return limits.max_frame_bytes

    # -- the database file -----------------------------------------------------------

    async def database(self) -> Path:
        """The database file: the operator's, or the sample, built on first use
        (off the trio thread, atomically)."""
        if self.db_path is not None:
            return self.db_path
        path = data_dir() / SAMPLE_DB_NAME
        if not path.exists():
            async with self._db_lock:
                if not path.exists():
                    started = time.perf_counter()
                    await trio.to_thread.run_sync(create_atomically, path, build_sample_db,
                                                  limiter=self._close_threads)
                    self.sample_build_seconds = time.perf_counter() - started
                    log.info("built the sample database %s in %.2f s", path, self.sample_build_seconds)
        return path

    def _connect(self, path: Path, length_limit: int) -> _Connection:
        """Open `path`; read-only (`mode=ro`) unless the node allows writes. The
        connection carries the statement timeout (progress handler) and SQLite's
        length limit for one string or blob."""
        uri = path.absolute().as_uri() + ("?mode=rwc" if self.allow_writes else "?mode=ro")
        try:
            conn = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None, timeout=5)
        except sqlite3.OperationalError as exc:
            raise OlaneError(ErrorCode.NOT_FOUND, f"cannot open database {path}: {exc}",
                             {"database": str(path)}) from None
        conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, length_limit)
        return _Connection(conn, self.stats, self._stats_lock, self.statement_timeout)

    def _open_query(self, path: Path, length_limit: int) -> _Connection:
        """A connection for user SQL: on a read-only node, an authorizer refuses
        anything that writes at prepare time, before it runs (mode=ro backs it up)."""
        query = self._connect(path, length_limit)
        if not self.allow_writes:
            def authorize(action, arg1, arg2, db_name, trigger):
                if action in _READ_ACTIONS:
                    return sqlite3.SQLITE_OK
                if action == sqlite3.SQLITE_PRAGMA and (arg2 is None or (arg1 or "").lower() in _READ_PRAGMAS):
                    return sqlite3.SQLITE_OK
                what = _ACTION_NAMES.get(action, f"action {action}")
                query.denied.append(f"{what} {arg1}" if arg1 else what)
                return sqlite3.SQLITE_DENY

            query.conn.set_authorizer(authorize)
        return query

    async def _metadata_call(self, fn, *args):
        """Run `fn(conn, *args)` on a fresh connection in one of the metadata threads."""
        path = await self.database()
        length_limit = self.max_frame_bytes

        def call():
            query = self._connect(path, length_limit)
            try:
                return query.run(fn, query.conn, path, *args)
            except sqlite3.Error as exc:
                raise _sql_error(exc, query, "", length_limit) from None
            finally:
                query.close()

        return await trio.to_thread.run_sync(call, limiter=self.metadata_threads)

    # -- methods ------------------------------------------------------------------------

    @tool_method(
        "Lists the tables and views of the database: {database, readOnly, tables: [{name, type, columns, rowCount}]} "
        "(rowCount only for tables).",
        category="database",
    )
    async def _tool_tables(self, request: Request) -> dict[str, Any]:
        return await self._metadata_call(self._tables)

    def _tables(self, conn: sqlite3.Connection, path: Path) -> dict[str, Any]:
        tables = []
        for name, kind in conn.execute(
                "SELECT name, type FROM sqlite_master WHERE type IN ('table', 'view') "
                "AND name NOT LIKE 'sqlite_%' ORDER BY type, name").fetchall():
            columns = [row[1] for row in conn.execute(f"PRAGMA table_info({_quote(name)})")]
            entry: dict[str, Any] = {"name": name, "type": kind, "columns": columns}
            if kind == "table":
                entry["rowCount"] = conn.execute(f"SELECT COUNT(*) FROM {_quote(name)}").fetchone()[0]
            tables.append(entry)
        return {"database": str(path), "readOnly": not self.allow_writes, "tables": tables}

    @tool_method(
        "Describes one table or view: {name, type, sql, columns: [{name, type, notNull, default, primaryKey}], "
        "indexes: [{name, unique, columns}], foreignKeys: [{column, table, to}]}. Unknown table: 4002.",
        params={"table": Param("table or view name", examples=["orders", "customers"])},
        category="database",
    )
    async def _tool_schema(self, request: Request, table: str) -> dict[str, Any]:
        return await self._metadata_call(self._schema, table)

    def _schema(self, conn: sqlite3.Connection, path: Path, table: str) -> dict[str, Any]:
        row = conn.execute("SELECT type, sql FROM sqlite_master WHERE name = ? AND type IN ('table', 'view')",
                           (table,)).fetchone()
        if row is None:
            raise OlaneError(ErrorCode.NOT_FOUND, f"no table or view named {table!r}", {"table": table})
        q = _quote(table)
        columns = [{"name": name, "type": ctype, "notNull": bool(notnull), "default": default,
                    "primaryKey": bool(pk)}
                   for _, name, ctype, notnull, default, pk in conn.execute(f"PRAGMA table_info({q})")]
        indexes = []
        for _, name, unique, *_ in conn.execute(f"PRAGMA index_list({q})").fetchall():
            cols = [c[2] for c in conn.execute(f"PRAGMA index_info({_quote(name)})")]
            indexes.append({"name": name, "unique": bool(unique), "columns": cols})
        foreign = [{"column": fk[3], "table": fk[2], "to": fk[4]}
                   for fk in conn.execute(f"PRAGMA foreign_key_list({q})")]
        return {"name": table, "type": row[0], "sql": row[1], "columns": columns, "indexes": indexes,
                "foreignKeys": foreign}

    @tool_method(
        "Runs one SQL statement and streams its rows in batches: first {columns}, then "
        "{rows, offset, batch} per batch of at most batchSize rows, final {columns, rowCount, batches, changes, "
        "elapsedMs}. Read-only on this node: statements that would write are refused with 4005.",
        params={
            "sql": Param("one SQL statement; ? or :name placeholders",
                         examples=["SELECT * FROM orders", "SELECT * FROM customers WHERE country = ?"]),
            "params": Param("values for the placeholders: an array (?) or an object (:name)", type="any",
                            examples=[["FR"], {"country": "FR"}]),
            "batchSize": Param("rows per chunk", examples=[500, 2000], minimum=1, maximum=MAX_BATCH),
        },
        risk="low",
        category="database",
        examples=[{"sql": "SELECT id, name, country FROM customers WHERE country = ?", "params": ["FR"]}],
    )
    async def _tool_query(self, request: Request, sql: str, params: Any = None, batchSize: int = 500):
        if params is None:
            args: Any = ()
        elif isinstance(params, (list, dict)):
            args = params
        else:
            raise OlaneError(ErrorCode.INVALID_PARAMETERS, "params must be an array or an object",
                             {"parameter": "params"})
        path = await self.database()
        frame_limit = self.max_frame_bytes
        query = await trio.to_thread.run_sync(self._open_query, path, frame_limit, limiter=self.query_threads)
        stats, lock = self.stats, self._stats_lock
        with lock:
            stats.active += 1
            stats.started += 1
        started = time.perf_counter()
        completed = False
        batcher: _Batcher | None = None
        try:
            cursor = await self._in_thread(query, _execute, query, sql, args)
            columns = [d[0] for d in cursor.description] if cursor.description else []
            yield {"columns": columns}
            batcher = _Batcher(cursor, columns, batchSize, self.max_batch_bytes, frame_limit - FRAME_OVERHEAD)
            offset = batches = 0
            while columns and not batcher.exhausted:
                fetched_before = batcher.fetched
                rows = await self._in_thread(query, batcher.next_batch)
                if not rows:
                    break
                held = len(rows) + (batcher.carry is not None)  # the row kept for the next batch is held too
                with lock:
                    stats.rows_fetched += batcher.fetched - fetched_before
                    stats.rows_held += held
                    stats.max_rows_held = max(stats.max_rows_held, stats.rows_held)
                batches += 1
                count = len(rows)
                try:
                    yield {"rows": rows, "offset": offset, "batch": batches}
                finally:
                    del rows  # the runtime has encoded it: drop our reference before the next fetch
                    with lock:
                        stats.rows_held -= held
                offset += count
            completed = True
            yield StreamEnd({"columns": columns, "rowCount": offset, "batches": batches,
                             "changes": 0 if columns else max(cursor.rowcount, 0),
                             "elapsedMs": round((time.perf_counter() - started) * 1000, 1)})
        except sqlite3.Error as exc:
            # the cursor reads one row ahead: a fetch fails on the row after the last one returned
            raise _sql_error(exc, query, sql, frame_limit, batcher.fetched + 1 if batcher else 0) from None
        finally:
            if not completed:
                query.conn.interrupt()  # stops a worker thread still inside execute/fetch
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(query.close, limiter=self._close_threads)
            with lock:
                stats.active -= 1
                if completed:
                    stats.completed += 1
                else:
                    stats.stopped += 1
                if query.timed_out:
                    stats.timed_out += 1

    async def _in_thread(self, query: _Connection, fn, *args):
        # abandon_on_cancel: a cancel reaches the generator at once (its finally
        # interrupts SQLite); the abandoned thread then ends within milliseconds,
        # and only then gives its token back to the limiter.
        return await trio.to_thread.run_sync(query.run, fn, *args, abandon_on_cancel=True,
                                             limiter=self.query_threads)


class _Batcher:
    """Cuts a cursor's rows into batches of at most `max_rows` rows and about
    `max_bytes` estimated bytes (runs in the worker thread). A row that would take
    a non-empty batch past `max_bytes` is kept for the next one, so every batch
    has at least one row; a value or row estimated over `value_limit` (what fits
    in one frame) is 4008, named by column."""

    def __init__(self, cursor: sqlite3.Cursor, columns: list[str], max_rows: int, max_bytes: int,
                 value_limit: int) -> None:
        self.cursor = cursor
        self.columns = columns
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self.value_limit = value_limit
        self.carry: tuple | None = None
        self.carry_bytes = 0
        self.exhausted = False
        self.fetched = 0  # rows read from the cursor

    def next_batch(self) -> list[tuple]:
        rows: list[tuple] = []
        size = 0
        if self.carry is not None:
            rows.append(self.carry)
            size = self.carry_bytes
            self.carry = None
        fetchone = self.cursor.fetchone
        while len(rows) < self.max_rows:
            row = fetchone()
            if row is None:
                self.exhausted = True
                break
            self.fetched += 1
            row_bytes = 2  # as _value_bytes, inlined: this runs for every row
            for value in row:
                kind = type(value)
                if kind is bytes:
                    row_bytes += (len(value) + 2) // 3 * 4 + 3
                elif kind is str:
                    row_bytes += (len(value) if value.isascii() else 4 * len(value)) + 3
                else:
                    row_bytes += 25
            if row_bytes > self.value_limit:
                raise self._too_large(row, row_bytes)
            if rows and size + row_bytes > self.max_bytes:
                self.carry, self.carry_bytes = row, row_bytes
                break
            rows.append(row)
            size += row_bytes
        return rows

    def _too_large(self, row: tuple, row_bytes: int) -> OlaneError:
        index = self.fetched - 1
        sizes = [_value_bytes(v) for v in row]
        biggest = max(range(len(row)), key=sizes.__getitem__)
        column = self.columns[biggest] if biggest < len(self.columns) else str(biggest)
        if sizes[biggest] > self.value_limit:
            message = (f"column {column!r} of row {index} is about {sizes[biggest]:,} bytes encoded, over this "
                       f"node's frame limit of {self.value_limit:,} bytes; select a part of it (substr) or its "
                       "length() instead")
        else:
            message = (f"row {index} is about {row_bytes:,} bytes encoded, over this node's frame limit of "
                       f"{self.value_limit:,} bytes (largest: column {column!r}, {sizes[biggest]:,} bytes); "
                       "select fewer or smaller columns")
        return OlaneError(ErrorCode.INVALID_RESPONSE, message,
                          {"column": column, "row": index, "bytes": sizes[biggest], "rowBytes": row_bytes,
                           "limitBytes": self.value_limit})


def _value_bytes(value: Any) -> int:
    """About how many bytes `value` takes in a JSON frame (blobs as base64)."""
    kind = type(value)
    if kind is bytes:
        return (len(value) + 2) // 3 * 4 + 2
    if kind is str:
        return (len(value) if value.isascii() else 4 * len(value)) + 2
    return 24  # int, float, None


def _execute(query: _Connection, sql: str, args: Any) -> sqlite3.Cursor:
    query.cursor = query.conn.cursor()
    query.cursor.execute(sql, args)
    return query.cursor


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _sql_error(exc: sqlite3.Error, query: _Connection, sql: str, length_limit: int, row: int = 0) -> OlaneError:
    message = str(exc)
    if query.timed_out:
        return OlaneError(ErrorCode.TIMEOUT,
                          f"the statement ran longer than this node's limit of {query.timeout:g} s "
                          "(statement_timeout, `olane node --sqlite-timeout`) and was stopped",
                          {"timeoutSeconds": query.timeout, "sql": sql})
    if getattr(exc, "sqlite_errorname", "") == "SQLITE_TOOBIG" or "too big" in message:
        return OlaneError(ErrorCode.INVALID_RESPONSE,
                          f"a string or blob in row {row} is larger than this node's limit of {length_limit:,} "
                          "bytes (its frame limit) and was not read; select a part of it (substr) or its "
                          "length() instead",
                          {"row": row, "limitBytes": length_limit, "sql": sql})
    if query.denied or "not authorized" in message or "readonly database" in message:
        what = ", ".join(dict.fromkeys(query.denied)) or "a write"
        return OlaneError(ErrorCode.NOT_AUTHORIZED,
                          f"this node serves the database read-only and the statement needs {what}; "
                          "start the node with --allow-writes to allow it",
                          {"denied": query.denied, "sql": sql})
    if "database is locked" in message:
        return OlaneError(ErrorCode.INVALID_STATE, f"database is busy: {message}", {"sql": sql})
    return OlaneError(ErrorCode.INVALID_PARAMETERS, f"SQL error: {message}", {"sql": sql})
