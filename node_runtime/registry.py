"""The registry a leader keeps (PROTOCOL.md section 8.6): what nodes `commit`,
searched by address, static address or protocols.

Entries have the shape TypeScript 0.9.0 stores (what `commit` sent plus
`registeredAt`, ms since the epoch). Unlike 0.9.0:
- entries are keyed by (peerId, address), so a node serving several tools from
  one peer id can register each; `remove {peerId}` drops all of a peer's;
- `search` returns each entry once, however many keys it matches;
- `remove` of an unknown peer says so (`success: false`, `removed: 0`);
- entries expire: `expire(ttl)` drops those not seen (committed again, or
  answering the leader's heartbeat `ping`) for `ttl` seconds;
- with a `path`, the entries live in a small SQLite file and survive a restart
  (each is then given a fresh `ttl` to prove itself alive).

Plain Python, no trio: the leader (leader.py) drives it.
"""
from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any, Callable, Iterable

Entry = dict[str, Any]


def _now_ms() -> int:
    return int(time.time() * 1000)


class Registry:
    def __init__(self, path: "str | Path | None" = None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._entries: dict[tuple[str, str], Entry] = {}  # insertion order = commit order
        self._seen: dict[tuple[str, str], float] = {}
        self._db: sqlite3.Connection | None = None
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
            self._db.execute("CREATE TABLE IF NOT EXISTS entries (peer_id TEXT, address TEXT, entry TEXT, "
                             "seq INTEGER, PRIMARY KEY (peer_id, address))")
            now = self.clock()
            for peer_id, address, text in self._db.execute("SELECT peer_id, address, entry FROM entries ORDER BY seq"):
                try:
                    self._entries[(peer_id, address)] = json.loads(text)
                    self._seen[(peer_id, address)] = now
                except ValueError:
                    continue
        self._seq = len(self._entries)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    # -- the wire methods -----------------------------------------------------------

    def commit(self, params: dict[str, Any]) -> Entry:
        """Store what a node sent (a new commit of the same peer and address replaces the old one)."""
        peer_id = str(params.get("peerId") or "")
        address = str(params.get("address") or "")
        if not peer_id or not address:
            raise ValueError("commit needs peerId and address")
        entry = {k: v for k, v in params.items() if not k.startswith("_")}
        entry.setdefault("staticAddress", "o://" + address[4:].split("/")[-1] if address.startswith("o://") else address)
        entry["registeredAt"] = _now_ms()
        key = (peer_id, address)
        self._entries.pop(key, None)
        self._entries[key] = entry
        self._seen[key] = self.clock()
        self._seq += 1
        if self._db is not None:
            self._db.execute("INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?)",
                             (peer_id, address, json.dumps(entry), self._seq))
        return entry

    def find_all(self) -> list[Entry]:
        return list(self._entries.values())

    def search(self, static_address: str | None = None, address: str | None = None,
               protocols: Iterable[str] | None = None) -> list[Entry]:
        """Entries matching any given key, each once, newest first; no key -> []."""
        wanted = list(protocols) if protocols else None
        if not static_address and not address and not wanted:
            return []
        found = []
        for entry in self._entries.values():
            if ((static_address and entry.get("staticAddress") == static_address)
                    or (address and entry.get("address") == address)
                    or (wanted and all(p in (entry.get("protocols") or ()) for p in wanted))):
                found.append(entry)
        found.sort(key=lambda e: e.get("registeredAt") or 0, reverse=True)
        return found

    def remove(self, peer_id: str) -> int:
        """Drop every entry of `peer_id`; how many there were."""
        keys = [k for k in self._entries if k[0] == peer_id]
        for key in keys:
            self._drop(key)
        return len(keys)

    # -- liveness -------------------------------------------------------------------

    def touch(self, peer_id: str, address: str) -> None:
        """The node answered: it stays."""
        if (peer_id, address) in self._entries:
            self._seen[(peer_id, address)] = self.clock()

    def expire(self, ttl: float, keep: Callable[[Entry], bool] = lambda e: False) -> list[Entry]:
        """Drop entries not seen for `ttl` seconds (except those `keep` says); return them."""
        limit = self.clock() - ttl
        gone = [k for k, seen in self._seen.items() if seen < limit and not keep(self._entries[k])]
        out = [self._entries[k] for k in gone]
        for key in gone:
            self._drop(key)
        return out

    def _drop(self, key: tuple[str, str]) -> None:
        self._entries.pop(key, None)
        self._seen.pop(key, None)
        if self._db is not None:
            self._db.execute("DELETE FROM entries WHERE peer_id = ? AND address = ?", key)

    def __len__(self) -> int:
        return len(self._entries)


def transports_of(entry: Entry) -> list[str]:
    """The multiaddr strings of an entry (`transports` are `{value, type}` or plain strings)."""
    out = []
    for t in entry.get("transports") or ():
        value = t.get("value") if isinstance(t, dict) else t
        if isinstance(value, str):
            out.append(value)
    return out
