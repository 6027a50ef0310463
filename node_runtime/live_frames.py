"""Serving a live stream's reader (a `live.Sink`) on one caller's stream: the
resumable or shared call itself, a resume, a tap. Chunk frames carry the
stream's own sequences; the first names the stream (`_streamId`), and one
after lost chunks says how many (`_dropped`) (docs/protocol-extensions.md)."""
from __future__ import annotations

from bisect import bisect_left
from itertools import accumulate
from operator import add
from typing import TYPE_CHECKING

import trio

from . import codec as codecs
from .errors import ErrorCode, OlaneError
from .framing import frame
from .live import FINAL, Sink, Tap
from .messages import ChunkEncoder, IncomingRequest, answer_too_large, chunk_frame, error_frame, final_frame

if TYPE_CHECKING:
    from .stream_io import FrameWriter


async def serve_live(session, req: IncomingRequest, codec: str, tool, spec, kwargs: dict, request) -> dict:
    """Run a live request on `session`'s stream; return its terminal frame. A
    built-in that returns a sink (tap, resume) is served as it; any other method
    runs in a producer (resumable, or shared by its share key)."""
    streams = session.node.streams
    if spec.sink:
        sink = await spec.function(tool, request, **kwargs)
    else:
        sink = streams.produce(req, session.peer_id, tool.address.value,
                               lambda: spec.function(tool, request, **kwargs), codec)
    try:
        write = write_tap if sink.kind == "tap" else write_sink
        answer, sent = await write(session.writer, req, codec, sink, session.limits.max_frame_bytes)
        session.node.metrics.chunks_sent += sent
        streams.delivered(sink)
        return answer
    finally:
        streams.leave(sink)


async def write_sink(writer: "FrameWriter", req: IncomingRequest, codec: str, sink: Sink,
                     limit: int) -> tuple[dict, int]:
    """Write the sink's chunks until its stream ends: (terminal frame, chunks sent)."""
    encoder = ChunkEncoder(req, codec)
    batch_bytes = encoder.batch_bytes(limit) if req.batch else 0
    offset = sink.offset
    producer = sink.record.producer
    shared = producer is not None and producer.codec == codec  # the producer's encoding is ours
    sent = 0
    pending: list[bytes] = []  # consecutive plain chunks going out as one batched frame
    first = 0
    pending_bytes = 0

    async def flush() -> None:
        nonlocal pending, pending_bytes
        if pending:
            payload = encoder.chunk(pending[0], first) if len(pending) == 1 else encoder.batch(pending, first)
            pending, pending_bytes = [], 0
            await _send(writer, payload, limit, sink)

    while True:
        if writer.pending_bytes:
            # the writer is still busy with what we queued: let the chunks pile up in the
            # sink and take them together (one batched frame, not one frame per wake-up:
            # a flat-out resumable stream into the console went 35k -> 54k chunks/s,
            # plain 61k, at load 3.8)
            await writer.wait_taken()
        entries = await sink.take()
        if sink.detached:
            raise OlaneError(ErrorCode.INVALID_STATE, "the stream was resumed on another connection")
        if not entries:
            break  # the end
        for seq, item, dropped, data in entries:
            seq -= offset
            if data is None or not shared:
                data = encoder.data(item)
            sent += 1
            extras = None
            if sink.announce:
                sink.announce = False
                extras = {"_streamId": sink.record.stream_id}
            if dropped:
                extras = {**(extras or {}), "_dropped": dropped}
            if extras is None and len(data) <= batch_bytes:
                if pending and seq == first + len(pending) and pending_bytes + len(data) < batch_bytes:
                    pending.append(data)
                    pending_bytes += len(data) + 1
                    continue
                await flush()
                pending, first, pending_bytes = [data], seq, len(data)
                continue
            await flush()
            if extras is None:
                payload = encoder.chunk(data, seq)
            else:
                message = chunk_frame(req, item, seq)
                message["result"].update(extras)
                payload = codecs.encode(message, codec)
            await _send(writer, payload, limit, sink)
        await flush()
    return _final(req, sink, offset), sent


def _final(req: IncomingRequest, sink: "Sink | Tap", offset: int) -> dict:
    kind, value, chunks = sink.end
    total = chunks - offset
    if kind == FINAL:
        answer = final_frame(req, value, sequence=total + 1, chunks=total)
    else:
        answer = error_frame(req, value, sequence=total + 1, chunks=total)
    if sink.pending_dropped:  # the last chunks were lost: the final frame says so
        answer["result"]["_dropped"] = sink.pending_dropped
    return answer


async def write_tap(writer: "FrameWriter", req: IncomingRequest, codec: str, tap: Tap,
                    limit: int) -> tuple[dict, int]:
    """Write a tap's chunks until its stream ends: (terminal frame, chunks sent).
    Each take is runs of consecutive chunks whose data the stream's log encoded
    once for all its taps: a run goes out in batched frames cut by byte size
    without a step per chunk here (bisect over the running sizes)."""
    encoder = ChunkEncoder(req, codec)
    batch_bytes = encoder.batch_bytes(limit) if req.batch else 0
    tap.record.read_in(tap, codec)
    sent = 0

    async def run(first: int, items: list, data: "list | None", dropped: int) -> None:
        nonlocal sent
        n = len(items)
        sent += n
        if tap.announce or dropped:  # such a chunk travels alone, with its extras
            message = chunk_frame(req, items[0], first)
            if tap.announce:
                tap.announce = False
                message["result"]["_streamId"] = tap.record.stream_id
            if dropped:
                message["result"]["_dropped"] = dropped
            await _send(writer, codecs.encode(message, codec), limit, tap)
            if n == 1:
                return
            first, items, n = first + 1, items[1:], n - 1
            if data is not None:
                data = data[1:]
        if data is None:
            data = [None] * n
        if None in data:  # not encoded by the log (it began after this tap's cursor, or could not)
            data = [d if d is not None else encoder.data(items[k]) for k, d in enumerate(data)]
        if not batch_bytes:
            for k in range(n):
                await _send(writer, encoder.chunk(data[k], first + k), limit, tap)
            return
        # key[j] - key[k - 1] - 1: the bytes of data[k..j] joined by one separator each
        key = list(map(add, accumulate(map(len, data)), range(n)))
        k = 0
        while k < n:
            base = key[k - 1] if k else -1
            end = bisect_left(key, base + 1 + batch_bytes, k)
            if end <= k + 1:  # one chunk (or one over the batch size): a plain chunk frame
                end = k + 1
                payload = encoder.chunk(data[k], first + k)
            else:
                payload = encoder.batch(data[k:end], first + k)
            await _send(writer, payload, limit, tap)
            k = end

    while True:
        held, first, items, data, dropped = await tap.take()
        if tap.detached:
            raise OlaneError(ErrorCode.INVALID_STATE, "the tap was stopped")
        if not held and not items:
            break  # the end
        # held: the ring's chunks (from "buffer") or a slow tap's share, cut into runs of consecutive chunks
        start = 0
        for j in range(1, len(held) + 1):
            if j == len(held) or held[j][2] or held[j][0] != held[j - 1][0] + 1:
                part = held[start:j]
                await run(part[0][0], [e[1] for e in part], [e[3] for e in part], part[0][2])
                start = j
        if items:
            await run(first, items, data, dropped)
    return _final(req, tap, 0), sent


async def _send(writer: "FrameWriter", payload: bytes, limit: int, sink: Sink) -> None:
    if len(payload) > limit:
        raise answer_too_large(len(payload), limit)
    data = frame(payload)
    if not writer.send_nowait(data):
        sink.blocked = True  # the reader may be behind: a tap then drops rather than hold the stream up
        sink.blocked_since = trio.current_time()
        try:
            await writer.send(data)
        finally:
            sink.blocked = False

