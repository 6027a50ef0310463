"""View models: what the table, fields, chart and value views show, computed from a
StreamRecord (or one unary value) without Textual and without copying chunk data.
Each model is brought up to date by `sync()` (called by the screen's fixed-rate
refresh, never per chunk) and only looks at chunks it has not seen yet."""
from __future__ import annotations

from typing import Any, Protocol


class Source(Protocol):
    """What a view model reads: chunk data by 0-based receive index."""

    @property
    def count(self) -> int: ...  # chunks received so far

    @property
    def first_held(self) -> int: ...  # the oldest index still readable

    def data_at(self, index: int) -> Any: ...


class ValueSource:
    """One value (a unary result, a chunk, a row) seen as a one-chunk source."""

    def __init__(self, value: Any) -> None:
        self.value = value
        self.count = 1
        self.first_held = 0

    def data_at(self, index: int) -> Any:
        return self.value if index == 0 else None
