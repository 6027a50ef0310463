"""The plain-Python parts that make sessions last: history (capped JSONL), saved
calls (files with only non-default fields, stable key order), named targets, the
Replayer's virtual clock, recording pruning; and that none of them pulls in Textual."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from console.core import collections as C
from console.core.config import Settings
from console.core.history import History, HistoryEntry
from console.core.recording import End, Frame, Header, Recording, prune
from console.core.replay import Replayer
from console.core.stream_store import State


def entry(n: int) -> HistoryEntry:
    return HistoryEntry(when=f"2025-01-01T00:00:{n:02d}Z", target="/ip4/1/p2p/peer", address="o://demo",
                        method="stream_items", params={"count": n}, outcome="completed", chunks=n)


def test_history_appends_survives_reopening_and_rotates_past_its_cap(tmp_path):
    path = tmp_path / "history-v1.jsonl"
    h = History(path, max_entries=5)
    for n in range(8):
        h.append(entry(n))
    again = History(path, max_entries=5).load()
    assert [e.params["count"] for e in again] == [3, 4, 5, 6, 7]  # the newest 5, oldest first
    assert len(path.read_text().splitlines()) == 5
    assert [e.chunks for e in History(path).search("count\": 7")] == [7]
    assert [e.chunks for e in History(path).search()][:2] == [7, 6]  # newest first
    with path.open("a") as f:
        f.write('{"when": "cut sh')  # a console killed mid-line
    assert len(History(path).load()) == 5


def test_saved_call_files_hold_only_what_was_set_in_a_stable_order(tmp_path):
    call = C.SavedCall("demo/items-300", "stream_items", target="lab", address="o://demo", params={"count": 300})
    path = C.save(call, tmp_path)
    assert path == tmp_path / "demo" / "items-300.olane.json"
    assert list(json.loads(path.read_text())) == ["target", "address", "method", "params"]
    C.save(C.SavedCall("ping", "ping", stream=False), tmp_path)
    assert json.loads((tmp_path / "ping.olane.json").read_text()) == {"method": "ping", "stream": False}
    (tmp_path / "broken.olane.json").write_text("{")
    calls, problems = C.load_all(tmp_path)
    assert [c.name for c in calls] == ["ping", "demo/items-300"]  # by group, then name
    assert len(problems) == 1 and "broken" in problems[0]
    assert C.load("items-300", tmp_path).params == {"count": 300}  # a bare name finds its group
    with pytest.raises(C.CollectionError):
        C.save(C.SavedCall("../escape", "m"), tmp_path)


def test_named_targets_resolve_and_a_name_means_one_node(tmp_path):
    s = Settings()
    s.remember_target("/ip4/1/tcp/1/p2p/A", None, "lab")
    s.remember_target("/ip4/1/tcp/2/p2p/B", "o://demo", "lab")  # the name moves
    path = s.save(tmp_path / "config.json")
    back = Settings.load(path)
    assert back.resolve_target("lab") == ("/ip4/1/tcp/2/p2p/B", "o://demo")
    assert back.name_of("/ip4/1/tcp/1/p2p/A") is None
    assert back.resolve_target("/ip4/9/p2p/C") == ("/ip4/9/p2p/C", None)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def recording(n: int = 10, step: float = 100.0, end: str = "completed") -> Recording:
    frames = [Frame(t=(i + 1) * step, recv=i + 1, seq=i + 1, size=5, data={"i": i + 1}) for i in range(n)]
    error = {"code": 4001, "name": "UNKNOWN", "message": "boom"} if end == "failed" else None
    return Recording(Header("/ip4/1/p2p/x", "o://demo", "m", {"count": n}), frames,
                     End(end, n, n * step + 50, final={"done": True} if end == "completed" else None, error=error))


def test_replayer_plays_at_its_speed_pauses_and_seeks():
    clock = FakeClock()
    r = Replayer(recording(), clock=clock)
    clock.now += 0.35  # 350 ms: chunks at 100, 200, 300
    r.tick()
    assert r.record.count == 3 and r.record.state is State.RUNNING
    assert [c.at for c in r.record.chunks()] == pytest.approx([0.1, 0.2, 0.3])
    r.pause()
    clock.now += 10
    r.tick()
    assert r.record.count == 3  # paused: the clock stands still
    r.set_speed(2)
    r.play()
    clock.now += 0.1  # 200 ms of the recording
    r.tick()
    assert r.record.count == 5
    first = r.record
    r.seek(150)  # backwards: a new record, fed up to there
    assert r.record is not first and r.record.count == 1 and r.generation == 2
    r.to_end()
    assert r.record.count == 10 and r.record.state is State.COMPLETED and r.record.final == {"done": True}
    assert r.record.elapsed() == pytest.approx(1.05)


def test_replayer_ends_a_failed_recording_with_its_error():
    clock = FakeClock()
    r = Replayer(recording(3, end="failed"), clock=clock)
    r.to_end()
    assert r.record.state is State.FAILED and r.record.error.code == 4001 and r.done


def test_prune_removes_the_oldest_recordings_past_the_cap(tmp_path):
    import os

    for n in range(4):
        p = tmp_path / f"r{n}.jsonl"
        p.write_text("x" * 100)
        os.utime(p, (1000 + n, 1000 + n))
    removed = prune(tmp_path, 250, keep=[tmp_path / "r0.jsonl"])
    assert sorted(p.name for p in removed) == ["r1.jsonl", "r2.jsonl"]
    assert sorted(p.name for p in tmp_path.glob("*.jsonl")) == ["r0.jsonl", "r3.jsonl"]


@pytest.mark.parametrize("module", ["console.core.recording", "console.core.diff", "console.core.replay",
                                    "console.core.history", "console.core.collections",
                                    "console.commands.recordings", "console.commands.collections"])
def test_headless_modules_never_import_textual(module):
    code = f"import sys, {module}; assert 'textual' not in sys.modules, 'textual imported'"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
