"""`o://files`: list, stat and stream files under one root folder, and nothing
outside it.

Confinement: a path is taken relative to the root. An absolute path, or one
whose real location (after `..` and symlinks are resolved) is outside the root,
is refused with 4005 NOT_AUTHORIZED before anything is opened, whether or not it
exists (so nothing leaks about the outside). `..` that stays inside the root
(`notes/../README.txt`) is fine. A path inside the root that does not exist is
4002 NOT_FOUND.

`read` contract: chunks `{"offset": n, "data": <bytes>}` in file order, each of
`chunkSize` bytes but the last; final data `{"path", "size", "sha256", "chunks"}`
(sha256 of exactly the bytes sent). `data` travels as base64 text with the JSON
codec and as raw bytes (msgpack bin) with msgpack: a JSON client decodes it
with base64, a msgpack client gets `bytes`.
"""
from __future__ import annotations

import hashlib
import os
import random
import stat as stat_module
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import trio

from node_runtime import ErrorCode, OlaneError, Param, Request, StreamEnd, Tool, tool_method

from .data_dir import create_atomically, data_dir

SAMPLE_FOLDER = "sample-files"
MIN_CHUNK = 1024
MAX_CHUNK = 4 * 1024 * 1024  # base64 of 4 MiB is 5.6 MB: well inside a 16 MiB frame
MAX_LIST_ENTRIES = 10_000


def build_sample_folder(path: Path) -> None:
    """A few text files and a 1 MiB binary file (the same bytes everywhere)."""
    (path / "notes").mkdir(parents=True)
    (path / "data").mkdir()
    (path / "README.txt").write_text(
        "Sample files served by the olane files tool (o://files).\n"
        "Try: list, stat notes/todo.md, read data/random-1MiB.bin.\n", encoding="utf-8")
    (path / "notes" / "todo.md").write_text(
        "# To do\n\n- [x] stream a file in chunks\n- [ ] watch the chunks arrive in the console\n", encoding="utf-8")
    (path / "notes" / "haiku.txt").write_text(
        "chunks cross the network\none frame after another\nthe hash still matches\n", encoding="utf-8")
    rows = ["city,country,population"] + [
        f"{city},{country},{pop}" for city, country, pop in [
            ("Tokyo", "JP", 37400068), ("Delhi", "IN", 28514000), ("Shanghai", "CN", 25582000),
            ("São Paulo", "BR", 21650000), ("Paris", "FR", 11017000), ("London", "GB", 9046000)]]
    (path / "data" / "cities.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    (path / "data" / "random-1MiB.bin").write_bytes(random.Random(1).randbytes(1024 * 1024))


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _kind(mode: int) -> str:
    if stat_module.S_ISREG(mode):
        return "file"
    if stat_module.S_ISDIR(mode):
        return "dir"
    if stat_module.S_ISLNK(mode):
        return "symlink"
    return "other"


class FilesTool(Tool):
    """Read-only access to the files under one root folder."""

    address = "o://files"
    description = "Files under one root folder: list a folder, stat a path, stream a file in chunks."

    def __init__(self, address: str | None = None, *, root: "str | Path | None" = None) -> None:
        super().__init__(address)
        self._given_root = Path(root).expanduser() if root else None
        self._root: Path | None = None
        self._root_lock = trio.Lock()

    async def root(self) -> Path:
        """The root folder, resolved: the operator's, or the sample folder (built on first use)."""
        if self._root is None:
            async with self._root_lock:
                if self._root is None:
                    if self._given_root is not None:
                        root = self._given_root
                        if not root.is_dir():
                            raise OlaneError(ErrorCode.NOT_CONFIGURED, f"files root {root} is not a folder")
                    else:
                        root = await trio.to_thread.run_sync(
                            create_atomically, data_dir() / SAMPLE_FOLDER, build_sample_folder)
                    self._root = root.resolve()
        return self._root

    async def resolve_path(self, path: str) -> tuple[Path, str]:
        """(real path, path relative to the root) for a path given by a caller; 4005 outside the root."""
        root = await self.root()
        if "\x00" in path:
            raise OlaneError(ErrorCode.INVALID_PARAMETERS, "path contains a NUL byte", {"path": path})
        if path.startswith(("/", "\\")) or os.path.isabs(path) or (len(path) > 1 and path[1] == ":"):
            raise OlaneError(ErrorCode.NOT_AUTHORIZED, f"absolute paths are not allowed: {path!r} "
                             "(paths are relative to the files root)", {"path": path})
        real = (root / path).resolve()  # follows `..` and every symlink on the way
        if real != root and root not in real.parents:
            raise OlaneError(ErrorCode.NOT_AUTHORIZED, f"{path!r} is outside the files root", {"path": path})
        if not os.path.lexists(real):
            raise OlaneError(ErrorCode.NOT_FOUND, f"no such file or folder: {path!r}", {"path": path})
        return real, (real.relative_to(root).as_posix() or ".")

    @tool_method(
        "Lists a folder: {path, entries: [{name, type (file|dir|symlink|other), size, modified}], truncated}, "
        f"sorted by name, at most {MAX_LIST_ENTRIES} entries.",
        params={"path": Param("folder, relative to the files root", examples=[".", "notes"])},
        category="files",
    )
    async def _tool_list(self, request: Request, path: str = ".") -> dict[str, Any]:
        real, rel = await self.resolve_path(path)
        if not real.is_dir():
            raise OlaneError(ErrorCode.INVALID_PARAMETERS, f"{path!r} is not a folder", {"path": path})
        return await trio.to_thread.run_sync(self._list, real, rel)

    def _list(self, real: Path, rel: str) -> dict[str, Any]:
        entries = []
        truncated = False
        with os.scandir(real) as scan:
            for entry in scan:
                if len(entries) >= MAX_LIST_ENTRIES:
                    truncated = True
                    break
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                item: dict[str, Any] = {"name": entry.name, "type": _kind(st.st_mode), "size": st.st_size,
                                        "modified": _iso(st.st_mtime)}
                if item["type"] == "symlink":  # say whether following it would be allowed
                    target = Path(entry.path).resolve()
                    root = self._root
                    item["target"] = ("outside" if target != root and root not in target.parents
                                      else "missing" if not target.exists() else "inside")
                entries.append(item)
        entries.sort(key=lambda e: e["name"])
        return {"path": rel, "entries": entries, "truncated": truncated}

    @tool_method(
        "Describes one path: {path, type, size, modified, mode}.",
        params={"path": Param("file or folder, relative to the files root",
                              examples=["README.txt", "data/random-1MiB.bin"])},
        category="files",
    )
    async def _tool_stat(self, request: Request, path: str) -> dict[str, Any]:
        real, rel = await self.resolve_path(path)
        st = await trio.to_thread.run_sync(os.stat, real)
        return {"path": rel, "type": _kind(st.st_mode), "size": st.st_size, "modified": _iso(st.st_mtime),
                "mode": oct(stat_module.S_IMODE(st.st_mode))}

    @tool_method(
        "Streams a file in chunks {offset, data} (data: bytes; base64 text with the JSON codec), "
        "final {path, size, sha256, chunks}.",
        params={
            "path": Param("file, relative to the files root", examples=["data/random-1MiB.bin", "README.txt"]),
            "chunkSize": Param(f"bytes per chunk, {MIN_CHUNK} to {MAX_CHUNK}", examples=[65536, 1048576],
                               minimum=MIN_CHUNK, maximum=MAX_CHUNK),
        },
        risk="low",
        category="files",
    )
    async def _tool_read(self, request: Request, path: str, chunkSize: int = 65536):
        real, rel = await self.resolve_path(path)
        st = await trio.to_thread.run_sync(os.stat, real)
        if not stat_module.S_ISREG(st.st_mode):  # a folder, or a FIFO/device that could block forever
            raise OlaneError(ErrorCode.INVALID_PARAMETERS, f"{path!r} is a {_kind(st.st_mode)}, not a file",
                             {"path": path})
        # O_NOFOLLOW: `real` has no symlinks left, so one swapped in since the check is refused
        fd = await trio.to_thread.run_sync(os.open, real, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        digest = hashlib.sha256()
        offset = chunks = 0

        def read_chunk() -> bytes:
            """chunkSize bytes (fewer only at the end); hashed here so that 4 MiB never blocks trio."""
            parts = []
            got = 0
            while got < chunkSize:
                part = os.read(fd, chunkSize - got)
                if not part:
                    break
                parts.append(part)
                got += len(part)
            data = parts[0] if len(parts) == 1 else b"".join(parts)
            digest.update(data)
            return data

        try:
            while data := await trio.to_thread.run_sync(read_chunk):
                chunks += 1
                yield {"offset": offset, "data": data}
                offset += len(data)
                del data  # hold no chunk while waiting for the next read
            yield StreamEnd({"path": rel, "size": offset, "sha256": digest.hexdigest(), "chunks": chunks})
        finally:
            os.close(fd)
