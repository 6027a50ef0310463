"""Frame payload codecs: strict JSON toward anyone, msgpack between our own peers
(PROTOCOL.md section 9). The first byte of a payload tells which one it is.

Decoding is strict: UTF-8 without lone surrogates, no NaN, nesting bounded
(orjson and msgpack stop at about 1,000 levels; `check_nesting` applies a
node's own `Limits.max_nesting`). Every failure, decoding or encoding, is an
`OlaneError` (4009 for what came in, 4008 for what we could not write), never
another exception: one bad message fails only its own request.

JSON5, which TypeScript nodes accept and one recorded frame uses, is parsed
only by `decode_json5`, for small payloads: the json5 package is pure Python
(a 74 KB frame took 2.7 s), so the server runs it in a worker thread.
"""
from __future__ import annotations

import base64
import json
import threading
from typing import Any

import msgpack
import orjson

from .errors import ErrorCode, OlaneError

JSON = "json"
MSGPACK = "msgpack"
CODECS = (JSON, MSGPACK)

#: nesting a message may have before it is refused (Limits.max_nesting overrides)
DEFAULT_MAX_NESTING = 64
#: largest payload parsed as JSON5 (Limits.max_json5_bytes overrides)
DEFAULT_MAX_JSON5_BYTES = 1024


def json_default(value: Any) -> Any:
    """bytes as base64 text (how JSON frames carry them); sets and tuples as lists."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


# only for integers beyond 64 bits, which orjson cannot write
_big_int_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=json_default,
                                    allow_nan=False)


def detect(payload: bytes) -> str:
    """`msgpack` when the payload starts like a msgpack map, else `json`."""
    if payload:
        b = payload[0]
        if 0x80 <= b <= 0x8F or b in (0xDE, 0xDF):
            return MSGPACK
    return JSON


_ORJSON_OPTS = orjson.OPT_NON_STR_KEYS


def encode(message: Any, codec: str = JSON) -> bytes:
    """Encode one message; OlaneError 4008 when it cannot be (too deep, a lone
    surrogate, a type neither codec knows)."""
    if codec == MSGPACK:
        return encode_msgpack_with(msgpack_packer(), message)
    return encode_json(message)


def encode_json(message: Any) -> bytes:
    try:  # orjson: ~5x faster than the standard library on the per-chunk path
        return orjson.dumps(message, default=json_default, option=_ORJSON_OPTS)
    except TypeError as exc:
        if "64-bit" in str(exc):
            try:
                return _big_int_encoder.encode(message).encode("utf-8")
            except Exception as exc2:
                raise _encode_error(JSON, exc2) from None
        raise _encode_error(JSON, exc) from None
    except Exception as exc:  # RecursionError, UnicodeEncodeError, TypeError, ValueError, ...
        raise _encode_error(JSON, exc) from None


def encode_msgpack_with(packer: "msgpack.Packer", message: Any) -> bytes:
    """msgpack bytes from a reused Packer (half the cost of `msgpack.packb`,
    same bytes; the Packer resets itself when packing fails)."""
    try:
        return packer.pack(message)
    except Exception as exc:
        raise _encode_error(MSGPACK, exc) from None


def _encode_error(codec: str, exc: BaseException) -> OlaneError:
    return OlaneError(ErrorCode.INVALID_RESPONSE, f"could not encode the message as {codec}: "
                                                  f"{type(exc).__name__}: {exc}"[:300])


def fast_encoder(codec: str):
    """A function encoding one value in `codec` at the least cost per call, which
    may raise anything: on any exception, encode the value again with `encode`
    (or `encode_json` / `encode_msgpack_with`) for the real answer (the 64-bit
    fallback, or the 4008 error)."""
    if codec == MSGPACK:
        return msgpack_packer().pack
    # orjson.dumps with no keywords: their parsing was a third of the call (0.18 -> 0.08 us
    # for a small dict). What it writes is what `encode_json` writes; what it cannot write
    # without our `default` and options (bytes, sets, non-string keys, integers beyond 64 bits)
    # raises, and `encode_json` writes it instead
    return orjson.dumps


_local = threading.local()


def msgpack_packer() -> "msgpack.Packer":
    """This thread's reusable Packer (Packer.pack is not safe across threads)."""
    try:
        return _local.packer
    except AttributeError:
        packer = _local.packer = msgpack.Packer(use_bin_type=True, default=_msgpack_default)
        return packer


def _msgpack_default(value: Any) -> Any:
    if isinstance(value, (set, frozenset)):
        return list(value)
    if isinstance(value, memoryview):
        return bytes(value)
    raise TypeError(f"{type(value).__name__} is not msgpack serializable")


class NotStrictJson(OlaneError):
    """The payload is not strict JSON (it may still be JSON5)."""


def decode_answer(payload: bytes) -> dict[str, Any]:
    """The client's per-frame decode: `decode(payload)[0]`, with the common case
    (a well-formed JSON or msgpack object) first; anything else goes through
    `decode` for its exact error."""
    b = payload[0] if payload else 0
    try:
        if b == 0x7B:  # "{"
            message = orjson.loads(payload)
        elif 0x80 <= b <= 0x8F or b == 0xDE or b == 0xDF:
            message = msgpack.unpackb(payload, raw=False, strict_map_key=False)
        else:
            return decode(payload)[0]
    except Exception:
        return decode(payload)[0]
    if type(message) is dict:
        return message
    return decode(payload)[0]


def decode(payload: bytes, *, json5: bool = False) -> tuple[dict[str, Any], str]:
    """Decode one frame payload into (message, codec); OlaneError 4009 for
    anything that is not a strict JSON or msgpack object (NotStrictJson when it
    fails as JSON). `json5=True` also tries JSON5 here, in this thread."""
    codec = detect(payload)
    try:
        if codec == MSGPACK:
            message = msgpack.unpackb(payload, raw=False, strict_map_key=False)
        else:
            message = orjson.loads(payload)
    except Exception as exc:  # malformed input of any kind
        if codec == JSON:
            if json5:
                return decode_json5(payload), JSON
            raise NotStrictJson(ErrorCode.INVALID_REQUEST, f"malformed json frame: {exc}"[:300]) from None
        raise OlaneError(ErrorCode.INVALID_REQUEST, f"malformed {codec} frame: {type(exc).__name__} {exc}"[:300]) from None
    if not isinstance(message, dict):
        raise OlaneError(ErrorCode.INVALID_REQUEST, f"a frame must hold an object, got {type(message).__name__}")
    return message, codec


def decode_json5(payload: bytes, max_bytes: int = DEFAULT_MAX_JSON5_BYTES,
                 max_nesting: int = DEFAULT_MAX_NESTING) -> dict[str, Any]:
    """A small JSON5 payload -> object (strict UTF-8, no lone surrogates, bounded nesting)."""
    if len(payload) > max_bytes:
        raise OlaneError(ErrorCode.INVALID_REQUEST, f"not strict JSON, and at {len(payload)} bytes too large to "
                                                    f"read as JSON5 (limit {max_bytes})")
    import json5  # slow, and only for the rare peer that sends JSON5

    try:
        message = json5.loads(payload.decode("utf-8"))
    except Exception as exc:
        raise OlaneError(ErrorCode.INVALID_REQUEST, f"malformed json frame: {type(exc).__name__} {exc}"[:300]) from None
    if not isinstance(message, dict):
        raise OlaneError(ErrorCode.INVALID_REQUEST, f"a frame must hold an object, got {type(message).__name__}")
    check_nesting(message, max_nesting, strings=True)
    return message


def check_nesting(value: Any, limit: int, *, strings: bool = False) -> None:
    """OlaneError 4009 when `value` nests deeper than `limit` (and, with
    `strings`, when a string holds a lone surrogate). Iterative: no recursion
    limit to hit."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if type(item) is dict:
            if depth > limit:
                raise OlaneError(ErrorCode.INVALID_REQUEST, f"message nests deeper than {limit} levels")
            for k, v in item.items():
                if strings and type(k) is str:
                    _check_text(k)
                stack.append((v, depth + 1))
        elif type(item) is list:
            if depth > limit:
                raise OlaneError(ErrorCode.INVALID_REQUEST, f"message nests deeper than {limit} levels")
            stack.extend((v, depth + 1) for v in item)
        elif strings and type(item) is str:
            _check_text(item)


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise OlaneError(ErrorCode.INVALID_REQUEST, "a string holds a lone UTF-16 surrogate (not valid UTF-8)") from None
