"""The console's stream store and parameter parsing, without a screen."""
from __future__ import annotations

import subprocess
import sys

import pytest

from console.core import params as P
from console.core.stream_store import BADKEY, DUPLICATE, GAP, NOKEY, REORDERED, State, StreamRecord


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def record(**kw) -> StreamRecord:
    return StreamRecord(title="t", clock=kw.pop("clock", Clock()), **kw)


def test_in_order_stream_has_no_findings_and_counts_everything():
    clock = Clock()
    r = record(clock=clock)
    for i in range(1, 11):
        clock.t += 0.01
        r.add_chunk({"i": i}, i, 20)
    r.finish({"done": True}, 11, 10)
    assert r.state is State.COMPLETED
    assert (r.count, r.bytes) == (10, 200)
    assert [c.sequence for c in r.chunks()] == list(range(1, 11))
    assert r.lint() == []
    assert r.chunk(0).delta == pytest.approx(0.01)
    assert r.first_chunk_at == pytest.approx(0.01)


def test_gaps_duplicates_and_reordering_are_flagged_and_counted():
    r = record()
    for seq in [1, 2, 5, 3, 3, 6, 4]:
        r.add_chunk({}, seq, 1)
    flags = [c.flags for c in r.chunks()]
    assert flags == [0, 0, GAP, REORDERED, DUPLICATE, 0, REORDERED]
    c = r.check
    assert (c.gaps, c.reordered, c.duplicates, c.still_missing) == (1, 2, 1, 0)
    r.finish(None, 8, 9)
    findings = r.lint()
    assert "2 chunk(s) out of order" in findings
    assert "1 duplicate sequence(s)" in findings
    assert "final frame declares 9 chunks, 7 arrived" in findings


def test_missing_sequences_are_reported_until_they_arrive():
    r = record()
    for seq in [1, 4]:
        r.add_chunk({}, seq, 1)
    assert r.lint() == ["2 sequence(s) missing in 1 gap(s)"]


def test_ordering_by_a_json_path_rechecks_held_chunks():
    r = record()
    for n in [1, 3, 2]:
        r.add_chunk({"data": {"n": n}}, None, 1)
    assert [c.flags for c in r.chunks()] == [NOKEY] * 3  # no _sequence: not judged, and said so
    assert r.lint()[:2] == ["ordering not judged: no chunk has a whole number at _sequence",
                            "3 chunk(s) without _sequence"]
    r.set_sequence_path("data.n")
    assert [c.flags for c in r.chunks()] == [0, GAP, REORDERED]
    assert r.check.reordered == 1


def test_ordering_by_a_path_flags_chunks_where_it_is_missing_or_not_a_whole_number():
    r = record()
    for data in [{"n": 1}, {"n": 2}, {}, {"n": "3"}, {"n": 2.5}, {"n": None}, {"n": 3.0}, {"n": True},
                 {"n": {"x": 1}}]:
        r.add_chunk(data, None, 1)
    r.set_sequence_path("n")
    assert [c.flags for c in r.chunks()] == [0, 0, NOKEY, BADKEY, BADKEY, NOKEY, 0, BADKEY, BADKEY]
    c = r.check
    assert (c.judged, c.no_key, c.bad_key) == (3, 2, 4)
    assert r.lint() == ["2 chunk(s) without n", "4 chunk(s) where n is not a whole number"]
    r.set_sequence_path("nope")  # a path no chunk carries: nothing passes as "in order"
    assert all(c.flags == NOKEY for c in r.chunks())
    assert r.lint() == ["ordering not judged: no chunk has a whole number at nope", "9 chunk(s) without nope"]
    r.add_chunk({"n": 4}, None, 1)  # later chunks are judged by the path too
    assert r.chunk(9).flags == NOKEY and r.check.no_key == 10


def test_time_to_first_chunk_counts_from_the_request_write():
    clock = Clock()
    r = record(clock=clock)  # asked for at t=100
    clock.t += 0.7  # dial, stream negotiation, the screen opening a tab ...
    r.mark_running(sent_at=clock.t)  # ... then the request frame is written
    clock.t += 0.003
    r.add_chunk({}, 1, 1)
    assert r.first_chunk_at == pytest.approx(0.003) and r.chunk(0).at == pytest.approx(0.003)
    assert r.opened_after == pytest.approx(0.7)


def test_ring_keeps_the_newest_chunks_and_counts_all():
    r = record(max_chunks=5)
    for i in range(1, 13):
        r.add_chunk({"i": i}, i, 1)
    assert r.count == 12 and r.held == 5 and r.dropped == 7
    assert [c.index for c in r.chunks()] == [8, 9, 10, 11, 12]
    assert r.chunk(0) is None and r.chunk(11).data == {"i": 12}


def test_stalled_failed_and_cancelled_states():
    clock = Clock()
    r = record(clock=clock, stall_after=5)
    r.mark_running()
    clock.t += 6
    assert r.effective_state() is State.STALLED
    r.add_chunk({}, 1, 1)
    assert r.effective_state() is State.RUNNING
    r.fail(4020, "RECEIVE_FAILED", "stream ended before the final frame", missing_final=True)
    assert r.effective_state() is State.FAILED
    assert "stream ended without a final frame" in r.lint()
    r.add_chunk({}, 2, 1)
    assert r.frames_after_final == 1
    other = record()
    other.cancel()
    assert other.state is State.CANCELLED


def test_rates_per_second_and_history():
    clock = Clock()
    r = record(clock=clock)
    for second in range(3):
        for _ in range(10 * (second + 1)):
            r.add_chunk({}, None, 100)
        clock.t += 1
    assert r.rate_history(60) == [10.0, 20.0, 30.0]
    assert r.rates() == (30.0, 3000.0)


def test_form_values_are_parsed_and_validated():
    count = {"name": "count", "type": "number", "defaultValue": 10}
    assert P.parse(count, "42") == 42 and P.parse(count, "1.5") == 1.5
    with pytest.raises(ValueError, match="number"):
        P.parse(count, "ten")
    needed = {"name": "sql", "type": "string", "required": True}
    with pytest.raises(ValueError, match="required"):
        P.parse(needed, "")
    obj = {"name": "params", "type": "array"}
    assert P.parse(obj, "[1, 2]") == [1, 2]
    with pytest.raises(ValueError, match="array"):
        P.parse(obj, '{"a": 1}')
    values, errors = P.collect([count, needed, obj], {"count": "3", "sql": "", "params": ""})
    assert values == {"count": 3} and errors == {"sql": "required"}


def test_core_modules_never_import_textual():
    code = ("import sys; import console.core.stream_store, console.core.session, console.core.params, "
            "console.core.trio_bridge, console.core.config, node_runtime, tool_library; "
            "assert 'textual' not in sys.modules, 'textual imported'")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_going_back_to_sequence_after_a_path_restores_the_wire_sequences():
    r = record()
    for seq, n in [(1, 10), (2, 30), (3, 20)]:
        r.add_chunk({"n": n}, seq, 1)
    r.set_sequence_path("n")
    assert [c.sequence for c in r.chunks()] == [10, 30, 20] and r.check.reordered == 1
    r.set_sequence_path(None)
    assert [c.sequence for c in r.chunks()] == [1, 2, 3] and r.lint() == []


def test_a_closed_calls_data_is_let_go_and_the_session_drops_it(tmp_path):
    """Closing a tab: the session forgets the call and its chunks and final value are let
    go (a closed 1M-row query stayed resident), while its counters stay for summaries;
    the history line written at its end is kept. Once the tab's widgets are gone too,
    nothing holds the record."""
    import gc
    import weakref

    from console.core.history import History, HistoryEntry
    from console.core.session import ConsoleSession, Target

    history = History(tmp_path / "history.jsonl")
    session = ConsoleSession(embedded=False, history=history)
    target = Target("/ip4/127.0.0.1/tcp/1/p2p/12D3KooWQeqqN4Ak5UNVvdC6hLqw4ZgXD6ZQqNh4H4d7E3q1f2yy")
    kept = session.new_call(target, "o://sqlite", "query", {"sql": "SELECT 1"}, True)
    closed = session.new_call(target, "o://sqlite", "query", {"sql": "SELECT x FROM big"}, True)
    for i in range(2000):
        closed.add_chunk({"rows": [[i * 500 + j] for j in range(500)]}, i + 1, 4000)
    closed.finish({"rows": 1_000_000})
    history.append(HistoryEntry.of_record(closed))
    gone = weakref.ref(closed)

    session.forget_call(closed)
    assert session.calls == [kept]
    assert closed.held == 0 and closed.data_at(0) is None and closed.chunk(1999) is None
    assert closed.final is None
    assert closed.count == 2000 and closed.bytes == 8_000_000 and closed.state is State.COMPLETED
    assert [e.method for e in history.load()] == ["query"]
    closed.add_chunk({"late": True}, 2001, 10)  # a cancelled call's last chunk still lands
    assert closed.count == 2001 and closed.held == 0
    del closed
    gc.collect()
    assert gone() is None
