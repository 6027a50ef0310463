"""`olane run NAME`: a saved call (console/core/collections.py) resolved to what
`olane call` / `olane stream` need, with its named target looked up in the
console's settings. Plain functions; the CLI runs the result."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from console.core import collections as C
from console.core.config import Settings


class RunError(ValueError):
    """Why a saved call cannot be run (the CLI exits 2 with it)."""


@dataclass
class Resolved:
    multiaddr: str
    address: str | None
    method: str
    params: dict[str, Any]
    stream: bool
    name: str


def resolve_target(text: str) -> tuple[str, str | None]:
    """A named target (saved in the console's settings) -> (multiaddr, address); else as given."""
    return Settings.load().resolve_target(text)


def resolve_saved(name: str, target: str | None = None, params: str | None = None) -> Resolved:
    try:
        call = C.load(name)
    except C.CollectionError as exc:
        raise RunError(str(exc)) from None
    where = target or call.target
    if not where:
        raise RunError(f"{call.name} names no target (it was saved from the embedded node): give one with --target")
    multiaddr, named_address = resolve_target(where)
    if "/p2p/" not in multiaddr:
        raise RunError(f"{where!r} is neither a named target nor a multiaddr ending in /p2p/<peer id>")
    values = dict(call.params)
    if params:
        try:
            extra = json.loads(params)
        except ValueError as exc:
            raise RunError(f"--params is not JSON: {exc}") from None
        if not isinstance(extra, dict):
            raise RunError("--params must be a JSON object")
        values.update(extra)
    return Resolved(multiaddr, call.address or named_address, call.method, values, call.stream, call.name)


def list_saved() -> tuple[list[C.SavedCall], list[str]]:
    return C.load_all()
