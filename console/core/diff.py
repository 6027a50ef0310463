"""Compare two recordings chunk by chunk: what is missing, extra, changed (with
the first paths that differ), reordered or duplicated, how each ended, and
their timings side by side. Plain Python; `olane diff` prints it, the console
lists it.

Chunks are matched by key: the `_sequence` the node sent (by default; a chunk
without one is keyed by its receive order), or the value at a JSON path in the
chunk's data (`--key id`). Paths are dotted: `a.b.0.c`, with `*` for any key or
index (`records.*.updatedAt`). `--ignore PATH` drops that path from every chunk's
data and from the final data before comparing.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable

from .recording import Frame, Recording

SEQUENCE = "_sequence"
MAX_PATHS = 3  # differing paths named per changed chunk
_MISSING = object()


# -- paths ------------------------------------------------------------------------------


def split_path(path: str) -> list[str]:
    path = path.strip()
    if path.startswith("$."):
        path = path[2:]
    return [p for p in path.replace("[", ".").replace("]", "").split(".") if p != ""]


def get_path(data: Any, steps: list[str]) -> Any:
    for step in steps:
        if isinstance(data, dict):
            if step not in data:
                return _MISSING
            data = data[step]
        elif isinstance(data, list) and step.lstrip("-").isdigit():
            i = int(step)
            if not -len(data) <= i < len(data):
                return _MISSING
            data = data[i]
        else:
            return _MISSING
    return data


def drop_paths(data: Any, paths: list[list[str]]) -> Any:
    """A copy of `data` without the values at `paths` (`*` matches any key or index)."""
    for steps in paths:
        if steps:
            data = _drop(data, steps)
    return data


def _drop(data: Any, steps: list[str]) -> Any:
    head, rest = steps[0], steps[1:]
    if isinstance(data, dict):
        keys = list(data) if head == "*" else [head] if head in data else []
        if not keys:
            return data
        out = dict(data)
        for k in keys:
            if rest:
                out[k] = _drop(out[k], rest)
            else:
                del out[k]
        return out
    if isinstance(data, list):
        if head == "*":
            idx = range(len(data))
        elif head.lstrip("-").isdigit() and -len(data) <= int(head) < len(data):
            idx = [int(head) % len(data)]
        else:
            return data
        if not rest:
            drop = set(idx)
            return [v for i, v in enumerate(data) if i not in drop]
        out = list(data)
        for i in idx:
            out[i] = _drop(out[i], rest)
        return out
    return data


def differing_paths(a: Any, b: Any, limit: int = MAX_PATHS, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """The first `limit` paths where two JSON values differ, with the value on each side
    (`_MISSING` rendered as absent by the caller)."""
    out: list[tuple[str, Any, Any]] = []
    _walk(a, b, prefix, out, limit)
    return out


def _walk(a: Any, b: Any, path: str, out: list, limit: int) -> None:
    if len(out) >= limit:
        return
    if isinstance(a, dict) and isinstance(b, dict):
        for k in list(a) + [k for k in b if k not in a]:
            sub = f"{path}.{k}" if path else str(k)
            _walk(a.get(k, _MISSING), b.get(k, _MISSING), sub, out, limit)
            if len(out) >= limit:
                return
        return
    if isinstance(a, list) and isinstance(b, list):
        for i in range(max(len(a), len(b))):
            sub = f"{path}.{i}" if path else str(i)
            _walk(a[i] if i < len(a) else _MISSING, b[i] if i < len(b) else _MISSING, sub, out, limit)
            if len(out) >= limit:
                return
        return
    if not _same_scalar(a, b):
        out.append((path or "(whole value)", a, b))


def _same_scalar(a: Any, b: Any) -> bool:
    if a is _MISSING or b is _MISSING:
        return a is b
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b


def show(value: Any, width: int = 40) -> str:
    if value is _MISSING:
        return "(absent)"
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except Exception:
        text = repr(value)
    return text if len(text) <= width else text[: width - 1] + "…"


# -- the result ---------------------------------------------------------------------------


@dataclass
class ChunkRef:
    key: Any
    recv: int  # receive order in its recording, 1-based
    position: int  # 0-based index in its recording's frames


@dataclass
class Change:
    key: Any
    a: ChunkRef
    b: ChunkRef
    paths: list[tuple[str, Any, Any]]


@dataclass
class Timing:
    chunks: int
    first_chunk: float | None  # ms
    dt_p50: float | None
    dt_p99: float | None
    total: float | None  # ms (the end line's elapsed; else the last chunk's time)


@dataclass
class Diff:
    key: str
    ignore: list[str]
    missing: list[ChunkRef] = field(default_factory=list)  # in A, not in B
    extra: list[ChunkRef] = field(default_factory=list)  # in B, not in A
    changed: list[Change] = field(default_factory=list)
    reordered: list[tuple[ChunkRef, ChunkRef]] = field(default_factory=list)  # (in A, in B)
    duplicates_a: list[ChunkRef] = field(default_factory=list)
    duplicates_b: list[ChunkRef] = field(default_factory=list)
    alike: int = 0
    end_differences: list[str] = field(default_factory=list)
    end_a: str = ""
    end_b: str = ""
    timing_a: Timing | None = None
    timing_b: Timing | None = None
    dropped_a: int = 0
    dropped_b: int = 0

    @property
    def same(self) -> bool:
        """Data and end agree (timings never count)."""
        return not (self.missing or self.extra or self.changed or self.reordered or self.duplicates_a
                    or self.duplicates_b or self.end_differences)

    def differences(self) -> list[tuple[str, str, int | None, int | None]]:
        """Every difference as (kind, text, position in A, position in B), in key order
        of A then B: what the console lists and jumps to."""
        out: list[tuple[str, str, int | None, int | None]] = []
        for r in self.missing:
            out.append(("missing", f"{self.key_name} {show(r.key)}: in A (#{r.recv}), not in B", r.position, None))
        for r in self.extra:
            out.append(("extra", f"{self.key_name} {show(r.key)}: in B (#{r.recv}), not in A", None, r.position))
        for c in self.changed:
            paths = "; ".join(f"{p}: {show(x, 24)} → {show(y, 24)}" for p, x, y in c.paths)
            out.append(("changed", f"{self.key_name} {show(c.key)}: {paths}", c.a.position, c.b.position))
        for a, b in self.reordered:
            out.append(("reordered", f"{self.key_name} {show(a.key)}: #{a.recv} in A, #{b.recv} in B",
                        a.position, b.position))
        for r in self.duplicates_a:
            out.append(("duplicate", f"{self.key_name} {show(r.key)} again in A (#{r.recv})", r.position, None))
        for r in self.duplicates_b:
            out.append(("duplicate", f"{self.key_name} {show(r.key)} again in B (#{r.recv})", None, r.position))
        for text in self.end_differences:
            out.append(("end", text, None, None))
        return out

    @property
    def key_name(self) -> str:
        return "seq" if self.key == SEQUENCE else self.key

    def to_json(self) -> dict[str, Any]:
        def ref(r: ChunkRef) -> dict:
            return {"key": r.key, "recv": r.recv}

        def timing(t: Timing | None) -> dict | None:
            return None if t is None else {"chunks": t.chunks, "firstChunkMs": t.first_chunk, "dtP50Ms": t.dt_p50,
                                           "dtP99Ms": t.dt_p99, "totalMs": t.total}

        return {
            "same": self.same, "key": self.key, "ignore": self.ignore, "alike": self.alike,
            "missing": [ref(r) for r in self.missing], "extra": [ref(r) for r in self.extra],
            "changed": [{"key": c.key, "recvA": c.a.recv, "recvB": c.b.recv,
                         "paths": [{"path": p, "a": None if x is _MISSING else x, "b": None if y is _MISSING else y,
                                    "absentIn": "a" if x is _MISSING else "b" if y is _MISSING else None}
                                   for p, x, y in c.paths]} for c in self.changed],
            "reordered": [{"key": a.key, "recvA": a.recv, "recvB": b.recv} for a, b in self.reordered],
            "duplicates": {"a": [ref(r) for r in self.duplicates_a], "b": [ref(r) for r in self.duplicates_b]},
            "end": {"same": not self.end_differences, "a": self.end_a, "b": self.end_b,
                    "differences": self.end_differences},
            "dropped": {"a": self.dropped_a, "b": self.dropped_b},
            "timing": {"a": timing(self.timing_a), "b": timing(self.timing_b)},
        }


# -- comparing ------------------------------------------------------------------------------


def _keys(frames: list[Frame], key: str) -> list[Any]:
    if key == SEQUENCE:
        return [f.seq if f.seq is not None else ("recv", f.recv) for f in frames]
    steps = split_path(key)
    return [_hashable(get_path(f.data, steps)) for f in frames]


def _hashable(value: Any) -> Any:
    if value is _MISSING:
        return None
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, default=str)
    return value


def _index(frames: list[Frame], keys: list[Any]) -> tuple[dict[Any, int], list[ChunkRef]]:
    first: dict[Any, int] = {}
    dups: list[ChunkRef] = []
    for i, k in enumerate(keys):
        if k in first:
            dups.append(ChunkRef(k, frames[i].recv, i))
        else:
            first[k] = i
    return first, dups


def _lis_positions(seq: list[int]) -> set[int]:
    """Indices (into seq) of one longest increasing subsequence."""
    import bisect

    tails: list[int] = []
    tails_idx: list[int] = []
    prev = [-1] * len(seq)
    for i, v in enumerate(seq):
        j = bisect.bisect_left(tails, v)
        if j == len(tails):
            tails.append(v)
            tails_idx.append(i)
        else:
            tails[j] = v
            tails_idx[j] = i
        prev[i] = tails_idx[j - 1] if j else -1
    out: set[int] = set()
    i = tails_idx[-1] if tails_idx else -1
    while i >= 0:
        out.add(i)
        i = prev[i]
    return out


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = (len(s) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def timing_of(rec: Recording) -> Timing:
    ts = [f.t for f in rec.frames]
    dts = [b - a for a, b in zip(ts, ts[1:])]
    total = rec.end.elapsed if rec.end is not None else (ts[-1] if ts else None)
    return Timing(len(ts), ts[0] if ts else None, percentile(dts, 0.5), percentile(dts, 0.99), total)


def describe_end(rec: Recording) -> str:
    end = rec.end
    if end is None:
        return "no end line (recording cut short)"
    text = end.state
    if end.error:
        text += f" {end.error.get('code')} {end.error.get('name')}: {end.error.get('message')}"
    return f"{text} after {end.chunks:,} chunk(s)"


def diff(a: Recording, b: Recording, *, ignore: Iterable[str] = (), key: str | None = None) -> Diff:
    key = key or SEQUENCE
    if key.lstrip("$.") == SEQUENCE:
        key = SEQUENCE
    ignore = list(ignore)
    ignore_steps = [split_path(p) for p in ignore]
    result = Diff(key=key, ignore=ignore)
    keys_a, keys_b = _keys(a.frames, key), _keys(b.frames, key)
    first_a, result.duplicates_a = _index(a.frames, keys_a)
    first_b, result.duplicates_b = _index(b.frames, keys_b)
    for k, i in first_a.items():
        if k not in first_b:
            result.missing.append(ChunkRef(k, a.frames[i].recv, i))
    for k, j in first_b.items():
        if k not in first_a:
            result.extra.append(ChunkRef(k, b.frames[j].recv, j))
    common = [(k, i, first_b[k]) for k, i in first_a.items() if k in first_b]  # in A's order
    for k, i, j in common:
        da = drop_paths(a.frames[i].data, ignore_steps)
        db = drop_paths(b.frames[j].data, ignore_steps)
        if da == db and _same_types(da, db):
            result.alike += 1
        else:
            result.changed.append(Change(k, ChunkRef(k, a.frames[i].recv, i), ChunkRef(k, b.frames[j].recv, j),
                                         differing_paths(da, db) or [("(whole value)", da, db)]))
    # reordered: the common chunks outside one longest run that keeps A's order in B
    keep = _lis_positions([j for _, _, j in common])
    for n, (k, i, j) in enumerate(common):
        if n not in keep:
            result.reordered.append((ChunkRef(k, a.frames[i].recv, i), ChunkRef(k, b.frames[j].recv, j)))
    result.end_a, result.end_b = describe_end(a), describe_end(b)
    result.end_differences = _end_differences(a, b, ignore_steps)
    result.timing_a, result.timing_b = timing_of(a), timing_of(b)
    result.dropped_a, result.dropped_b = a.dropped, b.dropped
    return result


def _same_types(a: Any, b: Any) -> bool:
    """`==` says True == 1 and 1 == 1.0; a recording comparison should not."""
    if isinstance(a, dict) and isinstance(b, dict):
        return all(_same_types(a[k], b[k]) for k in a if k in b)
    if isinstance(a, list) and isinstance(b, list):
        return all(_same_types(x, y) for x, y in zip(a, b))
    return (isinstance(a, bool) == isinstance(b, bool)) and (a is None) == (b is None)


def _end_differences(a: Recording, b: Recording, ignore_steps: list[list[str]]) -> list[str]:
    ea, eb = a.end, b.end
    if ea is None or eb is None:
        if ea is None and eb is None:
            return []
        return [f"end: A {describe_end(a)}, B {describe_end(b)}"]
    out = []
    if ea.state != eb.state:
        out.append(f"end: A {describe_end(a)}, B {describe_end(b)}")
    else:
        ca = (ea.error or {}).get("code")
        cb = (eb.error or {}).get("code")
        if ca != cb:
            out.append(f"end: error A {ca} {(ea.error or {}).get('name')}, B {cb} {(eb.error or {}).get('name')}")
        elif (ea.error or {}).get("message") != (eb.error or {}).get("message"):
            out.append(f"end: error message A {show((ea.error or {}).get('message'))}, "
                       f"B {show((eb.error or {}).get('message'))}")
    if ea.chunks != eb.chunks:
        out.append(f"end: chunk count A {ea.chunks:,}, B {eb.chunks:,}")
    fa, fb = drop_paths(ea.final, ignore_steps), drop_paths(eb.final, ignore_steps)
    if ea.state == eb.state == "completed" and not (fa == fb and _same_types(fa, fb)):
        paths = differing_paths(fa, fb) or [("(whole value)", fa, fb)]
        out.append("end: final data differs: " + "; ".join(f"{p}: {show(x, 24)} → {show(y, 24)}" for p, x, y in paths))
    return out


# -- text ----------------------------------------------------------------------------------


def _ranges(keys: list[Any]) -> list[str]:
    """[1,2,3,7,9,10] -> ['1-3', '7', '9-10'] (ints only; others as they are)."""
    out: list[str] = []
    ints = sorted(k for k in keys if type(k) is int)
    others = [k for k in keys if type(k) is not int]
    i = 0
    while i < len(ints):
        j = i
        while j + 1 < len(ints) and ints[j + 1] == ints[j] + 1:
            j += 1
        out.append(str(ints[i]) if i == j else f"{ints[i]}-{ints[j]}")
        i = j + 1
    out += [show(k) for k in others]
    return out


def ms(v: float | None) -> str:
    return "—" if v is None else f"{v:,.1f} ms"


def format_text(d: Diff, a: Recording, b: Recording, name_a: str = "A", name_b: str = "B",
                limit: int = 20) -> str:
    lines = []
    for tag, rec, name in (("A", a, name_a), ("B", b, name_b)):
        h = rec.header
        lines.append(f"{tag}  {name}: {h.address} {h.method} {json.dumps(h.params, ensure_ascii=False)}, "
                     f"{len(rec.frames):,} chunks, {describe_end(rec)}")
    by = "_sequence" if d.key == SEQUENCE else d.key
    ign = f", ignoring {', '.join(d.ignore)}" if d.ignore else ""
    lines.append(f"chunks matched by {by}{ign}: {d.alike:,} alike")
    kn = d.key_name

    def listed(title: str, refs: list[ChunkRef]) -> None:
        if refs:
            lines.append(f"{title} ({len(refs):,}): {kn} {', '.join(_ranges([r.key for r in refs])[:limit])}"
                         + (" …" if len(_ranges([r.key for r in refs])) > limit else ""))

    listed("missing in B", d.missing)
    listed("extra in B", d.extra)
    if d.changed:
        lines.append(f"changed ({len(d.changed):,}):")
        for c in d.changed[:limit]:
            paths = "; ".join(f"{p}: {show(x)} → {show(y)}" for p, x, y in c.paths)
            lines.append(f"  {kn} {show(c.key)}: {paths}")
        if len(d.changed) > limit:
            lines.append(f"  … {len(d.changed) - limit:,} more")
    if d.reordered:
        lines.append(f"reordered ({len(d.reordered):,}):")
        for ra, rb in d.reordered[:limit]:
            lines.append(f"  {kn} {show(ra.key)}: received #{ra.recv} in A, #{rb.recv} in B")
        if len(d.reordered) > limit:
            lines.append(f"  … {len(d.reordered) - limit:,} more")
    listed("duplicates in A", d.duplicates_a)
    listed("duplicates in B", d.duplicates_b)
    if d.end_differences:
        lines.extend(d.end_differences)
    else:
        lines.append(f"end: both {d.end_a}")
    if d.dropped_a or d.dropped_b:
        lines.append(f"not recorded (dropped by the recorder): A {d.dropped_a:,}, B {d.dropped_b:,}")
    ta, tb = d.timing_a, d.timing_b
    lines.append(f"{'timing':<14}{'A':>14}{'B':>14}")
    for label, x, y in (("first chunk", ta.first_chunk, tb.first_chunk), ("Δt p50", ta.dt_p50, tb.dt_p50),
                        ("Δt p99", ta.dt_p99, tb.dt_p99), ("total", ta.total, tb.total)):
        lines.append(f"{label:<14}{ms(x):>14}{ms(y):>14}")
    if d.same:
        lines.append("same: data and end agree")
    else:
        counts = [f"{len(d.missing)} missing", f"{len(d.extra)} extra", f"{len(d.changed)} changed",
                  f"{len(d.reordered)} reordered"]
        if d.duplicates_a or d.duplicates_b:
            counts.append(f"{len(d.duplicates_a) + len(d.duplicates_b)} duplicate")
        if d.end_differences:
            counts.append("end differs")
        lines.append("differ: " + ", ".join(counts))
    return "\n".join(lines)
