"""`olane stream --record`, `olane replay`, `olane diff`: plain functions over
console.core.recording and console.core.diff. Output is exactly what `olane
stream` prints: one JSON line per chunk `{"seq": n, "data": ...}`, then
`{"final": ..., "chunks": N}`; an error answer is `error CODE NAME: message` on
stderr. No Textual here."""
from __future__ import annotations

import json
import sys
import time
from typing import IO, Any, Callable

from node_runtime.codec import json_default

from console.core import diff as D
from console.core.recording import CallRecorder, Recording, RecordingError, read_recording

EXIT_USAGE = 2


def dumps(value: Any) -> str:
    """The JSON `olane stream` prints (same separators, bytes as base64)."""
    return json.dumps(value, ensure_ascii=False, default=json_default)


def chunk_line(seq: Any, count: int, data: Any) -> str:
    return dumps({"seq": seq if seq is not None else count, "data": data})


def final_line(final: Any, chunks: int) -> str:
    return dumps({"final": final, "chunks": chunks})


# -- olane stream [--record FILE] -----------------------------------------------------------


async def stream_call(client, target: str, method: str, params: dict, *, via: str, protocol: str | None = None,
                      timeout: float | None = None,
                      idle_timeout: float = 120.0, out: IO[str] = None, recorder: CallRecorder | None = None) -> None:
    """The body of `olane stream`: print each chunk, then the final line; with a
    recorder, write the recording as the frames arrive. Raises OlaneError on an
    error answer (after printing the chunks before it). `timeout` bounds the whole
    call, `idle_timeout` the wait for the first frame and between frames."""
    import trio

    from node_runtime import OlaneError

    out = out or sys.stdout
    call = client.use_streaming(target, method, params, via=via, timeout=timeout, protocol=protocol,
                                first_frame_timeout=idle_timeout, idle_timeout=idle_timeout)
    count = 0
    try:
        await call.start()
        if recorder is not None:
            recorder.started(address=str(call.address.value), codec=getattr(call, "wire_codec", None),
                             written_at=call.started_at)
        async for response in call.responses():
            if response.last:
                break
            count += 1
            if recorder is not None:
                recorder.chunk(response.data, response.sequence, response.size)
            out.write(chunk_line(response.sequence, count, response.data) + "\n")
        out.write(final_line(call.final, count) + "\n")
        out.flush()
        if recorder is not None:
            fr = call.final_response
            recorder.completed(call.final, fr.sequence if fr else None, fr.chunks if fr else None,
                               frames_after_final=call.frames_after_final)
    except OlaneError as exc:
        if recorder is not None:
            recorder.failed(exc.code, exc.name, exc.message, exc.details)
        raise
    except BaseException as exc:
        # a cancelled scope is the command's deadline: the error it becomes reaches the
        # recorder through record_failure; anything else (^C) ends the recording here
        if recorder is not None and not isinstance(exc, trio.Cancelled):
            recorder.cancelled()
        raise


def record_failure(recorder: CallRecorder, exc) -> None:
    """A call that failed before it started (e.g. the node could not be dialled)."""
    recorder.failed(exc.code, exc.name, exc.message, exc.details)


def finish_recorder(recorder: CallRecorder, err: IO[str] = None) -> None:
    """After the command: a recording that never got an end line is removed (no call was made)."""
    err = err or sys.stderr
    if not recorder.writer.ended:
        if recorder.header_written:  # the call started, and nothing said how it ended
            recorder.cancelled()
            err.write(f"recorded {recorder.count:,} chunk(s) to {recorder.path} (ended without an answer)\n")
            return
        recorder.close()
        if recorder.count == 0:
            try:
                recorder.path.unlink()
            except OSError:
                pass
            err.write(f"nothing recorded: no call was made\n")
            return
    err.write(f"recorded {recorder.count:,} chunk(s) to {recorder.path}\n")


# -- olane replay ----------------------------------------------------------------------------


def replay(path: str, *, speed: float = 1.0, instant: bool = False, out: IO[str] = None, err: IO[str] = None,
           sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> int:
    """Print what `olane stream` printed for the recorded call, at the recorded pace
    divided by `speed` (or at once), and return its exit code."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        rec = read_recording(path)
    except RecordingError as exc:
        err.write(f"{exc}\n")
        return EXIT_USAGE
    if speed <= 0:
        err.write("--speed must be above 0\n")
        return EXIT_USAGE
    start = clock()

    def wait_until(ms: float) -> None:
        if instant:
            return
        delay = start + ms / 1000 / speed - clock()
        if delay > 0:
            out.flush()
            sleep(delay)

    try:
        count = 0
        for f in rec.frames:
            count += 1 + f.drops
            wait_until(f.t)
            if rec.header.streaming:
                out.write(chunk_line(f.seq, count, f.data) + "\n")
        end = rec.end
        if end is None:
            out.flush()
            err.write(f"{path}: the recording stops before its end line (the recorder was stopped)\n")
            return 1
        wait_until(end.elapsed)
        if end.state == "completed":
            out.write((final_line(end.final, end.chunks) if rec.header.streaming else dumps(end.final)) + "\n")
        out.flush()
        line = end.error_line()
        if line:
            err.write(line + "\n")
        elif end.state == "cancelled":
            err.write(f"cancelled after {end.chunks:,} chunk(s)\n")
        if rec.dropped:
            err.write(f"note: {rec.dropped:,} chunk(s) were not kept by the recorder\n")
        return end.exit_code
    except BrokenPipeError:
        return 0


# -- olane diff ------------------------------------------------------------------------------


def diff_files(path_a: str, path_b: str, *, ignore: tuple[str, ...] = (), key: str | None = None,
               as_json: bool = False, out: IO[str] = None, err: IO[str] = None) -> int:
    """Compare two recordings; 0 when data and end agree, 1 when they differ, 2 when
    a file cannot be read."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        a, b = read_recording(path_a), read_recording(path_b)
    except RecordingError as exc:
        err.write(f"{exc}\n")
        return EXIT_USAGE
    result = D.diff(a, b, ignore=ignore, key=key)
    if as_json:
        body = result.to_json()
        body["a"], body["b"] = str(path_a), str(path_b)
        out.write(dumps(body) + "\n")
    else:
        out.write(D.format_text(result, a, b, str(path_a), str(path_b)) + "\n")
    return 0 if result.same else 1


def load(path: str) -> Recording:
    return read_recording(path)
