"""The tap log (node_runtime/live.py `Tap`, `ActiveStream.fan_out`) as a unit: a
tap behaves as a bounded queue drained by each take (the first `capacity` chunks
since its last take, the rest lost and counted on the next chunk), whether or not
the log moved its share aside; its frames are the ones a per-chunk encoding gives.
A recording writer stands in for the stream (the network path is in
tests/test_live_streams.py)."""
from __future__ import annotations

import trio

from node_runtime import codec as codecs
from node_runtime.framing import FrameDecoder
from node_runtime.limits import Limits
from node_runtime.live import FINAL, ActiveStream, Tap
from node_runtime.live_frames import write_tap
from node_runtime.messages import ChunkEncoder, IncomingRequest, chunk_frame
from node_runtime.streams import StreamRegistry

from trio_helpers import trio_test


def _req(i: int, batch: bool = True) -> IncomingRequest:
    return IncomingRequest(id=f"req-{i}", method="tap", params={}, envelope=True, connection_id=f"c{i}", batch=batch)


class _Recorder:
    """Takes every frame at once (a writer whose reader keeps up)."""

    pending_bytes = 0

    def __init__(self) -> None:
        self.frames = FrameDecoder()
        self.payloads: list[bytes] = []

    def send_nowait(self, data: bytes) -> bool:
        self.payloads += self.frames.feed(data)
        return True

    async def send(self, data: bytes) -> None:
        self.send_nowait(data)


def _stream(capacity: int, taps: int) -> tuple[ActiveStream, list[Tap]]:
    record = ActiveStream(_req(0), "peer", "o://demo")
    made = [Tap(record, capacity, "peer") for _ in range(taps)]
    for tap in made:
        record.add_tap(tap)
        record.read_in(tap, codecs.JSON)
    return record, made


def _push(record: ActiveStream, first: int, last: int) -> None:
    encode = ChunkEncoder(_req(0), codecs.JSON).data
    for seq in range(first, last + 1):
        item = {"i": seq}
        record.chunks = seq
        record.fan_out(seq, item, codecs.JSON, encode(item))


@trio_test(timeout=10)
async def test_a_tap_gets_what_fits_loses_the_rest_and_says_how_many():
    record, (slow, fast) = _stream(capacity=4, taps=2)
    got_fast: list[int] = []
    for seq in range(1, 21):  # the fast tap takes after every chunk; the slow one never
        _push(record, seq, seq)
        held, first, items, _, dropped = await fast.take()
        assert not held and dropped == 0
        got_fast += [first + k for k in range(len(items))]
    assert got_fast == list(range(1, 21))
    # the log moved the slow tap's share (1..4) aside rather than keep 20 chunks for it
    assert len(record.log_items) <= record.log_limit and [e[0] for e in slow.held] == [1, 2, 3, 4]
    held, first, items, data, dropped = await slow.take()
    assert [e[0] for e in held] == [1, 2, 3, 4] and items == []
    _push(record, 21, 23)
    held, first, items, data, dropped = await slow.take()
    assert (held, first, [i["i"] for i in items], dropped) == ([], 21, [21, 22, 23], 16)
    assert data == [codecs.encode_json({"i": s}) for s in (21, 22, 23)]  # encoded once, shared
    assert slow.dropped_total == 16 and fast.dropped_total == 0


@trio_test(timeout=10)
async def test_tap_frames_are_the_per_chunk_frames_and_drops_reach_the_final_frame():
    record, (tap,) = _stream(capacity=3, taps=1)
    tap.preload([(s, {"i": s}, 0) for s in (1, 2)])  # from "buffer": the ring's chunks
    record.chunks = 2
    tap.cursor = 3
    writer = _Recorder()
    req = _req(5)

    async def serve():
        answer["frame"], answer["sent"] = await write_tap(writer, req, codecs.JSON, tap, 1 << 20)

    answer: dict = {}
    _push(record, 3, 8)  # 1, 2 held; 3 fits; 4..8 lost (a queue of 3)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve)
        await trio.sleep(0.01)
        _push(record, 9, 11)
        await trio.sleep(0.01)
        _push(record, 12, 20)  # 12..14 fit (moved aside by the log), 15..20 lost right at the end
        record.end_taps(FINAL, {"message": ""})
    encoder = ChunkEncoder(req, codecs.JSON)
    data = lambda *seqs: [encoder.data({"i": s}) for s in seqs]  # noqa: E731
    first = chunk_frame(req, {"i": 1}, 1)
    first["result"]["_streamId"] = record.stream_id
    after_loss = chunk_frame(req, {"i": 9}, 9)
    after_loss["result"]["_dropped"] = 5
    assert writer.payloads == [
        codecs.encode(first), encoder.chunk(data(2)[0], 2), encoder.chunk(data(3)[0], 3), codecs.encode(after_loss),
        encoder.batch(data(10, 11), 10), encoder.batch(data(12, 13, 14), 12)]
    final = answer["frame"]["result"]
    assert answer["sent"] == 9 and (final["_chunks"], final["_dropped"]) == (20, 6) and tap.dropped_total == 11


@trio_test(timeout=10)
async def test_a_tap_from_buffer_on_a_plain_tapped_stream_gets_its_newest_chunks():
    registry = StreamRegistry(limits=Limits(tap_queue_chunks=16, tap_buffer_chunks=8))
    record = registry.begin(_req(0), "peer", "o://demo")
    early = registry.tap("peer", record.stream_id, "buffer")  # nothing kept before its first tap
    record.read_in(early, codecs.JSON)
    for seq in range(1, 41):  # it keeps up, taking every chunk
        _push(record, seq, seq)
        _, first, items, _, _ = await early.take()
        assert (first, len(items)) == (seq, 1)
    late = registry.tap("peer", record.stream_id, "buffer")
    _push(record, 41, 41)
    held, first, items, data, dropped = await late.take()
    assert (held, first, [i["i"] for i in items], dropped) == ([], 33, list(range(33, 42)), 0)
    assert data is None  # its codec was never asked for: its writer encodes these itself
    now = registry.tap("peer", record.stream_id)
    _push(record, 42, 42)
    assert (await now.take())[1:3] == (42, [{"i": 42}])
