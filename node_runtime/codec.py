"""Frame payload codecs: strict JSON toward anyone, msgpack between our own peers
(PROTOCOL.md section 9). The first byte of a payload tells which one it is."""
from __future__ import annotations

import json
from typing import Any

import msgpack
import orjson

from .errors import ErrorCode, OlaneError

JSON = "json"
MSGPACK = "msgpack"
CODECS = (JSON, MSGPACK)



def json_default(value: Any) -> Any:
    """bytes as base64 text (how JSON frames carry them); sets and tuples as lists."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        import base64

        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


_json_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=json_default)


def detect(payload: bytes) -> str:
    """`msgpack` when the payload starts like a msgpack map, else `json`."""
    if payload:
        b = payload[0]
        if 0x80 <= b <= 0x8F or b in (0xDE, 0xDF):
            return MSGPACK
    return JSON


_ORJSON_OPTS = orjson.OPT_NON_STR_KEYS


def encode(message: Any, codec: str = JSON) -> bytes:
    if codec == MSGPACK:
        return msgpack.packb(message, use_bin_type=True, default=_msgpack_default)
    try:  # orjson: ~5x faster than the standard library on the per-chunk path
        return orjson.dumps(message, default=json_default, option=_ORJSON_OPTS)
    except (orjson.JSONEncodeError, TypeError):  # e.g. integers beyond 64 bits
        return _json_encoder.encode(message).encode("utf-8")


def _msgpack_default(value: Any) -> Any:
    if isinstance(value, (set, frozenset)):
        return list(value)
    if isinstance(value, memoryview):
        return bytes(value)
    raise TypeError(f"{type(value).__name__} is not msgpack serializable")


def decode(payload: bytes) -> tuple[dict[str, Any], str]:
    """Decode one frame payload into (message, codec).

    Strict JSON first; JSON5 (which TypeScript nodes accept) as a fallback.
    Raises OlaneError 4009 for anything that is not an object.
    """
    codec = detect(payload)
    try:
        if codec == MSGPACK:
            message = msgpack.unpackb(payload, raw=False, strict_map_key=False)
        else:
            try:
                message = orjson.loads(payload)
            except orjson.JSONDecodeError:
                try:
                    message = json.loads(payload)  # big integers, NaN
                except ValueError:
                    message = _json5_loads(payload)
    except OlaneError:
        raise
    except Exception as exc:  # malformed input of any kind
        raise OlaneError(ErrorCode.INVALID_REQUEST, f"malformed {codec} frame: {exc}") from None
    if not isinstance(message, dict):
        raise OlaneError(ErrorCode.INVALID_REQUEST, f"a frame must hold an object, got {type(message).__name__}")
    return message, codec


def _json5_loads(payload: bytes) -> Any:
    import json5  # slow, and only for the rare peer that sends JSON5

    return json5.loads(payload.decode("utf-8"))
