"""The tools `olane node` serves: the seed's streaming examples (`demo`), a SQLite
database (`sqlite`), a folder of files (`files`) and the machine's live figures
(`metrics`). Never imports textual: nodes run headless."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from node_runtime import Address, Tool

from .demo import DemoTool
from .files import FilesTool
from .metrics import MetricsTool
from .sqlite_tool import SqliteTool

TOOL_NAMES = ("demo", "sqlite", "files", "metrics")

__all__ = ["TOOL_NAMES", "DemoTool", "FilesTool", "MetricsTool", "SqliteTool", "build_tools"]


def build_tools(
    names: Iterable[str] | None = None,
    *,
    address: "str | Address | None" = None,
    files_root: "str | Path | None" = None,
    sqlite_db: "str | Path | None" = None,
    allow_writes: bool = False,
    sqlite_timeout: float = 30.0,
) -> list[Tool]:
    """The Tool instances for `names` (None: all of TOOL_NAMES), in the order given.

    Addresses: each tool's own (`o://demo` ...) when `address` is None; with one
    tool, `address` is that tool's; with several, each is `<address>/<name>`.
    `sqlite_timeout`: seconds one SQLite statement may run (then 4017 TIMEOUT).
    Raises ValueError for an unknown name (the message lists the valid ones),
    an empty list, or an address that is not `o://...`.
    """
    wanted = list(TOOL_NAMES if names is None else names)
    unknown = [n for n in wanted if n not in TOOL_NAMES]
    if unknown:
        raise ValueError(f"unknown tool{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                         f"valid names: {', '.join(TOOL_NAMES)}")
    wanted = list(dict.fromkeys(wanted))  # a name given twice is served once
    if not wanted:
        raise ValueError(f"no tools named; valid names: {', '.join(TOOL_NAMES)}")
    parent = Address.parse(address) if address is not None else None

    def address_of(name: str) -> Address | None:
        if parent is None:
            return None
        return parent if len(wanted) == 1 else parent.child(name)

    makers = {
        "demo": lambda a: DemoTool(a),
        "sqlite": lambda a: SqliteTool(a, db_path=sqlite_db, allow_writes=allow_writes,
                                       statement_timeout=sqlite_timeout),
        "files": lambda a: FilesTool(a, root=files_root),
        "metrics": lambda a: MetricsTool(a),
    }
    return [makers[name](address_of(name)) for name in wanted]
