"""Compressed answers between our own peers (docs/protocol-extensions.md,
"Compressed regions"), with zstd's streaming mode (the `zstandard` package).

What a stream's FrameWriter writes together (the frames that accumulated while
the last write was in flight) is compressed together: the frames of requests
that asked for compression are joined, fed to the stream's one compression
context and flushed, and the bytes go out as one *compressed region*: an
ordinary length-prefixed frame whose payload is the byte 0xC1 (never the first
byte of a JSON or msgpack object frame) followed by the flushed zstd bytes.
The receiver feeds them to its one decompression context for that stream and
reads the frames that come out as if they had arrived plain. The context lives
as long as the stream, so a small chunk costs a few bytes once its kind has
been seen; frames of requests that did not ask stay plain, between regions, in
their order.
"""
from __future__ import annotations

from typing import Any

import zstandard

from .errors import ErrorCode, OlaneError
from .framing import FrameDecoder, encode_varint, frame

ZSTD = "zstd"
#: what `identify` lists under `compression`
COMPRESSIONS = (ZSTD,)
#: the first payload byte of a compressed region (0xC1 is never used by msgpack, never starts JSON)
REGION = 0xC1
_REGION_BYTE = bytes((REGION,))
#: a region holds at most this much uncompressed (it stays well under any frame limit)
REGION_INPUT_BYTES = 1 << 20
#: zstd window: 128 KiB of history per stream (memory per compressed stream, both sides)
WINDOW_LOG = 17
LEVEL = 3

_PARAMS = zstandard.ZstdCompressionParameters.from_level(LEVEL, window_log=WINDOW_LOG)


class Squeezed:
    """A frame (bytes) queued in a FrameWriter that goes out compressed."""

    __slots__ = ("data",)
    squeeze = True

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def build(self) -> bytes:
        return self.data


class StreamCompressor:
    """One stream's compression context; `join(entries)` is FrameWriter's join
    of its queued entries: compressed regions for what asked, plain for the rest."""

    def __init__(self) -> None:
        self._cobj = zstandard.ZstdCompressor(compression_params=_PARAMS).compressobj()
        self.plain_bytes = 0  # frame bytes that went into regions
        self.region_bytes = 0  # what those regions took on the wire

    def region(self, data: bytes) -> bytes:
        cobj = self._cobj
        out = cobj.compress(data) + cobj.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
        packed = frame(_REGION_BYTE + out)
        self.plain_bytes += len(data)
        self.region_bytes += len(packed)
        return packed

    def join(self, entries: list[Any]) -> bytes:
        out: list[bytes] = []
        run: list[bytes] = []
        size = 0
        for entry in entries:
            if type(entry) is bytes:
                plain = entry
            elif getattr(entry, "squeeze", False):
                built = entry.build()
                run.append(built)
                size += len(built)
                if size >= REGION_INPUT_BYTES:
                    out.append(self.region(b"".join(run)))
                    run, size = [], 0
                continue
            else:
                plain = entry.build()
            if run:
                out.append(self.region(b"".join(run)))
                run, size = [], 0
            out.append(plain)
        if run:
            out.append(self.region(b"".join(run)))
        return b"".join(out)


class Inflater:
    """The receiving side: payloads as read, compressed regions expanded in place
    into the frames they hold. Counts what the regions took and gave."""

    def __init__(self, max_frame_bytes: int, max_region_bytes: int) -> None:
        self._dobj = zstandard.ZstdDecompressor(max_window_size=1 << 20).decompressobj()
        self._frames = FrameDecoder(max_frame_bytes)
        self._max_region = max_region_bytes
        self.region_bytes = 0  # bytes of the regions read (length prefixes included)
        self.plain_bytes = 0  # bytes they gave

    def expand(self, payloads: list[bytes]) -> list[bytes]:
        for p in payloads:
            if p[:1] == _REGION_BYTE:
                break
        else:
            return payloads  # nothing compressed in this read
        out: list[bytes] = []
        for p in payloads:
            if p[:1] != _REGION_BYTE:
                out.append(p)
                continue
            try:
                data = self._dobj.decompress(p[1:])
            except zstandard.ZstdError as exc:
                raise OlaneError(ErrorCode.INVALID_RESPONSE, f"a compressed region could not be read: {exc}") from None
            if len(data) > self._max_region:
                raise OlaneError(ErrorCode.INVALID_RESPONSE,
                                 f"a compressed region holds {len(data)} bytes, over {self._max_region}")
            self.region_bytes += len(p) + len(encode_varint(len(p)))  # as it came: prefix included
            self.plain_bytes += len(data)
            out.extend(self._frames.feed(data))
        return out
