"""Rows out of chunks, for the table view.

What counts as rows, chunk by chunk:
- `{columns: [...]}` sets the columns of positional rows (the sqlite tool's first chunk);
- `{rows: [[...], ...], ...}` is a batch: one row per element under those columns;
- a list is one row per element; an object whose only list-of-records value is under
  one key (`{records: [...], offset, ...}`, `{entries: [...]}`) is one row per record;
- any other object is one row, its keys the columns (new keys add columns).

Nothing is copied: per row-bearing chunk the model keeps the chunk's index, where its
rows live in the chunk's data and the number of its first row (three small arrays), so
a 500-row batch costs three entries. A row is found again by bisecting the row numbers.
Column widths come from a sample of rows (all of the first ones, a few of each later
batch) and grow when a wider row is drawn; a column is numeric when every sampled value
in it is a number.
"""
from __future__ import annotations

from array import array
from bisect import bisect_right
from typing import Any

from . import Source
from .cells import cell_text, is_number, sort_key
from .slice_sort import sort_in_slices

SAMPLE_ALL = 2_000  # rows measured in full before sampling
SAMPLE_PER_CHUNK = 20  # rows measured from each later chunk
MAX_WIDTH = 40  # a column is never drawn wider (Enter shows the whole record)
SCAN_BUDGET = 20_000  # chunks examined per sync (the rest at the next)
SORT_SLICE = 5_000  # rows of sorting work per step of `sort_steps` (a few ms)
FREE_SLICES = 10  # freeing is cheaper per element than sorting: this many slices' worth a step
SELF = "="  # the chunk's data is the row
ITSELF_LIST = "."  # the chunk's data is a list of rows


def _records_key(data: dict) -> str | None:
    """The one key of an object whose value is a list of records (objects or rows)."""
    found = None
    for key, value in data.items():
        if type(value) is list and value and type(value[0]) in (dict, list):
            if found is not None:
                return None  # two candidates: treat the object as one row
            found = key
    return found


def rows_in(data: Any) -> str | None:
    """Where a chunk's rows are: a key of the data, SELF, ITSELF_LIST, or None (no rows)."""
    t = type(data)
    if t is dict:
        if "rows" in data and type(data["rows"]) is list:
            return "rows"
        if "columns" in data and len(data) == 1:
            return None  # the sqlite header: columns only
        return _records_key(data) or SELF
    if t is list:
        return ITSELF_LIST
    return SELF if data is not None else None


def carries_rows(data: Any) -> bool:
    """True when a chunk's data looks like rows of a table (not just one object)."""
    if type(data) is dict:
        if type(data.get("columns")) is list:
            return True
        where = rows_in(data)
        return where is not None and where != SELF
    return type(data) is list and bool(data) and type(data[0]) in (dict, list)


class TableModel:
    """Rows and columns over a source; `sync()` takes in new chunks."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self.columns: list[str] = []
        self._column_of: dict[str, int] = {}
        self._positional: list[int] = []  # column number of each position in positional rows
        self.widths: list[int] = []
        self._numeric: list[int] = []  # per column: numbers sampled
        self._other: list[int] = []  # per column: non-number values sampled
        self._chunk = array("q")  # per row-bearing chunk: its receive index
        self._start = array("q")  # ... the number of its first row
        self._where: list[str] = []  # ... where its rows are in its data
        self.total = 0  # rows ever extracted (row numbers run 0 .. total-1)
        self._first = 0  # position in the arrays of the oldest chunk still held
        self._scanned = 0  # next chunk index to look at
        self.sampled = 0
        self.shapes = 0  # row-bearing chunks that are tables (not single objects)
        self.singles = 0  # row-bearing chunks that are one object
        self.version = 0
        self.sort_column: int | None = None
        self.descending = False
        self._order: array | None = None  # row numbers in sorted order (sorting on)
        self._sorted_total = 0  # rows present when the sort was made
        self.sorting: tuple | None = None  # (column, descending, fraction done) while sort_steps runs

    # -- taking in chunks ----------------------------------------------------------------

    def _column(self, name: str) -> int:
        index = self._column_of.get(name)
        if index is None:
            index = len(self.columns)
            self._column_of[name] = index
            self.columns.append(name)
            self.widths.append(min(MAX_WIDTH, len(name) + 2))  # room for the sort arrow
            self._numeric.append(0)
            self._other.append(0)
        return index

    def set_columns(self, names: list) -> None:
        self._positional = [self._column(str(n)) for n in names]

    def sync(self) -> bool:
        """Take in the chunks that arrived since the last call; True when anything changed."""
        source = self.source
        count = source.count
        changed = self._drop_old(source.first_held)
        start = max(self._scanned, source.first_held)
        stop = min(count, start + SCAN_BUDGET)
        for index in range(start, stop):
            data = source.data_at(index)
            if type(data) is dict:
                columns = data.get("columns")
                if type(columns) is list and (not self._positional or "rows" not in data):
                    self.set_columns(columns)
                    changed = True
            where = rows_in(data)
            if where is None:
                continue
            rows = self._rows(data, where)
            n = len(rows)
            if not n:
                continue
            if where == SELF:
                self.singles += 1
            else:
                self.shapes += 1
            self._chunk.append(index)
            self._start.append(self.total)
            self._where.append(where)
            self._learn(rows, n, where == SELF)
            self.total += n
            changed = True
        self._scanned = stop
        if changed:
            self.version += 1
        return changed

    def _drop_old(self, first_held: int) -> bool:
        """Forget chunks that left the ring (compacting the arrays now and then)."""
        chunks = self._chunk
        first = self._first
        while first < len(chunks) and chunks[first] < first_held:
            first += 1
        if first == self._first:
            return False
        self._first = first
        if first > 4096 and first * 2 > len(chunks):
            del self._chunk[:first], self._start[:first], self._where[:first]
            self._first = 0
        if self._order is not None:
            lowest = self.first_row
            self._order = array("q", (r for r in self._order if r >= lowest))
        return True

    @staticmethod
    def _rows(data: Any, where: str) -> Any:
        if where == SELF:
            return (data,)
        if where == ITSELF_LIST:
            return data
        rows = data.get(where)
        return rows if type(rows) is list else ()

    def _learn(self, rows, n: int, single: bool) -> None:
        """New columns from object rows; widths and number-ness from a sample."""
        take = n if self.sampled < SAMPLE_ALL else min(n, SAMPLE_PER_CHUNK)
        column = self._column
        for i in range(n):
            row = rows[i]
            t = type(row)
            if t is dict:
                if i < take:
                    for key, value in row.items():
                        self._measure(column(key), value)
                else:
                    for key in row:
                        if key not in self._column_of:
                            column(key)
            elif i < take:
                if t is list or t is tuple:
                    positional = self._positional
                    for pos, value in enumerate(row):
                        if pos >= len(positional):
                            positional.append(column(str(pos)))
                        self._measure(positional[pos], value)
                else:
                    self._measure(column("value"), row)
        self.sampled += take

    def _measure(self, col: int, value: Any) -> None:
        if value is None:
            return
        if is_number(value):
            self._numeric[col] += 1
        else:
            self._other[col] += 1
        width = len(cell_text(value))
        if width > self.widths[col]:
            self.widths[col] = min(MAX_WIDTH, width)

    # -- reading -------------------------------------------------------------------------------

    @property
    def first_row(self) -> int:
        """Number of the oldest row still held."""
        return self._start[self._first] if self._first < len(self._start) else self.total

    @property
    def row_count(self) -> int:
        return self.total - self.first_row

    @property
    def looks_like_table(self) -> bool:
        """Rows came as tables (batches, lists of records), not one object per chunk."""
        return self.shapes > 0 and self.shapes >= self.singles

    def numeric(self, col: int) -> bool:
        return self._numeric[col] > 0 and self._other[col] == 0

    def _locate(self, number: int) -> tuple[Any, Any] | None:
        """(the row, its chunk's receive index) for an absolute row number."""
        if number < self.first_row or number >= self.total:
            return None
        p = bisect_right(self._start, number, self._first) - 1
        index = self._chunk[p]
        data = self.source.data_at(index)
        if data is None:
            return None
        rows = self._rows(data, self._where[p])
        offset = number - self._start[p]
        return (rows[offset], index) if offset < len(rows) else None

    def row_number(self, display: int) -> int | None:
        """The absolute row number shown at a display position (0 = first shown)."""
        if display < 0 or display >= self.row_count:
            return None
        order = self._order
        if order is not None:
            if display < len(order):
                return order[display]
            return self._sorted_total + (display - len(order))  # newer than the sort: below, unsorted
        return self.first_row + display

    def row(self, display: int) -> Any:
        number = self.row_number(display)
        found = self._locate(number) if number is not None else None
        return found[0] if found is not None else None

    def chunk_of(self, display: int) -> int | None:
        """Receive index (0-based) of the chunk a displayed row came from."""
        number = self.row_number(display)
        found = self._locate(number) if number is not None else None
        return found[1] if found is not None else None

    def _position(self, col: int) -> int | None:
        """Where column `col` sits in positional rows (None: not among them)."""
        try:
            return self._positional.index(col)
        except ValueError:
            return None

    def cell(self, row: Any, col: int) -> Any:
        """The value of column `col` in a row (as returned by `row`)."""
        t = type(row)
        if t is dict:
            return row.get(self.columns[col])
        if t is list or t is tuple:
            pos = self._position(col)
            return row[pos] if pos is not None and pos < len(row) else None
        return row if self.columns[col] == "value" else None

    def cells(self, row: Any) -> list[Any]:
        """Every column's value of a row, in column order."""
        t = type(row)
        n = len(self.columns)
        if t is list or t is tuple:
            out: list[Any] = [None] * n
            positional = self._positional
            for pos, value in enumerate(row[:len(positional)]):
                out[positional[pos]] = value
            return out
        if t is dict:
            columns = self.columns
            return [row.get(columns[i]) for i in range(n)]
        return [row if c == "value" else None for c in self.columns]

    def record(self, display: int) -> Any:
        """A row as one value: an object under the column names (for the value view)."""
        row = self.row(display)
        if type(row) in (list, tuple):
            return {name: value for name, value in zip(self.columns, self.cells(row))}
        return row

    def widen(self, col: int, text: str) -> None:
        if len(text) > self.widths[col]:
            self.widths[col] = min(MAX_WIDTH, len(text))

    # -- sorting -----------------------------------------------------------------------------

    def sort(self, col: int | None, descending: bool = False) -> None:
        """Sort the rows held by a column (None: receive order), all at once. Rows that
        arrive later are listed below the sorted ones until the next sort (`unsorted_below`)."""
        for _ in self.sort_steps(col, descending):
            pass

    def sort_steps(self, col: int | None, descending: bool = False, rows_per_step: int = SORT_SLICE):
        """The same sort in slices: a generator doing about `rows_per_step` rows of work per
        step, so a screen can keep answering between steps (a 1M-row sort in one go held
        the loop ~2.5 s). The order in use changes only at the last step; `sorting` says
        (column, descending, fraction done) meanwhile."""
        if col is None:
            self.sort_column, self.descending, self._order = None, descending, None
            self.sorting = None
            self.version += 1
            return
        self.sorting = (col, descending, 0.0)
        try:
            yield from self._sort_in_slices(col, descending, max(1, rows_per_step))
        finally:
            self.sorting = None

    def _sort_in_slices(self, col: int, descending: bool, step: int):
        values: list[Any] = []  # (sorted inside collector.paused(): no young pass walks it)
        numbers = array("q")  # not a list: the collector's young passes never walk an array
        name = self.columns[col]
        pos = self._position(col)
        total = max(1, self.row_count)
        sorted_total = self.total  # rows that arrive while sorting stay below, unsorted
        first = self._first  # the arrays as they are now (new chunks and compaction change them)
        held = zip(self._chunk[first:], self._start[first:], self._where[first:])
        done = 0
        for index, base, where in held:  # 1. the column's values, chunk by chunk
            data = self.source.data_at(index)
            if data is None:
                continue
            rows = self._rows(data, where)
            numbers.extend(range(base, base + len(rows)))
            if pos is not None and rows and type(rows[0]) is list and all(len(r) > pos for r in rows):
                values.extend([r[pos] for r in rows])  # a batch of positional rows: the fast path
            else:
                for row in rows:
                    t = type(row)
                    if (t is list or t is tuple) and pos is not None and pos < len(row):
                        values.append(row[pos])
                    elif t is dict:
                        values.append(row.get(name))
                    else:
                        values.append(self.cell(row, col))
            done += len(rows)
            if done >= step:
                self.sorting = (col, descending, 0.2 * len(values) / total)
                done = 0
                yield
        n = len(values)
        lowest = self.first_row
        keys: list[Any] | None = None
        try:  # one type throughout (the usual case): compare the values themselves
            order = yield from self._ordered(values, numbers, col, descending, step)
        except TypeError:  # mixed types or missing values: numbers, strings, others, missing
            keys = []
            for i in range(0, n, step):
                keys.extend([sort_key(v) for v in values[i:i + step]])
                yield
            order = yield from self._ordered(keys, numbers, col, descending, step)
        # a million objects each: freed a slice per step (at once, ~35 ms with the loop held)
        yield from _free_in_slices(values, step)
        if keys is not None:
            yield from _free_in_slices(keys, step)
        values = numbers = keys = None
        yield
        if self.first_row != lowest:  # rows left the ring meanwhile
            first = self.first_row
            order = array("q", (r for r in order if r >= first))
        self.sort_column, self.descending = col, descending
        self._order = order
        self._sorted_total = sorted_total
        self.version += 1

    def _ordered(self, keys: list, numbers: array, col: int, descending: bool, step: int):
        """Row numbers in the order of `keys`, a step of work per yield (slice_sort.py).
        Raises TypeError on keys that do not compare."""
        job = sort_in_slices(keys, step, descending)
        try:
            while True:
                self.sorting = (col, descending, 0.2 + 0.75 * next(job))
                yield
        except StopIteration as done:
            ordering = done.value
        order = array("q")
        for i in range(0, len(ordering), step):
            order.extend([numbers[k] for k in ordering[i:i + step]])
            yield
        yield from _free_in_slices(ordering, step)  # a million ints
        return order

    @property
    def unsorted_below(self) -> int:
        return 0 if self._order is None else self.total - self._sorted_total


def _free_in_slices(items: list, step: int):
    """Empty `items` from the end, FREE_SLICES steps' worth of elements per yield."""
    size = max(1, step * FREE_SLICES)
    while items:
        del items[-size:]
        yield
