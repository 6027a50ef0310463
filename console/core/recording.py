"""Recordings: one call kept as a JSONL file, to replay and compare later.

The format (documented in docs/recordings.md) is versioned by its first line:

    {"olane": "recording", "version": 1, "target": ..., "peer": ..., "address": ...,
     "method": ..., "params": {...}, "codec": ..., "streaming": true,
     "started": "2025-01-01T20:00:00.000Z", "source": "olane stream"}
    {"t": 1.234, "recv": 1, "seq": 1, "size": 120, "data": {...}}          one per chunk
    {"t": 2.5, "recv": 2, "seq": 2, "size": 120, "data": {...}, "drops": 3}  (chunks not kept before it)
    {"end": "completed", "final": {...}, "chunks": 2, "elapsed": 3.1, ...}  the last line

`t` and `elapsed` are milliseconds since the request was written. Bytes in `data`
or `final` are written as {"$bytes": "<base64>"} and read back as bytes.

Plain Python, no Textual: the CLI (`olane stream --record`, `replay`, `diff`)
and the console (export, open, auto-record) share it.
"""
from __future__ import annotations

import base64
import json
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Iterable

FORMAT = "recording"
VERSION = 1
BYTES_KEY = "$bytes"

# exit codes `olane stream` uses (and `olane replay` gives back)
EXIT_OK, EXIT_ERROR, EXIT_UNREACHABLE, EXIT_INTERRUPTED = 0, 1, 2, 130
FAILED_TO_DIAL_TARGET = 4014


class RecordingError(ValueError):
    """A file that is not a recording this version can read."""


# -- bytes <-> JSON ----------------------------------------------------------------


def encode_value(value: Any) -> Any:
    """JSON-ready copy of a chunk's data: bytes become {"$bytes": base64}."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {BYTES_KEY: base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, dict):
        return {str(k): encode_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [encode_value(v) for v in value]
    return value


def decode_value(value: Any) -> Any:
    if isinstance(value, dict):
        if len(value) == 1 and BYTES_KEY in value and isinstance(value[BYTES_KEY], str):
            return base64.b64decode(value[BYTES_KEY])
        return {k: decode_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode_value(v) for v in value]
    return value


def _has_bytes(value: Any) -> bool:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return True
    if isinstance(value, dict):
        return any(_has_bytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_bytes(v) for v in value)
    return False


def _encode_fast(value: Any) -> Any:
    # most chunks hold no bytes: skip the copy for them
    if isinstance(value, (dict, list, tuple, bytes, bytearray, memoryview)) and _has_bytes(value):
        return encode_value(value)
    return value


def _dumps(obj: dict) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=str)


def peer_of(multiaddr: str) -> str | None:
    return multiaddr.rsplit("/p2p/", 1)[1] if "/p2p/" in multiaddr else None


def iso_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- the model ------------------------------------------------------------------------


@dataclass
class Header:
    target: str
    address: str
    method: str
    params: dict[str, Any] = field(default_factory=dict)
    peer: str | None = None
    codec: str | None = None
    streaming: bool = True
    started: str = ""  # ISO 8601, UTC
    source: str = ""  # who wrote it: "olane stream", "console export", "console auto-record"
    version: int = VERSION

    def to_json(self) -> dict[str, Any]:
        return {"olane": FORMAT, "version": self.version, "target": self.target, "peer": self.peer,
                "address": self.address, "method": self.method, "params": encode_value(self.params),
                "codec": self.codec, "streaming": self.streaming, "started": self.started,
                "source": self.source}


@dataclass
class Frame:
    """One chunk as it was received."""

    t: float  # ms since the request was written
    recv: int  # receive order, 1-based
    seq: Any  # the `_sequence` the node sent (None if none)
    size: int
    data: Any
    drops: int = 0  # chunks received right before this one that the recording does not hold

    def to_json(self) -> dict[str, Any]:
        out = {"t": round(self.t, 3), "recv": self.recv, "seq": self.seq, "size": self.size,
               "data": _encode_fast(self.data)}
        if self.drops:
            out["drops"] = self.drops
        return out


@dataclass
class End:
    state: str  # completed / failed / cancelled
    chunks: int  # chunks received (recorded or not)
    elapsed: float  # ms since the request was written
    final: Any = None
    final_seq: Any = None
    final_chunks: Any = None  # `_chunks` the final frame declared
    error: dict[str, Any] | None = None  # {code, name, message, details?}
    frames_after_final: int = 0

    @property
    def exit_code(self) -> int:
        """What `olane stream` exited with for this call."""
        if self.state == "completed":
            return EXIT_OK
        if self.state == "cancelled":
            return EXIT_INTERRUPTED
        if self.error and self.error.get("code") == FAILED_TO_DIAL_TARGET:
            return EXIT_UNREACHABLE
        return EXIT_ERROR

    def error_line(self) -> str | None:
        """The line `olane stream` printed on stderr, if any."""
        if self.error is None:
            return None
        e = self.error
        return f"error {e.get('code')} {e.get('name')}: {e.get('message')}"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"end": self.state, "chunks": self.chunks, "elapsed": round(self.elapsed, 3),
                               "final": encode_value(self.final)}
        if self.final_seq is not None:
            out["finalSeq"] = self.final_seq
        if self.final_chunks is not None:
            out["finalChunks"] = self.final_chunks
        if self.error is not None:
            out["error"] = encode_value(self.error)
        if self.frames_after_final:
            out["framesAfterFinal"] = self.frames_after_final
        out["exit"] = self.exit_code
        return out


@dataclass
class Recording:
    header: Header
    frames: list[Frame] = field(default_factory=list)
    end: End | None = None  # None: the file stops before its end line (the writer was killed)
    path: Path | None = None

    @property
    def dropped(self) -> int:
        return sum(f.drops for f in self.frames)

    @property
    def title(self) -> str:
        return self.path.name if self.path else f"{self.header.method}"


# -- writing -------------------------------------------------------------------------


class RecordingWriter:
    """Writes a recording as the call goes: `header()` once, `frame()` per chunk,
    `end()` once. Each line is flushed when written, so a killed writer leaves
    every chunk so far readable (without an end line)."""

    def __init__(self, path: str | os.PathLike, *, buffered: bool = False) -> None:
        self.path = Path(path)
        if self.path.parent and not self.path.parent.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._out: IO[str] | None = self.path.open("w", encoding="utf-8")
        self._buffered = buffered
        self._recv = 0
        self.ended = False

    def header(self, header: Header) -> None:
        if not header.started:
            header.started = iso_now()
        self._write(header.to_json())

    def frame(self, t: float, seq: Any, size: int, data: Any, drops: int = 0) -> None:
        self._recv += 1 + drops
        self._write(Frame(t, self._recv, seq, size, data, drops).to_json(), flush=not self._buffered)

    def end(self, end: End) -> None:
        self._write(end.to_json())
        self.ended = True
        self.close()

    def _write(self, obj: dict, flush: bool = True) -> None:
        out = self._out
        if out is None:
            return
        out.write(_dumps(obj) + "\n")
        if flush:
            out.flush()

    def close(self) -> None:
        out, self._out = self._out, None
        if out is not None:
            out.close()

    def __enter__(self) -> "RecordingWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def write_recording(recording: Recording, path: str | os.PathLike) -> Path:
    """Write a whole recording at once (atomically: a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8") as out:
        out.write(_dumps(recording.header.to_json()) + "\n")
        for f in recording.frames:
            out.write(_dumps(f.to_json()) + "\n")
        if recording.end is not None:
            out.write(_dumps(recording.end.to_json()) + "\n")
    tmp.replace(path)
    return path


# -- reading -------------------------------------------------------------------------


def read_recording(path: str | os.PathLike) -> Recording:
    """Read a recording; RecordingError when the file is not one (or a newer version)."""
    path = Path(path)
    try:
        with path.open("r", encoding="utf-8") as f:
            return parse_lines(f, path)
    except OSError as exc:
        raise RecordingError(f"{path}: {exc.strerror or exc}") from None


def parse_lines(lines: Iterable[str], path: Path | None = None) -> Recording:
    name = str(path) if path else "recording"
    it = iter(lines)
    first = next(it, "")
    try:
        head = json.loads(first)
    except ValueError:
        raise RecordingError(f"{name}: the first line is not JSON (not an olane recording)") from None
    if not isinstance(head, dict) or head.get("olane") != FORMAT:
        raise RecordingError(f"{name}: not an olane recording (no header line)")
    version = head.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise RecordingError(f"{name}: recording format version {version!r}; this olane reads up to {VERSION}")
    header = Header(
        target=str(head.get("target") or ""), address=str(head.get("address") or ""),
        method=str(head.get("method") or ""), params=decode_value(head.get("params") or {}),
        peer=head.get("peer"), codec=head.get("codec"), streaming=bool(head.get("streaming", True)),
        started=str(head.get("started") or ""), source=str(head.get("source") or ""), version=version,
    )
    rec = Recording(header, path=path)
    for number, line in enumerate(it, start=2):
        line = line.strip()
        if not line:
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            if rec.end is None:
                break  # a line cut short by a killed writer: the recording stops there
            raise RecordingError(f"{name}:{number}: not JSON") from None
        if not isinstance(obj, dict):
            raise RecordingError(f"{name}:{number}: not a JSON object")
        if "end" in obj:
            err = obj.get("error")
            rec.end = End(
                state=str(obj["end"]), chunks=int(obj.get("chunks") or 0), elapsed=float(obj.get("elapsed") or 0.0),
                final=decode_value(obj.get("final")), final_seq=obj.get("finalSeq"),
                final_chunks=obj.get("finalChunks"), error=decode_value(err) if isinstance(err, dict) else None,
                frames_after_final=int(obj.get("framesAfterFinal") or 0),
            )
        elif "t" in obj:
            rec.frames.append(Frame(
                t=float(obj["t"]), recv=int(obj.get("recv") or len(rec.frames) + 1), seq=obj.get("seq"),
                size=int(obj.get("size") or 0), data=decode_value(obj.get("data")), drops=int(obj.get("drops") or 0),
            ))
        else:
            raise RecordingError(f"{name}:{number}: neither a chunk nor the end line")
    return rec


# -- from the console's StreamRecord ------------------------------------------------------


def from_stream_record(record: Any, *, source: str = "console", codec: str | None = None) -> Recording:
    """A Recording of what a console StreamRecord holds (chunks dropped from its ring
    count as `drops` on the first chunk kept). Times are made relative to the moment
    the request was written when the record knows it (`request_at`), else to the start."""
    offset = getattr(record, "request_at", None) or 0.0
    started_wall = getattr(record, "started_wall", None) or time.time()
    header = Header(
        target=record.target, address=record.address, method=record.method, params=dict(record.params),
        peer=peer_of(record.target), codec=codec or getattr(record, "codec", None), streaming=record.streaming,
        started=datetime.fromtimestamp(started_wall + offset, timezone.utc).isoformat(timespec="milliseconds")
        .replace("+00:00", "Z"),
        source=source,
    )
    frames: list[Frame] = []
    first = True
    for c in record.chunks():
        # the wire `_sequence`, not the key a JSON-path ordering judges by
        seq = record.wire_sequence(c.index - 1)
        frames.append(Frame((c.at - offset) * 1000, c.index, seq, c.size, c.data,
                            drops=record.first_held if first else 0))
        first = False
    end = None
    state = record.state.value
    if record.state.ended:
        error = None
        if record.error is not None:
            e = record.error
            error = {"code": e.code, "name": e.name, "message": e.message}
            if e.details is not None:
                error["details"] = e.details
        end = End(state=state, chunks=record.count, elapsed=(record.elapsed() - offset) * 1000,
                  final=record.final, final_seq=record.final_sequence, final_chunks=record.final_chunks,
                  error=error, frames_after_final=record.frames_after_final)
    return Recording(header, frames, end)


def default_name(method: str, when: float | None = None, number: int | None = None) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(when))
    middle = f"-{number}" if number is not None else ""
    return f"{method}{middle}-{stamp}.olane-rec.jsonl"


def prune(folder: Path, max_bytes: int, keep: Iterable[Path] = ()) -> list[Path]:
    """Delete the oldest recordings in `folder` until they total at most `max_bytes`."""
    keep = {Path(p).resolve() for p in keep}
    files = sorted(folder.glob("*.jsonl"), key=lambda p: p.stat().st_mtime)
    total = sum(p.stat().st_size for p in files)
    removed = []
    for p in files:
        if total <= max_bytes:
            break
        if p.resolve() in keep:
            continue
        size = p.stat().st_size
        try:
            p.unlink()
        except OSError:
            continue
        total -= size
        removed.append(p)
    return removed


class CallRecorder:
    """Records one call as it happens (what `olane stream --record FILE` uses).
    The header waits until the call has started, so that it can name the tool
    address and the codec actually used; a call that fails before that still
    gets a header (with what was known) and its end line."""

    def __init__(self, path: str | os.PathLike, *, target: str, address: str | None, method: str,
                 params: dict[str, Any], codec: str | None = None, source: str = "olane stream",
                 clock=time.monotonic) -> None:
        self.writer = RecordingWriter(path)
        self.header = Header(target=target, address=address or "", method=method, params=dict(params),
                             peer=peer_of(target), codec=codec, streaming=True, source=source)
        self.clock = clock
        self.began = clock()  # until the request is written, times count from here
        self.count = 0
        self._header_written = False

    @property
    def path(self) -> Path:
        return self.writer.path

    @property
    def header_written(self) -> bool:
        return self._header_written

    def started(self, *, address: str | None = None, codec: str | None = None, written_at: float | None = None,
                streaming: bool = True) -> None:
        """The request was written (at `written_at`, on `clock`)."""
        if address:
            self.header.address = address
        if codec:
            self.header.codec = codec
        self.header.streaming = streaming
        if written_at is not None:
            self.began = written_at
        self._write_header()

    def _write_header(self) -> None:
        if not self._header_written:
            self._header_written = True
            self.header.started = iso_now()
            self.writer.header(self.header)

    def _ms(self, now: float | None = None) -> float:
        return ((self.clock() if now is None else now) - self.began) * 1000

    def chunk(self, data: Any, seq: Any, size: int, now: float | None = None) -> None:
        self._write_header()
        self.count += 1
        self.writer.frame(self._ms(now), seq, size, data)

    def completed(self, final: Any, final_seq: Any = None, final_chunks: Any = None,
                  frames_after_final: int = 0) -> None:
        self._end(End("completed", self.count, self._ms(), final, final_seq, final_chunks,
                      frames_after_final=frames_after_final))

    def failed(self, code: int, name: str, message: str, details: Any = None) -> None:
        error: dict[str, Any] = {"code": code, "name": name, "message": message}
        if details is not None:
            error["details"] = details
        self._end(End("failed", self.count, self._ms(), error=error))

    def cancelled(self) -> None:
        self._end(End("cancelled", self.count, self._ms()))

    def _end(self, end: End) -> None:
        if self.writer.ended:
            return
        self._write_header()
        self.writer.end(end)

    def close(self) -> None:
        self.writer.close()
