"""Turning a JSON value into the short text of one cell, and telling bytes apart:
UTF-8 text is shown as text, anything else as a size (a hex dump in the value view)."""
from __future__ import annotations

import base64
import binascii
import re
from typing import Any

import orjson

CELL_LIMIT = 200  # characters of one cell's text kept (the full record is one key away)

_BASE64 = re.compile(rb"^[A-Za-z0-9+/]*={0,2}$")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # not text (tab, newline, CR are)


def bytes_text(value: bytes | bytearray | memoryview) -> str | None:
    """The bytes as text when they are valid UTF-8 without control characters, else None."""
    try:
        text = bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        return None
    return None if _CONTROL.search(text) else text


def base64_bytes(text: str) -> bytes | None:
    """The bytes a string stands for when it is strict base64 (what a JSON client gets for
    bytes, e.g. files `read`), else None. Short or odd-length strings are left alone."""
    if len(text) < 8 or len(text) % 4:
        return None
    raw = text.encode("ascii", "ignore")
    if len(raw) != len(text) or not _BASE64.match(raw):
        return None
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        return None


def hex_dump(data: bytes, limit: int = 4096) -> str:
    """Classic 16-bytes-a-line dump (offset, hex, ASCII), the first `limit` bytes."""
    lines = []
    for offset in range(0, min(len(data), limit), 16):
        row = data[offset:offset + 16]
        hexes = " ".join(f"{b:02x}" for b in row)
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in row)
        lines.append(f"{offset:08x}  {hexes:<47}  {text}")
    if len(data) > limit:
        lines.append(f"… {len(data) - limit:,} more bytes")
    return "\n".join(lines)


def json_default(value: Any) -> Any:
    """orjson `default`: bytes become their text when UTF-8, else `<N bytes>`."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        text = bytes_text(value)
        return text if text is not None else f"<{len(value)} bytes>"
    return str(value)


def compact(value: Any) -> str:
    """One-line JSON of a value (bytes as text when they decode)."""
    try:
        return orjson.dumps(value, default=json_default).decode("utf-8", "replace")
    except Exception:
        return repr(value)


SIGNIFICANT = 12  # digits a view shows of a float; the raw JSON view shows it exact


def float_text(value: float) -> str:
    """A float as views show it: at most 12 significant digits, so a computed
    55.00000000000001 reads 55.0 (the noise of binary fractions is in the 16th-17th
    digit); still a float to the eye (55.0, not 55). Exact in the raw JSON view."""
    text = repr(value)
    if sum(ch.isdigit() for ch in text.split("e")[0]) <= SIGNIFICANT and abs(value) < 1e15:
        return text
    text = f"{value:.{SIGNIFICANT}g}"
    if not any(ch in text for ch in ".en"):  # inf and nan keep their names
        text += ".0"
    return text


def cell_text(value: Any) -> str:
    """What a table or fields cell shows: strings bare, numbers as they are, the rest compact JSON."""
    if value is None:
        return ""
    t = type(value)
    if t is str:
        text = value
    elif t is int or t is float:
        return str(value) if t is int else float_text(value)
    elif t is bool:
        return "true" if value else "false"
    elif isinstance(value, (bytes, bytearray, memoryview)):
        text = bytes_text(value)
        text = f"<{len(value)} bytes>" if text is None else text
    else:
        text = compact(value)
    if len(text) > CELL_LIMIT:
        text = text[:CELL_LIMIT]
    return text.replace("\n", "⏎").replace("\t", " ") if ("\n" in text or "\t" in text) else text


def is_number(value: Any) -> bool:
    t = type(value)
    return t is int or t is float


def sort_key(value: Any) -> tuple:
    """Numbers, then strings, then everything else, then missing values."""
    t = type(value)
    if t is int or t is float:
        return (0, value, "")
    if t is str:
        return (1, 0, value)
    if value is None:
        return (3, 0, "")
    if t is bool:
        return (0, int(value), "")
    return (2, 0, compact(value))
