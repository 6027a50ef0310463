"""Length-prefixed frames: an unsigned LEB128 varint byte count, then the payload (PROTOCOL.md section 3)."""
from __future__ import annotations

from .errors import ErrorCode, OlaneError

DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024


#: the one-byte prefixes, made once (bytes((n,)) costs a call per frame)
_ONE_BYTE = [bytes((n,)) for n in range(0x80)]


def encode_varint(n: int) -> bytes:
    if n < 0x80:
        if n < 0:
            raise ValueError("varint must be unsigned")
        return _ONE_BYTE[n]
    if n < 0x4000:  # two bytes: frames up to 16 KiB, most of them
        return bytes(((n & 0x7F) | 0x80, n >> 7))
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
    n = len(payload)
    if n < 0x80:
        return _ONE_BYTE[n] + payload
    if n < 0x4000:
        return bytes(((n & 0x7F) | 0x80, n >> 7)) + payload
    return encode_varint(n) + payload


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
        # the bytes of a frame not complete yet: as bytes while short, so each payload is one
        # slice of bytes (a bytearray's slice is copied twice, a third of the cost per frame);
        # a long frame's in a bytearray, so its many reads are not copied again each time
        self._rest = b""
        self._long: bytearray | None = None
        self._need = 0  # the bytes self._long holds once its frame is whole
        self._error: OlaneError | None = None  # framing lost after the frames last returned

    @property
    def buffered(self) -> int:
        """Bytes held of frames not yet complete."""
        return len(self._long) if self._long is not None else len(self._rest)

    def feed(self, data: bytes) -> list[bytes]:
        """Add bytes; return every payload now complete (possibly none).

        When framing breaks (a frame over the limit, a broken length prefix),
        the whole frames before the break are returned first and the error is
        raised by the next call: a peer's last good frame (say, its error
        answer) is read before the garbage that follows it."""
        if self._error is not None:
            raise self._error
        if type(data) is not bytes:
            data = bytes(data)
        long = self._long
        if long is not None:
            long += data
            if len(long) < self._need:
                return []
            src = bytes(long)
            self._long = None
        elif self._rest:
            src = self._rest + data
        else:
            src = data
        out: list[bytes] = []
        pos = 0
        end = len(src)
        limit = self.max_frame_bytes
        need = 0  # the frame cut off at the end: its bytes, prefix included (0: its prefix is cut off too)
        try:
            while pos < end:
                b = src[pos]
                if b < 0x80:  # one-byte prefix
                    length = b
                    p = pos + 1
                elif pos + 1 < end and src[pos + 1] < 0x80:  # two-byte prefix
                    length = (b & 0x7F) | (src[pos + 1] << 7)
                    p = pos + 2
                else:
                    header = _read_varint(src, pos, end)
                    if header is None:  # length prefix not complete yet
                        break
                    length, p = header
                if length > limit:
                    raise FrameTooLarge(length, limit)
                if p + length > end:
                    need = p + length - pos
                    break
                out.append(src[p:p + length])
                pos = p + length
        except OlaneError as exc:
            self._rest = b""
            if not out:
                raise
            self._error = exc
            return out
        if pos == end:
            self._rest = b""
        elif need > LONG_FRAME_BYTES:
            self._long = bytearray(memoryview(src)[pos:])
            self._need = need
            self._rest = b""
        else:
            self._rest = src[pos:] if pos else src
        return out


#: a frame longer than this, while it comes in, is gathered in a bytearray (FrameDecoder):
#: joining bytes copies what came before on every read, which a peer sending a long
#: frame a byte at a time would make quadratic
LONG_FRAME_BYTES = 4096


def _read_varint(buf: "bytes | bytearray", pos: int, end: int) -> "tuple[int, int] | None":
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
