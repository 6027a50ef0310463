"""Length-prefixed frames: an unsigned LEB128 varint byte count, then the payload (PROTOCOL.md section 3)."""
from __future__ import annotations

from .errors import ErrorCode, OlaneError

DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024


def encode_varint(n: int) -> bytes:
    if n < 0:
        raise ValueError("varint must be unsigned")
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def frame(payload: bytes) -> bytes:
    """Prefix `payload` with its length."""
    return encode_varint(len(payload)) + payload


class FrameTooLarge(OlaneError):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            ErrorCode.INVALID_REQUEST,
            f"frame of {size} bytes exceeds the {limit}-byte limit",
            {"size": size, "limit": limit},
        )
        self.size = size
        self.limit = limit


class FrameDecoder:
    """Incremental decoder: feed bytes as they arrive, take whole payloads out.

    A frame whose declared length exceeds `max_frame_bytes` raises
    `FrameTooLarge` as soon as its prefix is read, before anything is buffered.
    """

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        self.max_frame_bytes = max_frame_bytes
        self._buf = bytearray()
        self._pos = 0
        self._error: OlaneError | None = None  # framing lost after the frames last returned

    @property
    def buffered(self) -> int:
        """Bytes held of frames not yet complete."""
        return len(self._buf) - self._pos

    def feed(self, data: bytes) -> list[bytes]:
        """Add bytes; return every payload now complete (possibly none).

        When framing breaks (a frame over the limit, a broken length prefix),
        the whole frames before the break are returned first and the error is
        raised by the next call: a peer's last good frame (say, its error
        answer) is read before the garbage that follows it."""
        if self._error is not None:
            raise self._error
        buf = self._buf
        if self._pos and self._pos == len(buf):
            buf.clear()
            self._pos = 0
        buf += data
        out: list[bytes] = []
        pos = self._pos
        end = len(buf)
        limit = self.max_frame_bytes
        try:
            while pos < end:
                header = _read_varint(buf, pos, end)
                if header is None:  # length prefix not complete yet
                    break
                length, p = header
                if length > limit:
                    raise FrameTooLarge(length, limit)
                if p + length > end:
                    break
                out.append(bytes(buf[p : p + length]))
                pos = p + length
        except OlaneError as exc:
            buf.clear()
            self._pos = 0
            if not out:
                raise
            self._error = exc
            return out
        # compact now and then so the buffer does not grow without bound
        if pos == end:
            buf.clear()
            self._pos = 0
        elif pos > 1 << 16:
            del buf[:pos]
            self._pos = 0
        else:
            self._pos = pos
        return out


def _read_varint(buf: bytearray, pos: int, end: int) -> "tuple[int, int] | None":
    """(value, position after it), or None when the varint is cut off."""
    b = buf[pos]
    if b < 0x80:
        return b, pos + 1
    value = 0
    shift = 0
    while pos < end:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise OlaneError(ErrorCode.INVALID_REQUEST, "malformed length prefix")
    return None
