"""Call history that lasts across runs: append-only JSONL in the data directory,
one line per call, the format's version in the file name (`history-v1.jsonl`:
a new format starts a new file). Capped: past `max_entries` lines the file is
rewritten with the newest ones (atomically). Never pickle. Plain Python.

A line:
    {"when": "2025-06-01T20:30:33.538Z", "target": "/ip4/…/p2p/12D3KooW…", "peer": "12D3KooW…",
     "name": "lab", "address": "o://demo", "method": "stream_items", "params": {"count": 5},
     "streaming": true, "outcome": "completed", "error": null, "chunks": 5, "durationMs": 119.0,
     "recording": "/…/recordings/stream_items-3-20250601-203033.olane-rec.jsonl"}
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from .recording import decode_value, encode_value, peer_of

FILE_NAME = "history-v1.jsonl"
DEFAULT_MAX_ENTRIES = 2000


@dataclass
class HistoryEntry:
    when: str
    target: str
    address: str
    method: str
    params: dict[str, Any] = field(default_factory=dict)
    streaming: bool = True
    outcome: str = ""  # completed / failed / cancelled
    error: str | None = None  # "4001 UNKNOWN: message"
    chunks: int = 0
    durationMs: float = 0.0
    recording: str | None = None
    peer: str | None = None
    name: str | None = None  # the target's alias, when it has one
    embedded: bool = False  # made on the console's embedded node (a new address each run unless --seed)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["params"] = encode_value(self.params)
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "HistoryEntry":
        known = {k: obj[k] for k in cls.__dataclass_fields__ if k in obj}
        known.setdefault("when", "")
        known.setdefault("target", "")
        known.setdefault("address", "")
        known.setdefault("method", "")
        known["params"] = decode_value(known["params"]) if isinstance(known.get("params"), dict) else {}
        return cls(**known)

    @classmethod
    def of_record(cls, record: Any, *, recording: str | None = None, name: str | None = None,
                  embedded: bool = False) -> "HistoryEntry":
        """The entry for a console call (a StreamRecord that has ended)."""
        when = datetime.fromtimestamp(record.started_wall, timezone.utc).isoformat(timespec="milliseconds")
        error = str(record.error) if record.error is not None else None
        return cls(when=when.replace("+00:00", "Z"), target=record.target, address=record.address,
                   method=record.method, params=dict(record.params), streaming=record.streaming,
                   outcome=record.state.value, error=error, chunks=record.count,
                   durationMs=round(record.elapsed() * 1000, 3), recording=recording, peer=peer_of(record.target),
                   name=name, embedded=embedded)

    def matches(self, text: str) -> bool:
        needle = text.lower()
        hay = " ".join(str(v) for v in (self.when, self.name, self.target, self.address, self.method,
                                         json.dumps(self.params, ensure_ascii=False, default=str), self.outcome,
                                         self.error))
        return needle in hay.lower()


class History:
    def __init__(self, path: str | os.PathLike, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        self.path = Path(path)
        self.max_entries = max(1, max_entries)
        self._lines: int | None = None

    def load(self) -> list[HistoryEntry]:
        """Every entry, oldest first; unreadable lines are skipped."""
        out: list[HistoryEntry] = []
        try:
            with self.path.open("r", encoding="utf-8") as f:
                for line in f:
                    try:
                        obj = json.loads(line)
                    except ValueError:
                        continue  # e.g. a line cut short when the console was killed
                    if isinstance(obj, dict):
                        out.append(HistoryEntry.from_json(obj))
        except OSError:
            pass
        self._lines = len(out)
        return out

    def search(self, text: str = "", limit: int | None = None) -> list[HistoryEntry]:
        """Newest first; entries containing `text` (any case) in any field."""
        found = [e for e in reversed(self.load()) if not text or e.matches(text)]
        return found[:limit] if limit else found

    def append(self, entry: HistoryEntry) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self._lines is None:
            self.load()
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(entry.to_json(), ensure_ascii=False, separators=(",", ":"), default=str) + "\n")
        self._lines += 1
        if self._lines > self.max_entries:
            self._rotate()

    def _rotate(self) -> None:
        keep = self.load()[-self.max_entries:]
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with tmp.open("w", encoding="utf-8") as f:
            for e in keep:
                f.write(json.dumps(e.to_json(), ensure_ascii=False, separators=(",", ":"), default=str) + "\n")
        tmp.replace(self.path)
        self._lines = len(keep)

    def extend(self, entries: Iterable[HistoryEntry]) -> None:
        for e in entries:
            self.append(e)
