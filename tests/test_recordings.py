"""Recordings as a user makes and reads them: `olane stream --record`, `olane replay`
and `olane diff` as real processes against a real demo node (libp2p on 127.0.0.1),
plus the format's reader and writer and the diff's verdicts on their own."""
from __future__ import annotations

import json

import pytest

from console.core import diff as D
from console.core.recording import (CallRecorder, End, Frame, Header, Recording, RecordingError, parse_lines,
                                    read_recording, write_recording)
from node_runtime.host import peer_id_for_seed
from process_helpers import olane, start_node, stop_process


@pytest.fixture(scope="module")
def demo_node():
    proc, ma = start_node("--tools", "demo", "--seed", "recordings-test-node")
    try:
        yield ma
    finally:
        stop_process(proc)


@pytest.fixture(scope="module")
def runs(demo_node, tmp_path_factory):
    """Recorded runs: two of stream_items 300, one of 299, one that fails at 5."""
    folder = tmp_path_factory.mktemp("recordings")
    out = {}
    for name, method, params in [
        ("a300", "stream_items", {"count": 300, "delayMs": 0}),
        ("b300", "stream_items", {"count": 300, "delayMs": 0}),
        ("c299", "stream_items", {"count": 299, "delayMs": 0}),
        ("fail", "stream_with_error", {"failAt": 5, "count": 300, "delayMs": 0}),
    ]:
        path = folder / f"{name}.jsonl"
        proc = olane("stream", demo_node, method, "--params", json.dumps(params), "--record", str(path))
        out[name] = (path, proc)
    return out


# -- olane stream --record ---------------------------------------------------------------


def test_stream_record_writes_header_frames_and_end(runs, demo_node):
    path, proc = runs["a300"]
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(l) for l in path.read_text().splitlines()]
    head, frames, end = lines[0], lines[1:-1], lines[-1]
    assert head["olane"] == "recording" and head["version"] == 1
    assert head["target"] == demo_node and head["peer"] == demo_node.rsplit("/p2p/", 1)[1]
    assert head["address"] == "o://demo" and head["method"] == "stream_items"
    assert head["params"] == {"count": 300, "delayMs": 0} and head["codec"] in ("json", "msgpack")
    assert head["started"].endswith("Z")
    assert len(frames) == 300
    assert [f["seq"] for f in frames] == list(range(1, 301)) and [f["recv"] for f in frames] == list(range(1, 301))
    assert all(f["size"] > 0 and f["t"] >= 0 for f in frames)
    assert [f["t"] for f in frames] == sorted(f["t"] for f in frames)
    assert frames[0]["data"]["id"] == 1
    assert end["end"] == "completed" and end["chunks"] == 300 and end["exit"] == 0
    assert end["elapsed"] >= frames[-1]["t"]
    # stdout is unchanged by --record
    printed = [json.loads(l) for l in proc.stdout.splitlines()]
    assert printed[-1] == {"final": end["final"], "chunks": 300}


def test_failed_stream_records_the_error_and_exits_1(runs):
    path, proc = runs["fail"]
    assert proc.returncode == 1
    rec = read_recording(path)
    assert len(rec.frames) == 5
    assert rec.end.state == "failed" and rec.end.error["code"] == 4001 and rec.end.error["name"] == "UNKNOWN"
    assert rec.end.error["message"] == "Intentional error at item 5"
    assert rec.end.exit_code == 1


# -- olane replay -----------------------------------------------------------------------------


def test_replay_instant_prints_what_the_recorded_run_printed(runs):
    for name in ("a300", "fail"):
        path, recorded = runs[name]
        replayed = olane("replay", "--instant", str(path))
        assert replayed.stdout == recorded.stdout
        assert replayed.returncode == recorded.returncode
        if recorded.returncode:
            error_line = [l for l in recorded.stderr.splitlines() if l.startswith("error ")]
            assert replayed.stderr.splitlines()[0] == error_line[0]


def test_replay_at_a_speed_prints_the_same_lines(runs):
    path, recorded = runs["c299"]
    replayed = olane("replay", "--speed", "50", str(path))
    assert replayed.returncode == 0 and replayed.stdout == recorded.stdout


def test_replay_of_an_unreachable_call_exits_2(tmp_path):
    path = tmp_path / "unreachable.jsonl"
    ma = "/ip4/127.0.0.1/tcp/1/p2p/" + peer_id_for_seed("nobody")
    recorded = olane("stream", ma, "stream_items", "--address", "o://demo", "--timeout", "5", "--record", str(path))
    assert recorded.returncode == 2
    replayed = olane("replay", "--instant", str(path))
    assert replayed.returncode == 2
    assert replayed.stderr.startswith("error 4014 FAILED_TO_DIAL_TARGET")


def test_replay_refuses_a_file_that_is_not_a_recording(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"seq": 1, "data": 1}\n')
    out = olane("replay", str(path))
    assert out.returncode == 2 and "not an olane recording" in out.stderr


# -- olane diff --------------------------------------------------------------------------------


def test_two_runs_diff_clean_when_timestamps_are_ignored(runs):
    a, b = str(runs["a300"][0]), str(runs["b300"][0])
    clean = olane("diff", a, b, "--ignore", "timestamp")
    assert clean.returncode == 0, clean.stdout
    assert "same: data and end agree" in clean.stdout
    assert "300 alike" in clean.stdout
    noisy = olane("diff", a, b)
    assert noisy.returncode == 1
    assert "timestamp:" in noisy.stdout


def test_299_vs_300_chunks_exits_1_and_names_sequence_300(runs):
    out = olane("diff", str(runs["a300"][0]), str(runs["c299"][0]), "--ignore", "timestamp")
    assert out.returncode == 1
    assert "missing in B (1): seq 300" in out.stdout
    as_json = olane("diff", "--json", str(runs["a300"][0]), str(runs["c299"][0]), "--ignore", "timestamp")
    body = json.loads(as_json.stdout)
    assert as_json.returncode == 1 and body["same"] is False
    assert body["missing"] == [{"key": 300, "recv": 300}] and body["extra"] == []
    # progress differs too (each run counts to its own total): named by path
    assert body["changed"] and body["changed"][0]["paths"][0]["path"] == "progress"
    assert "end: chunk count A 300, B 299" in body["end"]["differences"]


def test_failed_vs_completed_exits_1_and_names_the_end(runs):
    out = olane("diff", str(runs["fail"][0]), str(runs["a300"][0]), "--key", "message", "--json")
    body = json.loads(out.stdout)
    assert out.returncode == 1
    assert body["end"]["same"] is False
    assert body["end"]["a"].startswith("failed 4001 UNKNOWN: Intentional error at item 5")
    assert body["end"]["b"].startswith("completed")
    text = olane("diff", str(runs["fail"][0]), str(runs["a300"][0]))
    assert text.returncode == 1
    assert "end: A failed 4001 UNKNOWN: Intentional error at item 5 after 5 chunk(s), B completed" in text.stdout


def test_diff_of_a_recording_with_itself_is_clean_and_times_side_by_side(runs):
    a = str(runs["a300"][0])
    out = olane("diff", a, a)
    assert out.returncode == 0
    for label in ("first chunk", "Δt p50", "Δt p99", "total"):
        assert label in out.stdout


# -- the format and the diff on their own ------------------------------------------------------


def _rec(keys, *, end="completed", data=None, code=None) -> Recording:
    frames = [Frame(t=float(i), recv=i + 1, seq=k, size=10, data=(data or {}).get(k, {"v": k})) for i, k in
              enumerate(keys)]
    error = {"code": code, "name": "UNKNOWN", "message": "boom"} if code else None
    return Recording(Header("/ip4/1/p2p/x", "o://demo", "m"), frames,
                     End(end, len(frames), float(len(frames)), final={"ok": 1} if end == "completed" else None,
                         error=error))


def test_writer_and_reader_round_trip_bytes_and_a_cut_short_file(tmp_path):
    path = tmp_path / "r.jsonl"
    rec = CallRecorder(path, target="/ip4/1/p2p/peer", address="o://files", method="read", params={"path": "a"})
    rec.started(codec="msgpack")
    rec.chunk({"offset": 0, "data": b"\x00\x01binary"}, 1, 20)
    rec.chunk({"offset": 8, "data": b"more"}, 2, 12)
    rec.completed({"sha256": "x"}, 3, 2)
    back = read_recording(path)
    assert back.header.peer == "peer" and back.header.codec == "msgpack"
    assert back.frames[0].data == {"offset": 0, "data": b"\x00\x01binary"}
    assert '"$bytes"' in path.read_text()
    assert back.end.final_chunks == 2 and back.end.exit_code == 0
    # a writer killed mid-line: every whole chunk is still there, no end
    lines = path.read_text().splitlines()
    cut = parse_lines(lines[:2] + [lines[2][:15]])
    assert len(cut.frames) == 1 and cut.end is None
    with pytest.raises(RecordingError):
        parse_lines(['{"olane": "recording", "version": 99}'])


def test_diff_names_reordered_duplicate_and_changed_chunks():
    a = _rec([1, 2, 3, 4, 5])
    b = _rec([1, 3, 2, 4, 4, 5], data={5: {"v": 5, "extra": True}})
    d = D.diff(a, b)
    assert not d.same
    assert [r.key for r, _ in d.reordered] == [3] or [r.key for r, _ in d.reordered] == [2]
    assert [r.key for r in d.duplicates_b] == [4]
    assert [c.key for c in d.changed] == [5] and d.changed[0].paths[0][0] == "extra"
    kinds = {k for k, *_ in d.differences()}
    assert kinds == {"reordered", "duplicate", "changed", "end"}  # 6 chunks vs 5


def test_diff_by_key_and_wildcard_ignore():
    a = _rec([None, None], data=None)
    a.frames[0].data = {"id": "x", "rows": [{"at": 1, "v": 1}]}
    a.frames[1].data = {"id": "y", "rows": [{"at": 2, "v": 2}]}
    b = _rec([None, None])
    b.frames[0].data = {"id": "y", "rows": [{"at": 9, "v": 2}]}
    b.frames[1].data = {"id": "x", "rows": [{"at": 8, "v": 1}]}
    assert D.diff(a, b, key="id", ignore=["rows.*.at"]).reordered
    d = D.diff(a, b, key="id", ignore=["rows.*.at"])
    assert not d.changed and not d.missing and not d.extra
    assert D.diff(a, b, key="id").changed[0].paths[0][0] == "rows.0.at"


def test_error_codes_differ_at_the_end():
    d = D.diff(_rec([1], end="failed", code=4001), _rec([1], end="failed", code=4017))
    assert not d.same and d.end_differences == ["end: error A 4001 UNKNOWN, B 4017 UNKNOWN"]
    assert D.diff(_rec([1]), _rec([1])).same


def test_write_recording_is_read_back_whole(tmp_path):
    rec = _rec([1, 2])
    path = write_recording(rec, tmp_path / "w.jsonl")
    back = read_recording(path)
    assert [f.seq for f in back.frames] == [1, 2] and back.end.final == {"ok": 1}


def test_a_stream_cut_by_its_timeout_is_recorded_as_failed_4017(demo_node, tmp_path):
    path = tmp_path / "slow.jsonl"
    out = olane("stream", demo_node, "stream_items", "--params", '{"count": 1000, "delayMs": 50}',
                "--timeout", "1", "--record", str(path))
    assert out.returncode == 1 and "error 4017 TIMEOUT" in out.stderr
    rec = read_recording(path)
    assert rec.end.state == "failed" and rec.end.error["code"] == 4017
    assert len(rec.frames) == rec.end.chunks < 1000
    replayed = olane("replay", "--instant", str(path))
    assert replayed.returncode == 1 and replayed.stdout == out.stdout
    assert replayed.stderr.startswith("error 4017 TIMEOUT")
