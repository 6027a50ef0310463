"""One value seen whole (a chunk, a row, a unary result), for the value view: the
children of a node, a one-line summary, bytes as text or a hex dump, and whether a
value is really a list of records (then it is shown as a table)."""
from __future__ import annotations

from typing import Any

from .cells import base64_bytes, bytes_text, compact, float_text, hex_dump
from .rows import _records_key

BYTES = (bytes, bytearray, memoryview)


def is_container(value: Any) -> bool:
    return isinstance(value, (dict, list, tuple)) and bool(value)


def children(value: Any) -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        return [(str(k), v) for k, v in value.items()]
    if isinstance(value, (list, tuple)):
        return [(str(i), v) for i, v in enumerate(value)]
    return []


def size_text(n: int) -> str:
    return f"{n:,} byte{'s' if n != 1 else ''}"


def describe_bytes(data: bytes) -> tuple[str, str]:
    """("text", the text) when UTF-8, else ("hex", a hex dump)."""
    text = bytes_text(data)
    if text is not None:
        return "text", text
    return "hex", hex_dump(bytes(data))


def decoded_string(value: str) -> tuple[bytes, str, str] | None:
    """A base64 string (bytes sent to a JSON client) as (bytes, kind, shown), else None."""
    raw = base64_bytes(value)
    if raw is None:
        return None
    kind, shown = describe_bytes(raw)
    return raw, kind, shown


def summary(value: Any, limit: int = 120) -> str:
    """A node's one-line label: scalars as JSON, containers by size."""
    if isinstance(value, dict):
        return f"{{{len(value):,} key{'s' if len(value) != 1 else ''}}}"
    if isinstance(value, (list, tuple)):
        return f"[{len(value):,} item{'s' if len(value) != 1 else ''}]"
    if isinstance(value, BYTES):
        kind, shown = describe_bytes(value)
        head = f"<{size_text(len(value))}, {'UTF-8 text' if kind == 'text' else 'binary'}>"
        return head
    if type(value) is float:  # the 12 significant digits of the table and fields views
        return float_text(value)
    text = compact(value)
    return text if len(text) <= limit else text[:limit] + "…"


def records_of(value: Any) -> list | None:
    """The records when a value is a list of records (or an object holding exactly one
    list of records beside scalars, like sqlite `tables` or files `list`), else None."""
    if isinstance(value, list):
        return value if value and all(isinstance(v, dict) for v in value[:50]) else None
    if isinstance(value, dict):
        key = _records_key(value)
        if key is not None and all(isinstance(v, dict) for v in value[key][:50]):
            return value[key]
    return None


def to_json_text(value: Any) -> str:
    """The value as pretty JSON (what `copy` puts on the clipboard)."""
    import json

    from .cells import json_default

    if isinstance(value, BYTES):
        text = bytes_text(value)
        return text if text is not None else bytes(value).hex()
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False, default=json_default)
