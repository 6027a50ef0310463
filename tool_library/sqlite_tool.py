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

Rows are read with a server-side cursor (`fetchmany` in a worker thread), one
batch at a time: the tool holds at most one batch per query, and a slow
consumer slows the cursor (the runtime writes a chunk only when the stream has
room). Cancelling the call interrupts SQLite (`sqlite3_interrupt`) even inside
a running `execute`/`fetchmany`, then closes the connection.

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

from node_runtime import ErrorCode, OlaneError, Param, Request, StreamEnd, Tool, tool_method

from .data_dir import create_atomically, data_dir
from .sample_data import build_sample_db

log = logging.getLogger("olane.tools.sqlite")

SAMPLE_DB_NAME = "sample.db"
MAX_BATCH = 10_000

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
    threads_in_sqlite: int = 0  # worker threads inside execute/fetchmany right now


class _Connection:
    """One query's connection. Worker threads use it one at a time (the lock);
    `interrupt()` may be called from anywhere, `close()` waits for the worker."""

    def __init__(self, conn: sqlite3.Connection, stats: QueryStats, stats_lock: threading.Lock) -> None:
        self.conn = conn
        self.cursor: sqlite3.Cursor | None = None
        self.denied: list[str] = []
        self.closed = False
        self._lock = threading.Lock()
        self._stats = stats
        self._stats_lock = stats_lock

    def run(self, fn, *args):
        """Run `fn(*args)` in this worker thread, unless the query was closed."""
        with self._lock:
            if self.closed:
                raise sqlite3.OperationalError("interrupted")
            with self._stats_lock:
                self._stats.threads_in_sqlite += 1
            try:
                return fn(*args)
            finally:
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
                 allow_writes: bool = False) -> None:
        super().__init__(address)
        self.db_path: Path | None = Path(db_path).expanduser() if db_path else None
        self.allow_writes = allow_writes
        self.stats = QueryStats()
        self.sample_build_seconds: float | None = None
        self._stats_lock = threading.Lock()
        self._db_lock = trio.Lock()
        if allow_writes:  # the same method, now able to change data: say so in its metadata
            query = self.methods["query"]
            query.risk = "high"
            query.requires_approval = True
            query.category = "database-write"
            query.description = query.description.replace(
                "Read-only on this node: statements that would write are refused with 4005.",
                "This node allows writes: INSERT, UPDATE, DELETE, CREATE ... change the database.")

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
                    await trio.to_thread.run_sync(create_atomically, path, build_sample_db)
                    self.sample_build_seconds = time.perf_counter() - started
                    log.info("built the sample database %s in %.2f s", path, self.sample_build_seconds)
        return path

    def _connect(self, path: Path) -> sqlite3.Connection:
        """Open `path`; read-only (`mode=ro`) unless the node allows writes."""
        uri = path.absolute().as_uri() + ("?mode=rwc" if self.allow_writes else "?mode=ro")
        try:
            conn = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None, timeout=5)
        except sqlite3.OperationalError as exc:
            raise OlaneError(ErrorCode.NOT_FOUND, f"cannot open database {path}: {exc}",
                             {"database": str(path)}) from None
        return conn

    def _open_query(self, path: Path) -> _Connection:
        """A connection for user SQL: on a read-only node, an authorizer refuses
        anything that writes at prepare time, before it runs (mode=ro backs it up)."""
        conn = self._connect(path)
        query = _Connection(conn, self.stats, self._stats_lock)
        if not self.allow_writes:
            def authorize(action, arg1, arg2, db_name, trigger):
                if action in _READ_ACTIONS:
                    return sqlite3.SQLITE_OK
                if action == sqlite3.SQLITE_PRAGMA and (arg2 is None or (arg1 or "").lower() in _READ_PRAGMAS):
                    return sqlite3.SQLITE_OK
                what = _ACTION_NAMES.get(action, f"action {action}")
                query.denied.append(f"{what} {arg1}" if arg1 else what)
                return sqlite3.SQLITE_DENY

            conn.set_authorizer(authorize)
        return query

    # -- methods ------------------------------------------------------------------------

    @tool_method(
        "Lists the tables and views of the database: {database, readOnly, tables: [{name, type, columns, rowCount}]} "
        "(rowCount only for tables).",
        category="database",
    )
    async def _tool_tables(self, request: Request) -> dict[str, Any]:
        path = await self.database()
        return await trio.to_thread.run_sync(self._tables, path)

    def _tables(self, path: Path) -> dict[str, Any]:
        conn = self._connect(path)
        try:
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
        finally:
            conn.close()

    @tool_method(
        "Describes one table or view: {name, type, sql, columns: [{name, type, notNull, default, primaryKey}], "
        "indexes: [{name, unique, columns}], foreignKeys: [{column, table, to}]}. Unknown table: 4002.",
        params={"table": Param("table or view name", examples=["orders", "customers"])},
        category="database",
    )
    async def _tool_schema(self, request: Request, table: str) -> dict[str, Any]:
        path = await self.database()
        return await trio.to_thread.run_sync(self._schema, path, table)

    def _schema(self, path: Path, table: str) -> dict[str, Any]:
        conn = self._connect(path)
        try:
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
        finally:
            conn.close()

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
        query = await trio.to_thread.run_sync(self._open_query, path)
        stats, lock = self.stats, self._stats_lock
        with lock:
            stats.active += 1
            stats.started += 1
        started = time.perf_counter()
        completed = False
        try:
            cursor = await self._in_thread(query, _execute, query, sql, args)
            columns = [d[0] for d in cursor.description] if cursor.description else []
            yield {"columns": columns}
            offset = batches = 0
            while columns:
                rows = await self._in_thread(query, cursor.fetchmany, batchSize)
                if not rows:
                    break
                held = len(rows)
                with lock:
                    stats.rows_fetched += held
                    stats.rows_held += held
                    stats.max_rows_held = max(stats.max_rows_held, stats.rows_held)
                batches += 1
                try:
                    yield {"rows": rows, "offset": offset, "batch": batches}
                finally:
                    del rows  # the runtime has encoded it: drop our reference before the next fetch
                    with lock:
                        stats.rows_held -= held
                offset += held
                if held < batchSize:
                    break
            completed = True
            yield StreamEnd({"columns": columns, "rowCount": offset, "batches": batches,
                             "changes": 0 if columns else max(cursor.rowcount, 0),
                             "elapsedMs": round((time.perf_counter() - started) * 1000, 1)})
        except sqlite3.Error as exc:
            raise _sql_error(exc, query, sql) from None
        finally:
            if not completed:
                query.conn.interrupt()  # stops a worker thread still inside execute/fetchmany
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(query.close)
            with lock:
                stats.active -= 1
                if completed:
                    stats.completed += 1
                else:
                    stats.stopped += 1

    async def _in_thread(self, query: _Connection, fn, *args):
        # abandon_on_cancel: a cancel reaches the generator at once (its finally
        # interrupts SQLite); the abandoned thread then ends within milliseconds.
        return await trio.to_thread.run_sync(query.run, fn, *args, abandon_on_cancel=True)


def _execute(query: _Connection, sql: str, args: Any) -> sqlite3.Cursor:
    query.cursor = query.conn.cursor()
    query.cursor.execute(sql, args)
    return query.cursor


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _sql_error(exc: sqlite3.Error, query: _Connection, sql: str) -> OlaneError:
    message = str(exc)
    if query.denied or "not authorized" in message or "readonly database" in message:
        what = ", ".join(dict.fromkeys(query.denied)) or "a write"
        return OlaneError(ErrorCode.NOT_AUTHORIZED,
                          f"this node serves the database read-only and the statement needs {what}; "
                          "start the node with --allow-writes to allow it",
                          {"denied": query.denied, "sql": sql})
    if "database is locked" in message:
        return OlaneError(ErrorCode.INVALID_STATE, f"database is busy: {message}", {"sql": sql})
    return OlaneError(ErrorCode.INVALID_PARAMETERS, f"SQL error: {message}", {"sql": sql})
