"""The JSON-RPC messages olane speaks (PROTOCOL.md sections 5, 6 and 9): route
envelopes and bare requests in, chunk / final / error frames out."""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import msgpack
import orjson

from . import codec as codecs
from .errors import ErrorCode, OlaneError

ROUTE = "route"
#: envelope param by which a caller of ours asks for batched chunk frames (only our servers read it)
BATCH_FLAG = "_batch"
#: envelope params of two more extensions: the caller sends input chunks (incoming.py), and
#: answers compressed ("zstd") or compressed when the node chooses ("accept"; compression.py)
INPUT_FLAG = "_input"
COMPRESS_FLAG = "_compress"
#: envelope params asking our servers for a resumable stream / to join a shared one (docs/protocol-extensions.md)
RESUMABLE_FLAG = "_resumable"
SHARE_FLAG = "_share"


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass
class IncomingRequest:
    """One request as a server sees it, envelope unwrapped."""

    id: Any
    method: str  # the tool method to run
    params: dict[str, Any]  # what the tool sees
    envelope: bool  # arrived as a `route` envelope
    address: str | None = None  # the envelope's final target
    connection_id: str = ""
    caller_address: str | None = None
    streaming_requested: bool = False
    raw: dict[str, Any] = field(default_factory=dict, repr=False)  # the frame as read (relays forward it)
    batch: bool = False  # the caller asked for several chunks per frame (docs/protocol-extensions.md)
    input: bool = False  # the caller will send input chunks for this request (a bidirectional call)
    compress: str | None = None  # "zstd": compress the answer; "accept": the caller can read it compressed
    resumable: bool = False  # ... for a stream it may resume after losing its connection
    share: str | None = None  # ... to join the stream of this share key (same method and params)

    @property
    def terminal_method(self) -> str:
        """`_requestMethod` of final frames: `route` for envelopes, else the method."""
        return ROUTE if self.envelope else self.method


def _check_id(value: Any, what: str, max_bytes: int) -> None:
    """Ids are echoed in every answer: only short strings and integers (or null)."""
    if value is None or (type(value) is int and -(2**63) <= value < 2**64):
        return
    if type(value) is str:
        if len(value) > max_bytes:
            raise OlaneError(ErrorCode.INVALID_REQUEST, f"{what} is {len(value)} characters, over the limit of {max_bytes}")
        return
    raise OlaneError(ErrorCode.INVALID_REQUEST, f"{what} must be a string or an integer, not {type(value).__name__}")


def parse_request(message: dict[str, Any], max_id_bytes: int = 1024) -> IncomingRequest:
    """Read a request frame. Raises OlaneError 4009 when it is not one."""
    if "method" not in message:
        raise OlaneError(ErrorCode.INVALID_REQUEST, "frame has no method")
    method = message.get("method")
    req_id = message.get("id")
    _check_id(req_id, "id", max_id_bytes)
    params = message.get("params")
    if params is None:
        params = {}
    if not isinstance(method, str) or not isinstance(params, dict):
        raise OlaneError(ErrorCode.INVALID_REQUEST, "method must be a string and params an object")
    if method == ROUTE and isinstance(params.get("payload"), dict):
        payload = params["payload"]
        inner_method = payload.get("method")
        inner_params = payload.get("params") or {}
        if not isinstance(inner_method, str) or not isinstance(inner_params, dict):
            raise OlaneError(ErrorCode.INVALID_REQUEST, "route payload needs a method and object params")
        connection_id = params.get("_connectionId") or ""
        _check_id(connection_id, "_connectionId", max_id_bytes)
        address = params.get("address")
        if address is not None and type(address) is not str:
            raise OlaneError(ErrorCode.INVALID_REQUEST, "params.address must be a string")
        caller = params.get("_callerAddress")
        seen = {"_connectionId": connection_id, "_requestMethod": inner_method}
        seen.update(inner_params)
        return IncomingRequest(
            id=req_id,
            method=inner_method,
            params=seen,
            envelope=True,
            address=address,
            connection_id=connection_id,
            caller_address=caller if type(caller) is str else None,
            streaming_requested=bool(params.get("_isStreaming") or inner_params.get("_isStreaming")),
            raw=message,
            batch=params.get(BATCH_FLAG) is True,
            input=params.get(INPUT_FLAG) is True,
            compress=_compress_flag(params.get(COMPRESS_FLAG)),
            resumable=params.get(RESUMABLE_FLAG) is True,
            share=_share_key(params.get(SHARE_FLAG), max_id_bytes),
        )
    connection_id = params.get("_connectionId") or ""
    _check_id(connection_id, "_connectionId", max_id_bytes)
    return IncomingRequest(
        id=req_id,
        method=method,
        params=params,
        envelope=False,
        connection_id=connection_id,
        streaming_requested=bool(params.get("_isStreaming")),
    )


def _compress_flag(value: Any) -> str | None:
    return value if value in ("zstd", "accept") else None
def _share_key(value: Any, max_bytes: int) -> str | None:
    if value is None:
        return None
    if type(value) is not str or not value or len(value) > max_bytes:
        raise OlaneError(ErrorCode.INVALID_REQUEST, f"{SHARE_FLAG} must be a non-empty string of at most {max_bytes} "
                                                    f"characters")
    return value


def _result(req: IncomingRequest, body: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": req.id, "result": body}


def chunk_frame(req: IncomingRequest, data: Any, sequence: int) -> dict[str, Any]:
    return _result(
        req,
        {
            "id": req.id,
            "data": data,
            "success": True,
            "_last": False,
            "_isStreaming": True,
            "_requestMethod": req.method,
            "_connectionId": req.connection_id,
            "_sequence": sequence,
        },
    )


def final_frame(
    req: IncomingRequest, data: Any, *, sequence: int | None = None, chunks: int | None = None
) -> dict[str, Any]:
    body = {
        "id": req.id,
        "data": data,
        "success": True,
        "_last": True,
        "_isStreaming": False,
        "_requestMethod": req.terminal_method,
        "_connectionId": req.connection_id,
    }
    if sequence is not None:
        body["_sequence"] = sequence
        body["_chunks"] = chunks
    return _result(req, body)


def error_frame(
    req: IncomingRequest, error: OlaneError, *, sequence: int | None = None, chunks: int | None = None
) -> dict[str, Any]:
    wire = error.to_wire()
    body = {
        "id": req.id,
        "data": {"error": wire},
        "error": wire,
        "success": False,
        "_last": True,
        "_isStreaming": False,
        "_requestMethod": req.terminal_method,
        "_connectionId": req.connection_id,
    }
    if sequence is not None:
        body["_sequence"] = sequence
        body["_chunks"] = chunks
    return _result(req, body)


def unreadable_frame_error(error: OlaneError, req_id: Any = None) -> dict[str, Any]:
    """The answer to a frame that could not be read as a request at all."""
    req = IncomingRequest(id=req_id, method="", params={}, envelope=False)
    return error_frame(req, error)


def route_request(
    address: str,
    method: str,
    params: dict[str, Any] | None,
    *,
    request_id: str,
    connection_id: str,
    caller_address: str,
    streaming: bool,
    batch: bool = False,
    extra: dict[str, Any] | None = None,
    resumable: bool = False,
    share: str | None = None,
) -> dict[str, Any]:
    """The `route` envelope a client sends (the shape TypeScript clients send).
    `batch` asks our own servers for several chunks per frame; send it only to a
    peer whose `identify` listed it."""
    inner = dict(params or {})
    if streaming:
        inner["_isStreaming"] = True
    envelope = {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": ROUTE,
        "params": {
            "_connectionId": connection_id,
            "_requestMethod": ROUTE,
            "_callerAddress": caller_address,
            "_isStreaming": streaming,
            "address": address,
            "payload": {"method": method, "params": inner},
        },
    }
    if batch:
        envelope["params"][BATCH_FLAG] = True
    if extra:  # more extension flags (_input, _compress), only toward a peer that listed them
        envelope["params"].update(extra)
    if resumable:
        envelope["params"][RESUMABLE_FLAG] = True
    if share is not None:
        envelope["params"][SHARE_FLAG] = share
    return envelope


class Response:
    """One response frame (or one chunk of a batched frame) as a client reads it.
    A plain slotted class: one is built per chunk, so it must be cheap."""

    __slots__ = ("id", "data", "last", "error", "sequence", "chunks", "_raw", "size", "batch", "_payload")

    def __init__(self, id: Any, data: Any, last: bool, error: OlaneError | None, sequence: int | None,
                 chunks: int | None, raw: dict[str, Any] | None = None, size: int = 0, batch: int = 0,
                 payload: bytes | None = None) -> None:
        self.id = id
        self.data = data
        self.last = last
        self.error = error
        self.sequence = sequence
        self.chunks = chunks
        self._raw = raw
        self._payload = payload  # when the frame was read without decoding it whole (ChunkReader)
        self.size = size  # payload bytes on the wire (a batched frame's bytes are shared among its chunks)
        self.batch = batch  # > 0: a batched frame of this many chunks, `data` their list (see split_batch)

    @property
    def raw(self) -> dict[str, Any]:
        """The whole message of the frame (decoded on first use for a chunk read by the fast path)."""
        if self._raw is None:
            self._raw = codecs.decode_answer(self._payload) if self._payload is not None else {}
        return self._raw

    def extra(self, key: str) -> Any:
        """A key of the frame's `result` beyond the usual ones (`_streamId`, `_dropped`
        of live streams), or None. A chunk read by the fast path has none: its frame
        was exactly the plain envelope."""
        raw = self._raw
        result = raw.get("result") if raw is not None else None
        return result.get(key) if type(result) is dict else None

    def __repr__(self) -> str:
        return (f"Response(id={self.id!r}, data={self.data!r}, last={self.last!r}, error={self.error!r}, "
                f"sequence={self.sequence!r}, chunks={self.chunks!r}, size={self.size!r})")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Response):
            return NotImplemented
        return all(getattr(self, k) == getattr(other, k)
                   for k in ("id", "data", "last", "error", "sequence", "chunks", "raw", "size", "batch"))


def parse_response(message: dict[str, Any]) -> Response:
    result = message.get("result")
    if type(result) is dict and "error" not in result:  # the chunk path: no error, no isinstance
        batch = result.get(BATCH_FLAG)
        return Response(message.get("id", result.get("id")), result.get("data"), bool(result.get("_last", False)),
                        None, result.get("_sequence"), result.get("_chunks"), message, 0,
                        batch if type(batch) is int and type(result.get("data")) is list else 0)
    if not isinstance(result, dict):
        if "error" in message:  # a non-olane JSON-RPC error: still terminal
            return Response(message.get("id"), None, True, OlaneError.from_wire(message["error"]), None, None, message)
        raise OlaneError(ErrorCode.INVALID_RESPONSE, "response frame has no result object")
    error = result.get("error")
    return Response(
        id=message.get("id", result.get("id")),
        data=result.get("data"),
        last=bool(result.get("_last", False)),
        error=OlaneError.from_wire(error) if error else None,
        sequence=result.get("_sequence"),
        chunks=result.get("_chunks"),
        raw=message,
    )


class ChunkResponse(Response):
    """A chunk as the client's fast paths hand it out: a Response whose constant
    fields (not last, no error, no `_chunks`, not batched) are the class's, so
    only the rest is set per chunk. Read-only but for those. `raw` is the
    batched frame's message for a chunk of a batched frame; for a chunk that
    ChunkReader read, it is decoded from `payload` on first use."""

    __slots__ = ()
    last = False
    error = None
    chunks = None
    batch = 0

    def __init__(self, id: Any, data: Any, sequence: int | None, size: int, raw: dict[str, Any] | None,
                 payload: bytes | None = None) -> None:
        self.id = id
        self.data = data
        self.sequence = sequence
        self.size = size
        self._raw = raw
        self._payload = payload


def batch_chunk(response: Response, k: int, size: int = 0) -> Response:
    """Chunk `k` (from 0) of a batched frame (`_batch: n`, `data` the list of the
    chunks' data, `_sequence` the first one's), as the Response its own frame
    would have given; `size` is the bytes credited to it."""
    first = response.sequence
    return ChunkResponse(response.id, response.data[k], None if first is None else first + k, size, response.raw)


#: how deep orjson and msgpack decode (tests/test_fast_paths.py pins both)
DECODER_DEPTH = 1024
#: the containers around a chunk's data in its frame (the message, its `result`)
ENVELOPE_DEPTH = 2
#: the largest data the chunk fast paths decode alone. Alone, data may nest ENVELOPE_DEPTH
#: levels deeper than it may inside its frame, so only data too short to nest that deep is
#: read this way (a JSON level takes 2 bytes, a msgpack one 1); longer data is decoded with
#: its frame, and refused exactly when the whole decode refuses it
FAST_DATA_MAX = {codecs.JSON: 2 * (DECODER_DEPTH - ENVELOPE_DEPTH), codecs.MSGPACK: DECODER_DEPTH - ENVELOPE_DEPTH}
#: at most this many digits in a JSON sequence read fast: 19 digits stay below 2**64, beyond
#: which orjson reads a float
SEQUENCE_DIGITS = 19


class ChunkReader:
    """The client's fast path for the chunk frames of our own servers: a frame
    that is exactly `head + data + tail + <sequence>` (what ChunkEncoder writes
    for this request, in JSON or msgpack) is read by decoding only `data`. In
    JSON the envelope's quotes cannot occur unescaped inside a string; in msgpack
    the sequence is read from the end and `data` must be exactly one value; in
    both, `data` must decode alone and be short enough that it could not nest
    too deep in its frame (FAST_DATA_MAX). So a frame read this way is the frame
    `parse_response(decode_answer(...))` would have read (tests/test_fast_paths.py
    checks it on generated frames). Anything else (a batched frame, a final or
    error frame, a TypeScript peer's chunk) gives None: decode it whole."""

    __slots__ = ("_id", "_head", "_tail", "_head_len", "_tail_len", "_max", "read", "_next", "_expect")

    def __init__(self, request_id: Any, method: str, connection_id: Any, codec: str = codecs.JSON) -> None:
        self._id = request_id
        encoder = ChunkEncoder(IncomingRequest(id=request_id, method=method, params={}, envelope=True,
                                               connection_id=connection_id), codec)
        self._head = encoder.head
        self._tail = encoder.tail
        self._head_len = len(self._head)
        self._tail_len = len(self._tail)
        self._max = FAST_DATA_MAX[codec]
        self.read = self._read_msgpack if codec == codecs.MSGPACK else self._read_json
        # JSON: the end of the chunk frame expected next (the sequence after the last one read),
        # checked with one endswith before the sequence is looked for
        self._next = 1
        self._expect = self._tail + b"1}}"

    def _read_json(self, payload: bytes) -> "Response | None":
        if not payload.startswith(self._head):
            return None
        expect = self._expect
        if payload.endswith(expect):  # the next chunk in sequence, as nearly every one is
            at = len(payload) - len(expect)
            head_len = self._head_len
            if head_len <= at and at - head_len <= self._max:
                try:
                    data = orjson.loads(payload[head_len:at])
                except orjson.JSONDecodeError:
                    return None
                sequence = self._next
                self._expect_after(sequence)
                return ChunkResponse(self._id, data, sequence, at + len(expect), None, payload)
        if not payload.endswith(b"}}"):
            return None
        # the sequence, read from the end: digits between the tail's last ":" and "}}"
        end = len(payload) - 2
        colon = payload.rfind(b":", end - SEQUENCE_DIGITS - 1, end)
        at = colon + 1 - self._tail_len
        head_len = self._head_len
        if colon < 0 or at < head_len or at - head_len > self._max or not payload.startswith(self._tail, at):
            return None
        digits = payload[colon + 1:end]
        if not digits.isdigit() or (digits[0] == 0x30 and len(digits) > 1):
            return None
        try:
            data = orjson.loads(payload[head_len:at])
        except orjson.JSONDecodeError:
            return None
        sequence = int(digits)
        self._expect_after(sequence)
        return ChunkResponse(self._id, data, sequence, end + 2, None, payload)

    def _expect_after(self, sequence: int) -> None:
        following = sequence + 1
        if following < 10 ** SEQUENCE_DIGITS:  # (longer ones are the whole decode's)
            self._next = following
            self._expect = self._tail + str(following).encode() + b"}}"

    def _read_msgpack(self, payload: bytes) -> "Response | None":
        if not payload.startswith(self._head):
            return None
        # the sequence, read from the end: the tail (which ends "...ence") right before it
        # tells which encoding it is (none of its last bytes can start another)
        n = len(payload)
        tail = self._tail
        tail_len = self._tail_len
        last = payload[-1]
        if last < 0x80 and payload.startswith(tail, n - 1 - tail_len):  # a positive fixint
            at = n - 1 - tail_len
            sequence = last
        elif payload[-5] == 0xCE and payload.startswith(tail, n - 5 - tail_len):  # most of a long stream
            at = n - 5 - tail_len
            sequence = int.from_bytes(payload[-4:], "big")
        elif payload[-3] == 0xCD and payload.startswith(tail, n - 3 - tail_len):
            at = n - 3 - tail_len
            sequence = int.from_bytes(payload[-2:], "big")
        elif payload[-2] == 0xCC and payload.startswith(tail, n - 2 - tail_len):
            at = n - 2 - tail_len
            sequence = last
        elif payload[-9] == 0xCF and payload.startswith(tail, n - 9 - tail_len):
            at = n - 9 - tail_len
            sequence = int.from_bytes(payload[-8:], "big")
        else:
            return None
        head_len = self._head_len
        if at < head_len or at - head_len > self._max:
            return None
        try:
            data = msgpack.unpackb(payload[head_len:at], raw=False, strict_map_key=False)
        except Exception:  # ExtraData (more than one value) or anything malformed
            return None
        return ChunkResponse(self._id, data, sequence, n, None, payload)


# --- the per-chunk fast path of a server --------------------------------------------


#: at most this many bytes of chunk data in one batched frame
BATCH_BYTES = 64 * 1024


def answer_too_large(size: int, limit: int) -> OlaneError:
    """4008: an answer frame over the frame limit (nothing of it is sent)."""
    return OlaneError(ErrorCode.INVALID_RESPONSE, f"the answer is {size} bytes, over the {limit}-byte frame limit",
                      {"size": size, "limit": limit})


class ChunkEncoder:
    """A request's chunk frames, encoded from pre-encoded envelope pieces: the
    bytes are exactly `codec.encode(chunk_frame(req, data, sequence), codec)`
    (tests/test_fast_paths.py), at a fraction of the cost (only `data` and the
    sequence are encoded per chunk). `batch()` builds a batched frame
    (docs/protocol-extensions.md) from chunk data encoded by `data()`."""

    __slots__ = ("codec", "_head", "_batch_head", "_tail", "_json", "_packer", "fast_data")

    def __init__(self, req: IncomingRequest, codec: str) -> None:
        self.codec = codec
        self._json = codec != codecs.MSGPACK
        body_after = {"success": True, "_last": False, "_isStreaming": True,
                      "_requestMethod": req.method, "_connectionId": req.connection_id}
        #: `data()` without its error handling, for the per-chunk loop: when it raises, call `data()`
        self.fast_data = codecs.fast_encoder(codec)
        if self._json:
            self._packer = None
            enc = codecs.encode
            rid = enc(req.id)
            self._head = b'{"jsonrpc":"2.0","id":' + rid + b',"result":{"id":' + rid + b',"data":'
            self._batch_head = self._head
            tail = enc(body_after)  # {"success":true,...,"_connectionId":"c"}
            self._tail = b"," + tail[1:-1] + b',"_sequence":'
        else:
            packer = codecs.msgpack_packer()
            self._packer = packer

            def head(fields: int) -> bytes:
                return (packer.pack_map_header(3) + packer.pack("jsonrpc") + packer.pack("2.0") + packer.pack("id")
                        + packer.pack(req.id) + packer.pack("result") + packer.pack_map_header(fields)
                        + packer.pack("id") + packer.pack(req.id) + packer.pack("data"))

            self._head = head(2 + len(body_after) + 1)  # id, data, the rest, _sequence
            self._batch_head = head(2 + len(body_after) + 2)  # ... and _batch
            self._tail = b"".join(packer.pack(k) + packer.pack(v) for k, v in body_after.items()) + packer.pack("_sequence")

    def data(self, value: Any) -> bytes:
        """One chunk's data, encoded (OlaneError 4008 when it cannot be)."""
        if self._json:
            return codecs.encode_json(value)
        return codecs.encode_msgpack_with(self._packer, value)

    def chunk(self, data: bytes, sequence: int) -> bytes:
        """The payload of one chunk frame around `data` (from `data()`)."""
        if self._json:
            return b"".join((self._head, data, self._tail, str(sequence).encode(), b"}}"))
        return b"".join((self._head, data, self._tail, self._packer.pack(sequence)))

    @property
    def head(self) -> bytes:
        """The bytes every chunk frame of this request starts with, up to its data."""
        return self._head

    @property
    def batch_head(self) -> bytes:
        """The bytes every batched frame of this request starts with, up to its data
        (the head's, in JSON; in msgpack its `result` map has one field more)."""
        return self._batch_head

    @property
    def tail(self) -> bytes:
        """The bytes after a chunk's data, up to its sequence number."""
        return self._tail

    def overhead(self) -> int:
        """Bytes a frame adds around its data (for the frame-size limit)."""
        return len(self._batch_head) + len(self._tail) + 40

    def batch_bytes(self, frame_limit: int) -> int:
        """The most chunk data one batched frame of this request may hold."""
        return min(BATCH_BYTES, frame_limit - self.overhead() - 64)

    def batch(self, items: list[bytes], first: int) -> bytes:
        """One frame holding several chunks: `data` is their list, `_sequence`
        the first one's, `_batch` their count."""
        n = len(items)
        if self._json:
            return b"".join((self._batch_head, b"[", b",".join(items), b"]", self._tail, str(first).encode(),
                             b',"_batch":', str(n).encode(), b"}}"))
        packer = self._packer
        return b"".join((self._batch_head, packer.pack_array_header(n), *items, self._tail, packer.pack(first),
                         packer.pack(BATCH_FLAG), packer.pack(n)))
