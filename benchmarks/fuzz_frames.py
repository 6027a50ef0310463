"""Hostile frames for an olane node, and the code that throws them at one.

Shared by the fuzz test (`tests/test_fuzz.py`, driven by hypothesis) and `olane bench --soak`
(driven by a seeded `random.Random`, fast enough for 100,000 frames). Every generator draws
through a `Chooser`: `RandomChooser(seed)`, or `HypothesisChooser(data)` (hypothesis' `st.data()`;
hypothesis is imported only there). The test uses `hypothesis_batch`: hypothesis picks each frame's
generator and seed, which keeps a 100-frame example to ~200 draws.

A generated item is a `Fuzzed`: the exact bytes for the stream (length prefix included, or a
broken one) and whether the framing is still in step afterwards (`intact`): a frame after an
intact item is read as a frame, so a ping pipelined after it must be answered. Kinds:

- `json.*`: route envelopes and bare requests with one field of a wrong type (every envelope field),
  non-object frames, JSON5, UTF-16, huge ids, big numbers, NaN, random JSON values;
- `nest.*`: 100 .. 100,000 levels of `[` or `{"a":` in `id`, `params._connectionId`, payload params, the
  frame itself; msgpack arrays/maps nested as deep;
- `utf8.*`: lone surrogates as raw bytes (`"x\\xed\\xa0\\x80"`) and as `\\ud800` escapes, in every
  string field; invalid, overlong and truncated UTF-8;
- `msgpack.*`: envelopes as msgpack, with bytes / ext / non-string keys and ids, truncated maps;
- `garbage.*`: random bytes in a well-formed frame;
- `frame.*` (not intact): truncated frames, 11-byte varints, lengths over the node's 16 MiB limit,
  and harmless oddities that keep framing (empty frame, over-long varint of a small length).
"""
from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import msgpack

from node_runtime.framing import encode_varint, frame

MIB = 1024 * 1024

#: the node's default frame limit (node_runtime.Limits.max_frame_bytes)
NODE_MAX_FRAME = 16 * MIB

#: the envelope fields a wrong type can go into
ENVELOPE_FIELDS = ("id", "method", "params", "params.address", "params.payload", "payload.method",
                   "payload.params", "params._connectionId", "params._isStreaming", "params._callerAddress",
                   "payload.params._isStreaming", "payload.id", "jsonrpc")

#: string fields a bad string (lone surrogate, huge, nested) goes into
STRING_FIELDS = ("id", "method", "params.address", "payload.method", "params._connectionId",
                 "params._callerAddress", "payload.params.text", "payload.params.<key>", "payload.params.tool")

#: nesting depths around the limits that matter (orjson: 254 to encode, 1024 to decode; Python's recursion: ~1000)
DEPTHS = (100, 254, 255, 256, 500, 998, 999, 1000, 1001, 1023, 1024, 1025, 2000, 5000, 100_000)

#: methods a fuzzed request names: real ones (with small counts, so nothing floods), built-ins, nonsense
METHODS = ("ping", "get_items", "stream_items", "stream_text", "stream_query", "stream_progress",
           "stream_with_error", "handshake", "identify", "hello_world", "get_metrics", "notify", "stop",
           "route", "nope", "", "_tool_ping", "__init__", "__class__", "tool_ping", "PING", "ping\x00")

ADDRESSES = ("o://demo", "o://demo/", "o://nobody", "o://leader", "o://registry", "o://reuse", "o://", "",
             "demo", "/o/demo", "o://demo/../demo", "o://" + "a/" * 300, "o://démo")

LONE_SURROGATES_RAW = (b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xed\xb0\x80", b"\xed\xa0\x80\xed\xb0\x80")
LONE_SURROGATE_ESCAPES = ("\\ud800", "\\udfff", "\\udc00", "\\ud83d", "\\ud800\\u0041")
BAD_UTF8 = (b"\xff", b"\xfe", b"\xc0\x80", b"\xc1\xbf", b"\xe2\x82", b"\xf0\x9f\x98", b"\xf4\x90\x80\x80",
            b"\x80", b"\xf8\x88\x80\x80\x80")


# --- choosers ------------------------------------------------------------------------------


class Chooser:
    """Where generators get their randomness."""

    def integer(self, lo: int, hi: int) -> int:  # inclusive
        raise NotImplementedError

    def choice(self, options: Sequence[Any]) -> Any:
        return options[self.integer(0, len(options) - 1)]

    def boolean(self) -> bool:
        return self.integer(0, 1) == 1

    def binary(self, lo: int, hi: int) -> bytes:
        raise NotImplementedError


class RandomChooser(Chooser):
    def __init__(self, seed: int | str = 0) -> None:
        self.rng = random.Random(seed)

    def integer(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)

    def binary(self, lo: int, hi: int) -> bytes:
        return self.rng.randbytes(self.rng.randint(lo, hi))


class HypothesisChooser(Chooser):
    """Draws through hypothesis (`st.data()`), so failures are reproducible and shrinkable."""

    _strategies: dict[Any, Any] = {}  # building a strategy costs more than drawing from it: build each once

    def __init__(self, data) -> None:
        from hypothesis import strategies as st

        self._st = st
        self.data = data

    def _strategy(self, key: Any, build: Callable[[], Any]) -> Any:
        strategy = self._strategies.get(key)
        if strategy is None:
            strategy = self._strategies[key] = build()
        return strategy

    def integer(self, lo: int, hi: int) -> int:
        return self.data.draw(self._strategy(("i", lo, hi), lambda: self._st.integers(lo, hi)))

    def choice(self, options: Sequence[Any]) -> Any:
        # an index, not sampled_from: options may hold values hypothesis would compare (NaN) or hash
        return options[self.integer(0, len(options) - 1)]

    def binary(self, lo: int, hi: int) -> bytes:
        return self.data.draw(self._strategy(("b", lo, hi), lambda: self._st.binary(min_size=lo, max_size=hi)))


# --- what is generated -----------------------------------------------------------------------


@dataclass(frozen=True)
class Fuzzed:
    kind: str
    wire: bytes  # what goes on the stream, length prefix included
    intact: bool = True  # framing still in step after it

    def describe(self, limit: int = 160) -> str:
        """`kind: <the first bytes>` for reports; long runs are shown once with a count."""
        return f"{self.kind} ({len(self.wire):,} bytes): {preview(self.wire, limit)}"


def preview(data: bytes, limit: int = 160) -> str:
    out: list[str] = []
    i = 0
    n = len(data)
    while i < n and sum(map(len, out)) < limit:
        j = i
        while j < n and data[j] == data[i]:
            j += 1
        run = j - i
        piece = repr(data[i:i + 1])[2:-1]
        out.append(piece if run < 8 else f"{piece}*{run}")
        if run < 8:
            j = i + 1
        i = j
    text = "".join(out)
    return text if i >= n else text + f"... (+{n - i:,} bytes)"


def _j(value: Any) -> bytes:
    """JSON text of a plain value (what a strict peer would send)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=True).encode("utf-8", "surrogatepass")


def envelope(method: str = "ping", params: dict | None = None, req_id: Any = "f-1", address: str = "o://demo",
             connection_id: Any = "fuzz-conn", streaming: Any = False) -> dict[str, Any]:
    """A well-formed route envelope (PROTOCOL.md section 5)."""
    payload_params = dict(params or {})
    return {"jsonrpc": "2.0", "id": req_id, "method": "route",
            "params": {"_connectionId": connection_id, "_requestMethod": "route", "_callerAddress": "o://fuzz",
                       "_isStreaming": streaming, "address": address,
                       "payload": {"method": method, "params": payload_params}}}


def ping_frame(req_id: str) -> bytes:
    """A valid ping envelope, framed."""
    return frame(_j(envelope("ping", {}, req_id)))


def _set(message: dict, path: str, value: Any) -> None:
    """Put `value` at a dotted path of an envelope (`payload.x` = `params.payload.x`)."""
    parts = path.split(".")
    if parts[0] == "payload":
        parts = ["params", *parts]
    target = message
    for p in parts[:-1]:
        nxt = target.get(p)
        if not isinstance(nxt, dict):
            nxt = {}
            target[p] = nxt
        target = nxt
    target[parts[-1]] = value


def _placeholder_path(path: str, key: str) -> str:
    return path.replace("<key>", key)


_WRONG_TYPE_VALUES: tuple[Any, ...] = (
    None, True, False, 0, -1, 1.5, 2 ** 63, -(2 ** 63) - 1, 2 ** 64, 10 ** 30, float("nan"), float("inf"),
    "", "x", [], [1, 2], ["ping"], {}, {"a": 1}, {"method": "ping"}, [[[]]], "route", "o://demo",
)


def _small_value(ch: Chooser, depth: int = 0) -> Any:
    """A random JSON value, small and shallow."""
    kind = ch.integer(0, 9 if depth < 3 else 5)
    if kind == 0:
        return None
    if kind == 1:
        return ch.boolean()
    if kind == 2:
        return ch.choice((0, 1, -1, 3, 10, 2 ** 31, 2 ** 53 + 1, 2 ** 63 - 1, -(2 ** 63), 2 ** 64, 10 ** 100))
    if kind == 3:
        return ch.choice((0.0, -0.0, 0.5, 1e308, -1e-308, 3.14))
    if kind in (4, 5):
        return ch.binary(0, 12).decode("latin-1")
    if kind in (6, 7):
        return [_small_value(ch, depth + 1) for _ in range(ch.integer(0, 3))]
    return {ch.choice(("count", "delayMs", "text", "a", "", "_isStreaming", "__proto__", "constructor")):
            _small_value(ch, depth + 1) for _ in range(ch.integer(0, 3))}


def _method_params(ch: Chooser) -> dict[str, Any]:
    """Parameters for the demo methods: mostly small, sometimes of wrong type or out of range."""
    params: dict[str, Any] = {}
    keys = ("count", "delayMs", "text", "chunkSize", "failAt", "query", "total", "batchSize", "taskName",
            "totalSteps", "tool", "_isStreaming", "_trace", "_auth", "_connectionId", "_requestMethod")
    # one draw picks the keys (each with probability 1/4): draws are what hypothesis charges for
    mask = ch.integer(0, 4 ** len(keys) - 1)
    for n, key in enumerate(keys):
        if (mask >> (2 * n)) & 3 == 0:
            if key in ("count", "total", "totalSteps", "batchSize", "chunkSize", "failAt"):
                params[key] = ch.choice((0, 1, 3, -1, -(2 ** 63), 2 ** 64, 10 ** 30, 1.5, "3", None, [3], {"n": 3},
                                         True, float("nan")))
            elif key == "delayMs":
                params[key] = ch.choice((0, 1, 5, -1, 10 ** 12, 2.5, "0", None, []))
            else:
                params[key] = _small_value(ch)
    return params


def _json_request(ch: Chooser, req_id: Any) -> dict[str, Any]:
    method = ch.choice(METHODS)
    if ch.integer(0, 4) == 0:  # a bare request, as the last hop of a routed call receives
        return {"jsonrpc": "2.0", "id": req_id, "method": method, "params": _method_params(ch)}
    return envelope(method, _method_params(ch), req_id, ch.choice(ADDRESSES) if ch.integer(0, 3) == 0 else "o://demo",
                    streaming=ch.choice((False, True)))


def _id(ch: Chooser) -> str:
    return f"fz-{ch.integer(0, 10 ** 9)}"


# --- JSON ---------------------------------------------------------------------------------------


def gen_json_wrong_type(ch: Chooser) -> Fuzzed:
    msg = _json_request(ch, _id(ch))
    path = ch.choice(ENVELOPE_FIELDS)
    value = ch.choice(_WRONG_TYPE_VALUES) if ch.integer(0, 3) else _small_value(ch)
    if path == "params":
        msg["params"] = value
    elif path == "params.payload":
        msg["params"]["payload"] = value
    else:
        _set(msg, path, value)
    return Fuzzed(f"json.wrong_type.{path}", frame(_j(msg)))


def gen_json_missing(ch: Chooser) -> Fuzzed:
    msg = _json_request(ch, _id(ch))
    path = ch.choice(("id", "method", "params", "jsonrpc", "params.payload", "params.address", "payload.method",
                      "payload.params"))
    parts = path.split(".")
    if parts[0] == "payload":
        parts = ["params", *parts]
    target = msg
    for p in parts[:-1]:
        target = target.get(p) if isinstance(target.get(p), dict) else {}
    target.pop(parts[-1], None)
    return Fuzzed(f"json.missing.{path}", frame(_j(msg)))


def gen_json_valid(ch: Chooser) -> Fuzzed:
    """Plausible requests (real methods, small params): what a bad frame must not disturb."""
    return Fuzzed("json.request", frame(_j(_json_request(ch, _id(ch)))))


def gen_input_frames(ch: Chooser) -> Fuzzed:
    """Bidirectional calls' input frames (docs/protocol-extensions.md): a call to echo_stream
    or sum_stream that asked to send input, then input frames, good and bad (wrong types,
    out of order, for other or unhashable ids, an end with the wrong count), or stray ones."""
    rid = _id(ch)
    wire = b""
    if ch.integer(0, 3):
        msg = envelope(ch.choice(("echo_stream", "sum_stream", "stream_items")), {}, rid, streaming=True)
        msg["params"]["_input"] = ch.choice((True, True, True, 1, "yes", None))
        wire += frame(_j(msg))
    for n in range(1, ch.integer(1, 6) + 1):
        params: Any = {"data": _small_value(ch), "_sequence": n}
        which = ch.integer(0, 7)
        if which == 0:
            params["_sequence"] = ch.choice((0, -1, n + 5, "1", None, 1.5))
        elif which == 1:
            params = ch.choice(_WRONG_TYPE_VALUES)
        elif which == 2:
            params = {"_last": True, "_sequence": n, "_chunks": ch.choice((n - 1, n + 3, "x", None))}
        frame_id = ch.choice((rid, rid, rid, [rid], {"id": rid}, None, 7, "other"))
        wire += frame(_j({"jsonrpc": "2.0", "id": frame_id, "method": "_input", "params": params}))
    return Fuzzed("json.input", wire)


def gen_json_not_object(ch: Chooser) -> Fuzzed:
    text = ch.choice((b"[]", b"[1,2]", b'"ping"', b"1", b"-0", b"null", b"true", b"1e999", b'[{"method":"ping"}]',
                      b"  ", b"{", b"}", b'{"id":1,', b'{"id":1}}', b"{}{}", b'{"a":1}\x00', b"\xef\xbb\xbf{}",
                      b'{"method":"ping",}', b"{'method':'ping'}", b"NaN", b"Infinity", b'{"__proto__":{}}'))
    return Fuzzed("json.not_object", frame(text))


def gen_json5(ch: Chooser) -> Fuzzed:
    body = ch.choice((
        "{id: 'j5-%d', method: 'ping', params: {},}",
        "{id: 'j5-%d', method: 'route', params: {address: 'o://demo', payload: {method: 'ping'}}} // c",
        "{/* c */ id: +%d, method: 'ping'}",
        "{id: 0x%x, method: 'ping', params: {a: Infinity, b: NaN, c: .5}}",
        "{id: '\\x41%d', method: 'ping'}",
    )) % ch.integer(0, 999)
    return Fuzzed("json.json5", frame(body.encode()))


def gen_json_encodings(ch: Chooser) -> Fuzzed:
    text = json.dumps(envelope("ping", {}, _id(ch)))
    enc = ch.choice(("utf-16-le", "utf-16-be", "utf-16", "utf-32-le", "utf-32"))
    return Fuzzed(f"json.encoding.{enc}", frame(text.encode(enc)))


def gen_json_huge_id(ch: Chooser) -> Fuzzed:
    size = ch.choice((4096, 65_536, 1_000_000, 2 * MIB))
    shape = ch.choice(("string", "string-escapes", "array", "object", "number"))
    if shape == "string":
        raw = b'"' + b"i" * size + b'"'
    elif shape == "string-escapes":
        raw = b'"' + b"\\u00e9" * (size // 6) + b'"'
    elif shape == "array":
        raw = b"[" + b"1," * (size // 2) + b"1]"
    elif shape == "object":
        raw = b"{" + b",".join(b'"k%d":1' % i for i in range(size // 8)) + b"}"
    else:
        raw = b"1" * min(size, 100_000)
    head = b'{"jsonrpc":"2.0","id":'
    tail = b',"method":"route","params":{"address":"o://demo","payload":{"method":"ping","params":{}}}}'
    return Fuzzed(f"json.huge_id.{shape}", frame(head + raw + tail))


def gen_json_numbers(ch: Chooser) -> Fuzzed:
    value = ch.choice((b"1" * 4300, b"1" * 4301, b"-" + b"9" * 5000, b"1e400", b"-1e400", b"NaN", b"-Infinity",
                       b"1.0e-400", b"0." + b"0" * 5000 + b"1", b"18446744073709551616", b"-9223372036854775809",
                       b"1" * 100))
    where = ch.choice(("id", "params.payload.params.count", "params._connectionId", "params._isStreaming"))
    body = _j(envelope("get_items", {"count": "@V@"}, "@V@" if where == "id" else _id(ch),
                       connection_id="@V@" if where == "params._connectionId" else "c",
                       streaming="@V@" if where == "params._isStreaming" else False))
    body = body.replace(b'"@V@"', value)
    return Fuzzed(f"json.number.{where}", frame(body))


def gen_json_random(ch: Chooser) -> Fuzzed:
    """A random object with some envelope keys."""
    msg = {ch.choice(("id", "method", "params", "jsonrpc", "result", "error", "x")): _small_value(ch)
           for _ in range(ch.integer(0, 5))}
    return Fuzzed("json.random", frame(_j(msg)))


def gen_json_duplicate_keys(ch: Chooser) -> Fuzzed:
    rid = _id(ch)
    body = ('{"jsonrpc":"2.0","id":"%s","method":"route","method":%s,"params":{"address":"o://demo",'
            '"payload":{"method":"ping"},"payload":%s}}' % (rid, ch.choice(('"ping"', "1", "null", "[]")),
                                                              ch.choice(("1", "null", '{"method":[]}', '"x"'))))
    return Fuzzed("json.duplicate_keys", frame(body.encode()))


# --- deep nesting -------------------------------------------------------------------------------


def _deep_json(depth: int, shape: str, leaf: bytes = b'"x"') -> bytes:
    if shape == "array":
        return b"[" * depth + leaf + b"]" * depth
    return b'{"a":' * depth + leaf + b"}" * depth


def gen_nest_json(ch: Chooser) -> Fuzzed:
    depth = ch.choice(DEPTHS)
    shape = ch.choice(("array", "object"))
    where = ch.choice(("id", "params._connectionId", "payload.params.x", "payload.params._trace", "params.address",
                       "payload.method", "params._isStreaming", "payload.params", "frame", "bare.params.x"))
    deep = _deep_json(depth, shape)
    if where == "frame":
        body = _deep_json(depth, "object", b'{"jsonrpc":"2.0","id":"n","method":"ping"}')
    elif where == "bare.params.x":
        body = b'{"jsonrpc":"2.0","id":"%s","method":"ping","params":{"x":' % _id(ch).encode() + deep + b"}}"
    else:
        msg = envelope("ping", {}, _id(ch))
        if where == "payload.params":
            msg["params"]["payload"]["params"] = "@DEEP@"
        else:
            _set(msg, where, "@DEEP@")
        body = _j(msg).replace(b'"@DEEP@"', deep)
    return Fuzzed(f"nest.json.{shape}.{where}.{depth}", frame(body))


def _deep_msgpack(depth: int, shape: str, leaf: bytes = b"\xc0") -> bytes:
    if shape == "array":
        return b"\x91" * depth + leaf
    return b"\x81\xa1a" * depth + leaf  # {"a": {"a": ...}}


def gen_nest_msgpack(ch: Chooser) -> Fuzzed:
    depth = ch.choice(DEPTHS)
    shape = ch.choice(("array", "map"))
    where = ch.choice(("id", "params._connectionId", "payload.params.x", "params.address"))
    msg = envelope("ping", {}, _id(ch))
    _set(msg, where, "@DEEP@")
    packed = _pack(msg)
    body = packed.replace(msgpack.packb("@DEEP@"), _deep_msgpack(depth, shape))
    return Fuzzed(f"nest.msgpack.{shape}.{where}.{depth}", frame(body))


# --- bad UTF-8 ------------------------------------------------------------------------------------


def _with_string(ch: Chooser, where: str, marker_value: bytes) -> bytes:
    """An envelope whose string field `where` is `"x<marker_value>"` (raw bytes inside the quotes)."""
    key = ch.choice(("text", "query", "_auth", "a"))
    msg = envelope("stream_text" if "text" in where else "ping", {}, _id(ch))
    path = _placeholder_path(where, key)
    _set(msg, path, "@S@")
    return _j(msg).replace(b'"@S@"', b'"x' + marker_value + b'"')


def gen_utf8_lone_surrogate_raw(ch: Chooser) -> Fuzzed:
    where = ch.choice(STRING_FIELDS + ("key",))
    raw = ch.choice(LONE_SURROGATES_RAW)
    if where == "key":  # in an object key
        body = _j(envelope("ping", {"@K@": 1}, _id(ch))).replace(b'"@K@"', b'"k' + raw + b'"')
    else:
        body = _with_string(ch, where, raw)
    return Fuzzed(f"utf8.surrogate_raw.{where}", frame(body))


def gen_utf8_lone_surrogate_escape(ch: Chooser) -> Fuzzed:
    where = ch.choice(STRING_FIELDS + ("key",))
    esc = ch.choice(LONE_SURROGATE_ESCAPES).encode()
    if where == "key":
        body = _j(envelope("ping", {"@K@": 1}, _id(ch))).replace(b'"@K@"', b'"k' + esc + b'"')
    else:
        body = _with_string(ch, where, esc)
    return Fuzzed(f"utf8.surrogate_escape.{where}", frame(body))


def gen_utf8_invalid(ch: Chooser) -> Fuzzed:
    where = ch.choice(STRING_FIELDS)
    return Fuzzed(f"utf8.invalid.{where}", frame(_with_string(ch, where, ch.choice(BAD_UTF8))))


def gen_utf8_raw_frame(ch: Chooser) -> Fuzzed:
    """The id of a minimal frame, verbatim from the issue: `{"id":"x\\xed\\xa0\\x80",...}`."""
    raw = ch.choice(LONE_SURROGATES_RAW)
    body = b'{"jsonrpc":"2.0","id":"x' + raw + b'","method":"ping","params":{}}'
    return Fuzzed("utf8.surrogate_raw.bare_id", frame(body))


# --- msgpack ------------------------------------------------------------------------------------


def gen_msgpack(ch: Chooser) -> Fuzzed:
    msg = _json_request(ch, _id(ch))
    variant = ch.choice(("plain", "wrong_type", "bytes_id", "ext_id", "bytes_keys", "int_keys", "timestamp",
                         "no_method", "bytes_method", "float_keys", "nil_key", "deep_no_method"))
    if variant == "wrong_type":
        path = ch.choice(ENVELOPE_FIELDS)
        _set(msg, path, ch.choice(_WRONG_TYPE_VALUES))
        variant = f"wrong_type.{path}"
    elif variant == "bytes_id":
        msg["id"] = ch.binary(0, 8)
    elif variant == "ext_id":
        msg["id"] = msgpack.ExtType(ch.integer(0, 127), ch.binary(0, 4))
    elif variant == "bytes_keys":
        msg["id"] = {b"k": 1}
        _set(msg, "payload.params", {b"count": 1})
    elif variant == "int_keys":
        msg["id"] = {1: "a"}
        _set(msg, "payload.params", {1: 2})
    elif variant == "float_keys":
        msg["id"] = {1.5: "a"}
    elif variant == "nil_key":
        msg["id"] = {None: 1}
    elif variant == "timestamp":
        msg["id"] = msgpack.Timestamp(ch.integer(0, 2 ** 32), 0)
    elif variant == "no_method":
        msg.pop("method", None)
        msg["id"] = ch.choice((b"\xff\xfe", msgpack.ExtType(1, b"x"), {b"k": 1}, {1: 2}, {None: 1},
                               msgpack.Timestamp(1, 0), "ok"))
    elif variant == "bytes_method":
        msg["method"] = b"route"
    elif variant == "deep_no_method":
        msg.pop("method", None)
        msg["id"] = "@DEEP@"
        body = _pack(msg).replace(msgpack.packb("@DEEP@"),
                                                             _deep_msgpack(ch.choice((300, 1000)), "array"))
        return Fuzzed(f"msgpack.{variant}", frame(body))
    body = _pack(msg)
    if ch.integer(0, 9) == 0:  # cut short inside its own frame
        body = body[: ch.integer(1, max(1, len(body) - 1))]
        variant += ".cut"
    return Fuzzed(f"msgpack.{variant}", frame(body))


def _msgpackable(value: Any) -> Any:
    """Integers beyond 64 bits clamped (msgpack has none)."""
    if type(value) is int:
        return max(-(2 ** 63), min(2 ** 64 - 1, value))
    if type(value) is dict:
        return {_msgpackable(k): _msgpackable(v) for k, v in value.items()}
    if type(value) is list:
        return [_msgpackable(v) for v in value]
    return value


def _pack(message: Any) -> bytes:
    return msgpack.packb(_msgpackable(message), use_bin_type=True)


def gen_msgpack_raw(ch: Chooser) -> Fuzzed:
    """Bytes that start like a msgpack map, then anything."""
    head = ch.choice((b"\x80", b"\x81", b"\x8f", b"\xde\xff\xff", b"\xdf\xff\xff\xff\xff", b"\xdf\x00\x00\x00\x01"))
    return Fuzzed("msgpack.raw", frame(head + ch.binary(0, 64)))


def gen_msgpack_str_invalid_utf8(ch: Chooser) -> Fuzzed:
    """A msgpack str (not bin) whose bytes are not UTF-8, lone surrogates included."""
    bad = b"x" + ch.choice(LONE_SURROGATES_RAW + BAD_UTF8)
    msg = envelope("ping", {}, "@S@")
    body = _pack(msg).replace(msgpack.packb("@S@"), bytes((0xA0 | len(bad),)) + bad)
    return Fuzzed("msgpack.str_invalid_utf8", frame(body))


# --- garbage --------------------------------------------------------------------------------------


def gen_garbage(ch: Chooser) -> Fuzzed:
    lead = ch.choice((b"", b"{", b"{\"", b"\x81", b"[", b" ", b"\x00"))
    return Fuzzed("garbage.bytes", frame(lead + ch.binary(0, 200)))


def gen_garbage_big(ch: Chooser) -> Fuzzed:
    n = ch.choice((10_000, 100_000, 1_000_000))
    return Fuzzed("garbage.big", frame(b"{" + bytes([ch.integer(0, 255)]) * n))


# --- framing ----------------------------------------------------------------------------------------


def gen_frame_intact_odd(ch: Chooser) -> Fuzzed:
    variant = ch.choice(("empty", "overlong_varint_zero", "overlong_varint_ping"))
    if variant == "empty":
        return Fuzzed("frame.empty", b"\x00")
    if variant == "overlong_varint_zero":
        return Fuzzed("frame.overlong_varint_zero", b"\x80\x80\x00")
    body = _j(envelope("ping", {}, _id(ch)))
    n = len(body)  # the length, varint padded with 0x80 groups
    prefix = bytearray(encode_varint(n))
    prefix[-1] |= 0x80
    prefix += b"\x80\x00"
    return Fuzzed("frame.overlong_varint", bytes(prefix) + body)


def gen_frame_broken(ch: Chooser) -> Fuzzed:
    variant = ch.choice(("truncated", "truncated_prefix", "varint_11_bytes", "varint_64bit", "over_limit",
                         "max_varint", "limit_plus_one", "just_under_limit_unfinished"))
    if variant == "truncated":
        body = _j(envelope("ping", {}, _id(ch)))
        cut = ch.integer(0, len(body) - 1)
        return Fuzzed("frame.truncated", encode_varint(len(body)) + body[:cut], intact=False)
    if variant == "truncated_prefix":
        return Fuzzed("frame.truncated_prefix", ch.choice((b"\x80", b"\xff\xff", b"\x80\x80\x80")), intact=False)
    if variant == "varint_11_bytes":
        return Fuzzed("frame.varint_11_bytes", b"\xff" * 10 + b"\x01" + b'{"id":1}', intact=False)
    if variant == "varint_64bit":
        return Fuzzed("frame.varint_64bit", encode_varint(2 ** 64 - 1) + b"{}", intact=False)
    if variant == "over_limit":
        return Fuzzed("frame.over_limit", encode_varint(NODE_MAX_FRAME + ch.integer(1, 10 ** 9)) + b"{", intact=False)
    if variant == "max_varint":
        return Fuzzed("frame.max_varint", b"\xff" * 9 + b"\x7f", intact=False)
    if variant == "limit_plus_one":
        return Fuzzed("frame.limit_plus_one", encode_varint(NODE_MAX_FRAME + 1), intact=False)
    return Fuzzed("frame.unfinished_large", encode_varint(NODE_MAX_FRAME - 1) + b"{" + b" " * 65_536, intact=False)


#: (generator, weight): the mix a fuzz run draws from
GENERATORS: tuple[tuple[Callable[[Chooser], Fuzzed], int], ...] = (
    (gen_json_wrong_type, 14),
    (gen_json_missing, 4),
    (gen_json_valid, 6),
    (gen_json_not_object, 3),
    (gen_json5, 2),
    (gen_json_encodings, 1),
    (gen_json_huge_id, 1),
    (gen_json_numbers, 2),
    (gen_json_random, 3),
    (gen_json_duplicate_keys, 1),
    (gen_input_frames, 3),
    (gen_nest_json, 8),
    (gen_nest_msgpack, 4),
    (gen_utf8_lone_surrogate_raw, 6),
    (gen_utf8_lone_surrogate_escape, 6),
    (gen_utf8_invalid, 3),
    (gen_utf8_raw_frame, 1),
    (gen_msgpack, 10),
    (gen_msgpack_raw, 2),
    (gen_msgpack_str_invalid_utf8, 2),
    (gen_garbage, 5),
    (gen_garbage_big, 1),
    (gen_frame_intact_odd, 2),
    (gen_frame_broken, 3),
)
_WEIGHTED = tuple(g for g, w in GENERATORS for _ in range(w))


def fuzzed_frame(ch: Chooser) -> Fuzzed:
    return ch.choice(_WEIGHTED)(ch)


def fuzzed_batch(ch: Chooser, size: int) -> list[Fuzzed]:
    return [fuzzed_frame(ch) for _ in range(size)]


def hypothesis_batch(data, size: int) -> list[Fuzzed]:
    """`size` frames for a hypothesis test (`st.data()`): hypothesis draws each frame's generator and a
    seed, the generator draws the details from `RandomChooser(seed)`. Two draws a frame instead of ~30
    keeps a 100-frame example cheap; a failing example still replays exactly."""
    ch = HypothesisChooser(data)
    return [ch.choice(_WEIGHTED)(RandomChooser(ch.integer(0, 2 ** 32 - 1))) for _ in range(size)]


# --- throwing them at a node ---------------------------------------------------------------------------


@dataclass
class BatchOutcome:
    sent: int = 0
    answers: int = 0  # frames the node sent back on the fuzz streams
    ping_answered: bool | None = None  # the ping pipelined after the intact frames (None: not sent)
    ping_answer: Any = None
    undecodable_answers: int = 0  # frames from the node we could not decode (the node wrote bad bytes)
    send_errors: list[str] = field(default_factory=list)


def _decode_answer(payload: bytes) -> Any:
    import orjson

    if payload[:1] and (0x80 <= payload[0] <= 0x8F or payload[0] in (0xDE, 0xDF)):
        return msgpack.unpackb(payload, raw=False, strict_map_key=False)
    return orjson.loads(payload)


def _is_ping_answer(message: Any, ping_id: str) -> bool:
    return isinstance(message, dict) and message.get("id") == ping_id and isinstance(message.get("result"), dict) \
        and message["result"].get("_last") is True


async def send_batch(client, peer, frames: Iterable[Fuzzed], *, protocol: str = "/o/demo", timeout: float = 10.0,
                     ping_id: str | None = "fz-ping") -> BatchOutcome:
    """Send the intact frames pipelined on one stream, then (when `ping_id`) a valid ping on the same stream,
    and read until its answer; each framing-breaking frame goes on a stream of its own. Streams are reset
    afterwards. Every step is under `timeout`."""
    import trio
    from libp2p.custom_types import TProtocol

    from node_runtime.framing import FrameDecoder
    from node_runtime.stream_io import STREAM_ENDED, reset_quietly

    out = BatchOutcome()
    frames = list(frames)
    intact = [f for f in frames if f.intact]
    broken = [f for f in frames if not f.intact]

    async def open_stream():
        with trio.fail_after(timeout):
            return await client.host.new_stream(peer, [TProtocol(protocol)])

    async def write(stream, data: bytes) -> bool:
        # shielded with a deadline: a write cancelled midway would break the Noise session
        with trio.move_on_after(timeout) as scope:
            with trio.CancelScope(shield=True):
                with trio.move_on_after(timeout):
                    await stream.write(data)
        return not scope.cancelled_caught

    async def read_answers(stream, until_ping: bool, wait: float) -> None:
        decoder = FrameDecoder(64 * MIB)
        with trio.move_on_after(wait):
            while True:
                try:
                    data = await stream.read(256 * 1024)
                except STREAM_ENDED:
                    return
                if not data:
                    return
                try:
                    payloads = decoder.feed(data)
                except Exception:
                    out.undecodable_answers += 1
                    return
                for payload in payloads:
                    out.answers += 1
                    try:
                        message = _decode_answer(payload)
                    except Exception:
                        out.undecodable_answers += 1
                        continue
                    if until_ping and _is_ping_answer(message, ping_id):
                        out.ping_answered = True
                        out.ping_answer = message["result"]
                        return

    if intact:
        try:
            stream = await open_stream()
        except Exception as exc:  # the connection or the node is gone
            out.send_errors.append(f"new stream failed: {type(exc).__name__}: {exc}")
            return out
        try:
            data = b"".join(f.wire for f in intact)
            if ping_id is not None:
                data += ping_frame(ping_id)
                out.ping_answered = False
            # write in pieces so reading and writing can both progress
            async with trio.open_nursery() as nursery:
                nursery.start_soon(read_answers, stream, ping_id is not None, timeout)
                step = 256 * 1024
                for i in range(0, len(data), step):
                    if not await write(stream, data[i:i + step]):
                        out.send_errors.append("write timed out")
                        break
                if ping_id is None:
                    nursery.cancel_scope.deadline = min(nursery.cancel_scope.deadline, trio.current_time() + 0.2)
            out.sent += len(intact)
        except Exception as exc:  # reset by the node, or the node is gone
            out.send_errors.append(f"stream failed: {type(exc).__name__}: {exc}")
        finally:
            await reset_quietly(stream, 2.0)
    for f in broken:
        try:
            stream = await open_stream()
        except Exception as exc:
            out.send_errors.append(f"new stream failed: {type(exc).__name__}: {exc}")
            return out
        try:
            await write(stream, f.wire)
            out.sent += 1
            await read_answers(stream, False, 0.05)
        except Exception:
            pass  # the node resets a stream whose framing is lost: expected
        finally:
            await reset_quietly(stream, 2.0)
    return out


async def ping_fresh(multiaddr: str, timeout: float = 10.0) -> tuple[bool, str, float]:
    """A new Client pings the node once and closes: (answered, why not, seconds)."""
    import trio

    from node_runtime import Client, OlaneError

    started = time.perf_counter()
    try:
        with trio.fail_after(timeout):
            async with Client() as c:
                data = await c.use("o://demo", "ping", via=multiaddr, timeout=timeout)
        ok = isinstance(data, dict) and data.get("message") == "Pong!"
        return ok, "" if ok else f"answer {str(data)[:80]}", time.perf_counter() - started
    except (Exception, trio.TooSlowError) as exc:
        if isinstance(exc, BaseExceptionGroup):
            exc = exc.exceptions[0]
        why = f"{exc.code} {exc.message}" if isinstance(exc, OlaneError) else f"{type(exc).__name__}: {exc}"
        return False, why[:200], time.perf_counter() - started


# --- which input ended the node -----------------------------------------------------------------------


class Target:
    """A node process under fuzz: the test wraps `olane node` (tests/process_helpers), the soak a ServedNode."""

    multiaddr: str = ""

    def alive(self) -> bool:
        raise NotImplementedError

    def restart(self) -> None:
        """Stop the process if it runs, start a fresh one (sets `multiaddr`)."""
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def exit_reason(self) -> str:
        """The last line of a dead process's stderr (the exception that ended it), else ''."""
        return ""


def exception_line(stderr_lines: Sequence[str]) -> str:
    """The last `SomeError: message` line of a traceback (the exception that ended a process)."""
    import re

    found = ""
    for line in stderr_lines:
        text = line.strip(" |\n\r")
        if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Group|Exit|Interrupt)\b.*", text):
            found = text
    if found:
        return found[:300]
    lines = [l.strip(" |\n") for l in stderr_lines if l.strip(" |\n-+")]
    return lines[-1][:300] if lines else "(no stderr)"


async def wait_dead(target: Target, seconds: float) -> bool:
    """True when the process has ended within `seconds` (polled)."""
    import trio

    with trio.move_on_after(seconds):
        while target.alive():
            await trio.sleep(0.02)
    return not target.alive()


async def _kills(target: Target, f: Fuzzed, timeout: float) -> bool:
    """Send `f` (then a ping on the same stream) to a fresh node; True when the process ends."""
    from node_runtime import Client

    target.restart()
    async with Client() as c:
        peer = await c.peers.peer_at(target.multiaddr)
        try:
            out = await send_batch(c, peer, [f], timeout=timeout)
        except Exception:
            out = None
    return await wait_dead(target, 2.0)  # a tool may answer (and fail to encode) after a delay


async def find_killer(target: Target, frames: Sequence[Fuzzed], timeout: float = 5.0) -> tuple[Fuzzed, str] | None:
    """Replay `frames` one at a time (each followed by a ping on its stream) on a fresh node until it
    dies; confirm the culprit alone on another fresh node. Returns (frame, why the node ended) or None
    when no single frame ends it. The node is left running (fresh) on return."""
    from node_runtime import Client

    target.restart()
    history: list[Fuzzed] = []
    i = 0
    while i < len(frames):
        async with Client() as c:
            peer = await c.peers.peer_at(target.multiaddr)
            while i < len(frames):
                f = frames[i]
                i += 1
                history.append(f)
                try:
                    out = await send_batch(c, peer, [f], timeout=timeout)
                except Exception:
                    out = None
                answered = out is not None and (out.ping_answered or (not f.intact and not out.send_errors))
                if not await wait_dead(target, 0.1 if answered else 1.0):
                    continue
                why = target.exit_reason()
                # the exception may land a moment after the ping's answer: the culprit is among the last few
                for suspect in history[-8:]:
                    if await _kills(target, suspect, timeout):
                        why = target.exit_reason() or why
                        target.restart()
                        return suspect, why
                target.restart()
                break  # no single frame: go on from here on a fresh node
    target.restart()
    return None
