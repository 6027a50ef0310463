"""The per-chunk fast paths give exactly the bytes of the plain paths, and
batched chunk frames (docs/protocol-extensions.md) give exactly the chunk
sequences of unbatched ones, over real libp2p nodes on 127.0.0.1."""
from __future__ import annotations

import msgpack
import orjson
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from node_runtime import Client, OlaneError, Request, Tool, codec
from node_runtime.framing import FrameDecoder, encode_varint, frame
from node_runtime.messages import (
    ChunkEncoder, IncomingRequest, batch_chunk, chunk_frame, parse_response, route_request,
)

from trio_helpers import NodeAndClient, run_trio

DATA = [
    {"i": 1, "pad": "x" * 80},
    {"text": "héllo ☃", "delta": "h", "nested": {"a": [1, 2.5, None, True]}},
    [1, 2, 3],
    "plain",
    12,
    None,
    {"big": 2**63 + 5},  # beyond orjson's 64-bit signed range
    {"raw": b"\x00\x01\xff"},  # base64 in JSON, bin in msgpack
    {1: "non-string key"},
]
REQUESTS = [
    IncomingRequest(id="req-1", method="stream_items", params={}, envelope=True, connection_id="py-conn-1"),
    IncomingRequest(id=7, method="m", params={}, envelope=False),
    IncomingRequest(id=None, method="ünï", params={}, envelope=True, connection_id=""),
]


@pytest.mark.parametrize("wire", [codec.JSON, codec.MSGPACK])
def test_chunk_encoder_gives_the_bytes_of_encoding_the_whole_frame(wire):
    for req in REQUESTS:
        encoder = ChunkEncoder(req, wire)
        for data in DATA:
            for sequence in (1, 127, 128, 70_000, 2**40):
                expected = codec.encode(chunk_frame(req, data, sequence), wire)
                assert encoder.chunk(encoder.data(data), sequence) == expected


@pytest.mark.parametrize("wire", [codec.JSON, codec.MSGPACK])
def test_the_per_chunk_encoder_writes_what_data_writes_or_raises(wire):
    # the node's loop calls fast_data and falls back to data() on any exception
    encoder = ChunkEncoder(REQUESTS[0], wire)
    fell_back = 0
    for value in DATA + [(1, 2), {"s": {3}}]:
        try:
            fast = encoder.fast_data(value)
        except Exception:
            fell_back += 1
            continue
        assert fast == encoder.data(value), value
    if wire == codec.JSON:  # bytes, a non-string key, a set
        assert fell_back == 3


@pytest.mark.parametrize("wire", [codec.JSON, codec.MSGPACK])
def test_a_batched_frame_reads_back_as_its_chunks(wire):
    req = REQUESTS[0]
    encoder = ChunkEncoder(req, wire)
    items = DATA[:6]
    payload = encoder.batch([encoder.data(d) for d in items], 41)
    response = parse_response(codec.decode_answer(payload))
    assert response.batch == len(items)
    chunks = [batch_chunk(response, k, 10) for k in range(response.batch)]
    assert [c.data for c in chunks] == items
    assert [c.sequence for c in chunks] == list(range(41, 41 + len(items)))
    assert all(c.id == "req-1" and not c.last and c.error is None for c in chunks)
    # it is a chunk frame of the usual shape, plus _batch
    result = codec.decode(payload)[0]["result"]
    assert result["_batch"] == len(items) and result["_sequence"] == 41 and result["_last"] is False


def test_encoding_failures_are_still_4008():
    for wire in (codec.JSON, codec.MSGPACK):
        encoder = ChunkEncoder(REQUESTS[0], wire)
        with pytest.raises(OlaneError) as err:
            encoder.data({"bad": object()})
        assert err.value.code == 4008 and f"as {wire}" in err.value.message
        assert encoder.data({"ok": 1}) == codec.encode({"ok": 1}, wire)  # the reused Packer is clean again


def test_varint_fast_paths_match_the_general_ones():
    for n in list(range(0, 300)) + [0x3FFF, 0x4000, 0x4001, 2**21, 2**35]:
        prefix = encode_varint(n)
        assert prefix == _general_varint(n)
        assert frame(b"x" * min(n, 20_000)) == _general_varint(min(n, 20_000)) + b"x" * min(n, 20_000)
        if n <= 70_000:
            assert FrameDecoder(1 << 40).feed(prefix + b"y" * n) == [b"y" * n]
    # frames fed byte by byte split the same as frames fed whole
    payloads = [b"a" * n for n in (0, 1, 127, 128, 300, 16_383, 16_384, 70_000)]
    wire = b"".join(frame(p) for p in payloads)
    assert FrameDecoder().feed(wire) == payloads
    decoder = FrameDecoder()
    out = []
    for i in range(0, len(wire), 1):
        out += decoder.feed(wire[i:i + 1])
    assert out == payloads


def _general_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def test_decode_answer_agrees_with_decode():
    for message in ({"a": 1}, {"result": {"data": [1]}}):
        for wire in (codec.JSON, codec.MSGPACK):
            assert codec.decode_answer(codec.encode(message, wire)) == message
    for bad in (b"[1]", b"{", b" {\"a\": 1}", b"\x81\xa1", b""):
        try:
            expected = codec.decode(bad)[0]
        except OlaneError as exc:
            with pytest.raises(OlaneError) as err:
                codec.decode_answer(bad)
            assert err.value.message == exc.message
        else:
            assert codec.decode_answer(bad) == expected


def test_route_request_unchanged_unless_batch_is_asked():
    kwargs = dict(request_id="r", connection_id="c", caller_address="o://me", streaming=True)
    plain = route_request("o://x", "m", {"a": 1}, **kwargs)
    assert orjson.dumps(plain) == orjson.dumps(route_request("o://x", "m", {"a": 1}, batch=False, **kwargs))
    assert "_batch" not in orjson.dumps(plain).decode()
    asked = route_request("o://x", "m", {"a": 1}, batch=True, **kwargs)
    assert asked["params"]["_batch"] is True and asked["params"]["payload"] == plain["params"]["payload"]


# --- over libp2p -------------------------------------------------------------------


class Flood(Tool):
    address = "o://flood"

    async def _tool_count(self, request: Request, count: int = 10, size: int = 0, slowEvery: int = 0):
        pad = "x" * size
        for i in range(1, count + 1):
            yield {"i": i, "pad": pad, "delta": str(i % 10)}
            if slowEvery and i % slowEvery == 0:
                await trio.sleep(0.001)

    async def _tool_fail_at(self, request: Request, at: int = 100):
        for i in range(1, at):
            yield {"i": i}
        raise OlaneError(4010, f"failed at {at}")


async def _collect(client, ma, method, params):
    call = client.use_streaming("o://flood", method, params, via=ma)
    seen = []
    error = None
    try:
        async for response in call.responses():
            seen.append((response.sequence, response.data, response.last, response.chunks))
    except OlaneError as exc:
        error = (exc.code, exc.message)
    return seen, error, call


@pytest.mark.parametrize("wire", ["auto", "json", "msgpack"])
def test_batched_and_unbatched_calls_give_identical_chunk_sequences(wire):
    async def body():
        async with NodeAndClient([Flood()]) as nc:
            async with Client(codec=wire, batch=True) as batched, Client(codec=wire, batch=False) as single:
                for client in (batched, single):
                    await client.connect(nc.ma)
                cases = [("count", {"count": 20_000, "size": 50}), ("count", {"count": 3000, "slowEvery": 7}),
                         ("count", {"count": 300, "size": 40_000}), ("count", {"count": 1}),
                         ("count", {"count": 0}), ("fail_at", {"at": 5000})]
                for method, params in cases:
                    a, a_err, a_call = await _collect(batched, nc.ma, method, params)
                    b, b_err, b_call = await _collect(single, nc.ma, method, params)
                    assert a == b and a_err == b_err, (method, params)
                    assert a_call.batch and not b_call.batch
                    n = params.get("count", params.get("at", 1) - 1)
                    assert [s for s, _, last, _ in a if not last] == list(range(1, n + 1))

    run_trio(body, timeout=120)


def test_batching_puts_several_chunks_in_a_frame():
    """Frames on the wire, read raw: a caller that asked gets fewer frames than chunks."""

    async def body():
        async with NodeAndClient([Flood()]) as nc:
            call = nc.client.use_streaming("o://flood", "count", {"count": 20_000}, via=nc.ma)
            got = 0
            async for _ in call:
                got += 1
            assert got == 20_000 and call.batch
            assert call.final_response.chunks == 20_000
            frames = call.frames_read
            assert frames < 20_000 // 4, frames

    run_trio(body, timeout=60)


def test_a_caller_that_does_not_ask_gets_one_frame_per_chunk_byte_for_byte():
    """What a TypeScript caller (who never asks) sees: each frame is exactly the
    frame of the plain encoder, whatever the writer found waiting."""
    from libp2p.custom_types import TProtocol

    async def body():
        async with NodeAndClient([Flood()]) as nc:
            peer = await nc.client.peers.peer_at(nc.ma)
            stream = await nc.client.host.new_stream(peer, [TProtocol("/o/flood")])
            request = {"jsonrpc": "2.0", "id": "ts-1", "method": "route",
                       "params": {"_connectionId": "conn-ts", "_requestMethod": "route", "_callerAddress": "o://ts",
                                  "_isStreaming": True, "address": "o://flood",
                                  "payload": {"method": "count", "params": {"count": 2000, "_isStreaming": True}}}}
            await stream.write(frame(orjson.dumps(request)))
            decoder = FrameDecoder()
            payloads: list[bytes] = []
            while not payloads or b'"_last":true' not in payloads[-1]:
                payloads += decoder.feed(await stream.read(1 << 16))
            await stream.reset()
            req = IncomingRequest(id="ts-1", method="count", params={}, envelope=True, connection_id="conn-ts")
            assert len(payloads) == 2001
            for i, payload in enumerate(payloads[:-1], start=1):
                assert payload == codec.encode(chunk_frame(req, {"i": i, "pad": "", "delta": str(i % 10)}, i))

    run_trio(body, timeout=60)


def test_identify_lists_batch_frames_and_the_client_learns_it():
    async def body():
        async with NodeAndClient([Flood()]) as nc:
            ident = await nc.client.use("o://flood", "identify", via=nc.ma)
            assert ident["frames"] == ["batch", "input"]

    run_trio(body)


def test_msgpack_module_packer_matches_packb():
    value = {"a": [1, b"\x00", "s", {"b": None}]}
    assert codec.encode(value, codec.MSGPACK) == msgpack.packb(value, use_bin_type=True)


def _whole_read(payload: bytes):
    """What the client reads from a frame without the fast path (None: it cannot read it)."""
    try:
        response = parse_response(codec.decode_answer(payload))
    except OlaneError:
        return None
    response.size = len(payload)
    return response


@pytest.mark.parametrize("wire", [codec.JSON, codec.MSGPACK])
def test_chunk_reader_reads_exactly_what_parse_response_reads(wire):
    from node_runtime.messages import ChunkReader

    req = REQUESTS[0]
    reader = ChunkReader(req.id, req.method, req.connection_id, wire)
    encoder = ChunkEncoder(req, wire)
    # data that looks like the envelope around it: the reader must find the real tail
    mimic = {"success": True, "_last": False, "_isStreaming": True, "_requestMethod": req.method,
             "_connectionId": req.connection_id, "_sequence": 3}
    for data in (*DATA, mimic, [mimic, 4], '"_sequence":5}}', "ence\xcc\x05"):
        for sequence in (1, 10, 127, 128, 255, 256, 12345, 70_000, 2**32, 2**40, 2**64 - 1):
            payload = encoder.chunk(encoder.data(data), sequence)
            fast = reader.read(payload)
            if wire == codec.JSON and sequence >= 10**19:  # 20 digits: left to the whole decode
                assert fast is None
                continue
            assert fast is not None and fast == _whole_read(payload)
            assert type(fast.sequence) is int and fast.sequence == sequence
    # anything else is left to the whole decode
    other = ChunkEncoder(IncomingRequest(id="other", method=req.method, params={}, envelope=True,
                                         connection_id=req.connection_id), wire)
    if wire == codec.JSON:
        tricky = encoder.head + b'1,"data":2' + encoder.tail + b"3}}"
        odd = [tricky, encoder.head + b"1" + encoder.tail + b"01}}", encoder.head + b"1" + encoder.tail + b"x}}",
               encoder.head + b"1" + encoder.tail + b"18446744073709551616}}"]  # 2**64: orjson reads a float
    else:
        odd = [encoder.chunk(encoder.data(1) + encoder.data(2), 3),  # two values where the data goes
               encoder.chunk(b"", 1), encoder.head + encoder.data(1) + encoder.tail + msgpack.packb(-1),
               encoder.head + encoder.data(1) + encoder.tail + msgpack.packb("1")]
    for payload in (other.chunk(encoder.data(1), 1), encoder.batch([encoder.data(1), encoder.data(2)], 1), *odd,
                    codec.encode({"jsonrpc": "2.0", "id": req.id, "result": {"id": req.id, "data": 1, "_last": True}},
                                 wire)):
        assert reader.read(payload) is None


def test_the_decoders_nest_1024_levels_deep():
    """ChunkReader's FAST_DATA_MAX assumes it: data decoded alone nests 2 levels
    deeper than inside its frame, so only data too short to reach the limit is."""
    from node_runtime.messages import DECODER_DEPTH

    assert DECODER_DEPTH == 1024
    orjson.loads(b"[" * 1024 + b"]" * 1024)
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(b"[" * 1025 + b"]" * 1025)
    msgpack.unpackb(b"\x91" * 1023 + b"\x90")
    with pytest.raises(Exception):
        msgpack.unpackb(b"\x91" * 1024 + b"\x90")


def _depth(value) -> int:
    """How many lists deep `value` is (nested lists of one item or none)."""
    n = 0
    while type(value) is list:
        n += 1
        value = value[0] if value else None
    return n


@pytest.mark.parametrize("wire", [codec.JSON, codec.MSGPACK])
def test_data_too_deep_for_its_frame_is_refused_as_the_whole_decode_refuses_it(wire):
    """Data nested 1,023 levels decodes alone but not inside its 2-level frame: the
    fast path must not take it (its frame fails to decode, as from any peer)."""
    from node_runtime.messages import ChunkReader

    req = REQUESTS[0]
    reader = ChunkReader(req.id, req.method, req.connection_id, wire)
    encoder = ChunkEncoder(req, wire)
    for depth in (1020, 1022, 1023, 1024):
        data = (b"[" * depth + b"]" * depth) if wire == codec.JSON else (b"\x91" * (depth - 1) + b"\x90")
        payload = encoder.chunk(data, 1)
        whole = _whole_read(payload)
        assert (whole is None) == (depth > 1022)
        fast = reader.read(payload)
        if whole is None:
            assert fast is None
        elif fast is not None:  # (== on lists 1,000 deep would hit Python's recursion limit)
            assert _depth(fast.data) == _depth(whole.data) == depth and fast.sequence == 1


values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40) | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=30)


@settings(max_examples=300, derandomize=True, database=None, deadline=None)
@given(wire=st.sampled_from([codec.JSON, codec.MSGPACK]), data=values,
       sequence=st.integers(0, 2**64 - 1) | st.integers(1, 300), primed=st.booleans(),
       cut=st.integers(0, 40), junk=st.binary(max_size=4))
def test_the_chunk_reader_reads_every_frame_as_the_whole_decode_does(wire, data, sequence, primed, cut, junk):
    """Generated chunk frames, whole, cut short or with bytes added at the end: the
    fast path reads exactly what the whole decode reads, or leaves the frame to it
    (`primed`: the reader has just read the chunk before, so it expects this one)."""
    from node_runtime.messages import ChunkReader

    req = REQUESTS[0]
    reader = ChunkReader(req.id, req.method, req.connection_id, wire)
    encoder = ChunkEncoder(req, wire)
    if primed and sequence > 0:
        reader.read(encoder.chunk(encoder.data(None), sequence - 1))
    payload = encoder.chunk(encoder.data(data), sequence)
    variants = (payload[:len(payload) - cut], payload + junk, payload[:len(payload) - cut] + junk)
    for variant in variants:  # read first, while the reader still expects `sequence`
        fast = reader.read(variant)
        if fast is not None:
            assert fast == _whole_read(variant)
    fast = reader.read(payload)
    assert fast is None or fast == _whole_read(payload)
    assert fast is not None or (wire == codec.JSON and sequence >= 10**19)  # 20 digits: the whole decode's


@pytest.mark.parametrize("wire", [codec.JSON, codec.MSGPACK])
def test_a_relays_chunk_check_knows_exactly_our_chunk_frames(wire):
    """routing.ChunkShape: a relay passes such frames on undecoded; anything else (a
    final or error frame, another request's, two values where the data goes) it decodes."""
    from node_runtime.messages import error_frame, final_frame
    from node_runtime.routing import ChunkShape

    for req in REQUESTS:
        is_chunk = ChunkShape(req, wire)
        encoder = ChunkEncoder(req, wire)
        for data in DATA:
            for sequence in (1, 127, 128, 70_000, 2**40):
                payload = encoder.chunk(encoder.data(data), sequence)
                batched = encoder.batch([encoder.data(data)] * 3, sequence)
                assert is_chunk(payload) and is_chunk(batched)
                assert not is_chunk(payload[:-1]) and not is_chunk(batched[:-1])
        two_values = encoder.data(1) + (b',"error":1' if wire == codec.JSON else encoder.data("error") + encoder.data(1))
        other = ChunkEncoder(IncomingRequest(id="other", method=req.method, params={}, envelope=True,
                                             connection_id=req.connection_id), wire)
        for payload in (encoder.chunk(two_values, 1), other.chunk(encoder.data(1), 1),
                        codec.encode(final_frame(req, {"x": 1}, sequence=2, chunks=1), wire),
                        codec.encode(error_frame(req, OlaneError(4001, "no"), sequence=2, chunks=1), wire)):
            assert not is_chunk(payload)
        if wire == codec.JSON:
            assert not is_chunk(encoder.head + b"1" + encoder.tail + b"01}}")
        # data that may nest too deep for its frame is decoded whole, where the depth limit applies
        deep = (b"[" * 1023 + b"]" * 1023) if wire == codec.JSON else (b"\x91" * 1022 + b"\x90")
        assert not is_chunk(encoder.chunk(deep, 1))


class Firehose(Tool):
    address = "o://firehose"

    def __init__(self) -> None:
        super().__init__()
        self.produced = 0
        self.closed = False

    async def _tool_pour(self, request: Request, count: int = 2_000_000):
        try:
            for i in range(1, count + 1):  # never awaits: only the writer's backpressure stops it
                self.produced = i
                yield {"i": i}
        finally:
            self.closed = True


def test_a_batched_stream_left_early_stops_a_generator_that_never_awaits():
    async def body():
        tool = Firehose()
        async with NodeAndClient([tool]) as nc:
            call = nc.client.use_streaming("o://firehose", "pour", {}, via=nc.ma)
            got = 0
            async for _ in call:
                got += 1
                if got == 50_000:
                    break
            assert call.batch
            while not tool.closed:
                await trio.sleep(0.01)
            assert tool.produced < 2_000_000
            assert await nc.client.use("o://firehose", "ping", via=nc.ma) == {"message": "Pong!"}

    run_trio(body, timeout=120)


def test_a_batched_call_read_by_responses_and_next_response_in_turn_gives_each_chunk_once():
    """responses() hands out a decoded batch's chunks itself; a caller that also
    asks next_response() meanwhile still sees every chunk once, in order."""

    async def body():
        async with NodeAndClient([Flood()]) as nc:
            call = nc.client.use_streaming("o://flood", "count", {"count": 20_000, "size": 10}, via=nc.ma)
            seen = []
            async for response in call.responses():
                seen.append(response.sequence)
                if len(seen) % 7 == 0 and not response.last:
                    extra = await call.next_response()
                    seen.append(extra.sequence)
                    if extra.last:
                        break
            assert call.batch and call.frames_read < 20_000 // 4
            assert seen[:20_000] == list(range(1, 20_001)) and call.chunks == 20_000
            assert call.final_response.chunks == 20_000

            left = nc.client.use_streaming("o://flood", "count", {"count": 50_000}, via=nc.ma)
            async for response in left.responses():
                if response.sequence == 1234:
                    break  # mid-frame
            assert left.chunks == 1234 and not left.done
            await left.aclose()  # the stream is reset, the node stops the tool
            assert left.cancelled
            assert await nc.client.use("o://flood", "count", {"count": 3}, via=nc.ma) is not None

    run_trio(body, timeout=60)


class Pauses(Tool):
    address = "o://pauses"

    async def _tool_three_then_wait(self, request: Request, wait: float = 30.0):
        for i in range(1, 4):
            yield {"i": i}
        await trio.sleep(wait)
        yield {"i": 4}


@pytest.mark.parametrize("wire", [codec.JSON, codec.MSGPACK])
def test_the_idle_deadline_holds_on_the_fast_path_and_spares_a_slow_reader(wire):
    """Chunks read by the fast path restart the idle wait once per read: a node that
    stops mid-stream still ends the call with 4017 after `idle_timeout`, while a
    caller slower than `idle_timeout` between chunks already read is not cut off."""
    async def body():
        async with NodeAndClient([Pauses()]) as nc:
            slow = []
            async with nc.client.use_streaming("o://pauses", "three_then_wait", {"wait": 1.0}, via=nc.ma,
                                               codec=wire, idle_timeout=0.6, timeout=20) as call:
                async for response in call.responses():
                    if not response.last:
                        slow.append(response.data["i"])
                        await trio.sleep(0.8)  # longer than idle_timeout, per chunk
            stalled = []
            with pytest.raises(OlaneError) as info:
                async with nc.client.use_streaming("o://pauses", "three_then_wait", {"wait": 30}, via=nc.ma,
                                                   codec=wire, idle_timeout=0.6, timeout=20) as call:
                    async for response in call.responses():
                        stalled.append(response.data["i"])
            return slow, stalled, info.value

    slow, stalled, error = run_trio(body)
    assert slow == [1, 2, 3, 4]
    assert stalled == [1, 2, 3] and error.code == 4017 and "no next frame" in error.message


@settings(max_examples=200, derandomize=True, database=None, deadline=None)
@given(sizes=st.lists(st.sampled_from([0, 1, 127, 128, 300, 4095, 4096, 4097, 70_000]), min_size=1, max_size=6),
       cuts=st.lists(st.integers(1, 9000), min_size=1, max_size=40))
def test_the_frame_decoder_gives_the_same_payloads_however_the_bytes_are_cut(sizes, cuts):
    """Short frames are joined as bytes, long ones gathered in a bytearray
    (framing.LONG_FRAME_BYTES): either way every payload comes out whole, once,
    in order, as bytes, and `buffered` counts the bytes of the frame cut off."""
    payloads = [bytes([i % 251]) * n for i, n in enumerate(sizes)]
    wire = b"".join(frame(p) for p in payloads)
    decoder = FrameDecoder(1 << 20)
    out, at, k = [], 0, 0
    while at < len(wire):
        piece = wire[at:at + cuts[k % len(cuts)]]
        at += len(piece)
        k += 1
        got = decoder.feed(bytearray(piece) if k % 2 else piece)
        assert all(type(p) is bytes for p in got)
        out += got
        whole = sum(len(frame(p)) for p in out)
        assert decoder.buffered == at - whole
    assert out == payloads and decoder.buffered == 0
