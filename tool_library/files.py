"""`o://files`: list, stat and stream files under one root folder, and nothing
outside it.

Confinement: a path is taken relative to the root and normalised as text
first: an absolute path, or one whose `..` leads above the root, is refused
with 4005 NOT_AUTHORIZED before anything is opened. `..` that stays inside the
root (`notes/../README.txt`) is fine. The normalised path is then opened
beneath the root without following a symlink in any component, so nothing
swapped in between a check and the open can lead outside (there is no
separate check):
- with openat2(2) `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS` relative to a
  descriptor of the root, where the kernel has it (Linux 5.6+; x86_64/aarch64,
  called through ctypes; ENOSYS or a seccomp refusal falls back);
- else one component at a time: each folder with
  `os.open(name, O_DIRECTORY | O_NOFOLLOW, dir_fd=parent)`, the last component
  with O_NOFOLLOW.
A symlink anywhere on the way, even one pointing inside the root, is 4005; a
path that does not exist is 4002 NOT_FOUND. `stat` and `list` answer from the
opened descriptor (fstat, scandir of the fd), `read` reads it, so what is
described or sent is what was opened. `list` shows symlinks as entries (type
`symlink`, `target` inside/outside/missing) without following them.

`read` contract: chunks `{"offset": n, "data": <bytes>}` in file order, each of
`chunkSize` bytes but the last; final data `{"path", "size", "sha256", "chunks"}`
(sha256 of exactly the bytes sent). `data` travels as base64 text with the JSON
codec and as raw bytes (msgpack bin) with msgpack: a JSON client decodes it
with base64, a msgpack client gets `bytes`.

Threads: file work runs in this tool's own trio CapacityLimiter (`max_threads`,
default 8), apart from trio's default one and the sqlite tool's.
"""
from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import platform
import random
import stat as stat_module
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import trio

from node_runtime import ErrorCode, Limits, OlaneError, Param, Request, StreamEnd, Tool, tool_method

from .data_dir import create_atomically, data_dir

SAMPLE_FOLDER = "sample-files"
MIN_CHUNK = 1024
MAX_CHUNK = 4 * 1024 * 1024  # base64 of 4 MiB is 5.6 MB: well inside a 16 MiB frame
MAX_LIST_ENTRIES = 10_000
FRAME_OVERHEAD = 4096  # room kept in a frame for the envelope around a chunk's data
ENTRY_OVERHEAD = 100  # bytes of JSON around one entry's name in a listing
DEFAULT_MAX_THREADS = 8

# --- opening beneath a folder, no symlinks ------------------------------------------------

RESOLVE_NO_SYMLINKS = 0x04  # linux/openat2.h; implies RESOLVE_NO_MAGICLINKS
RESOLVE_BENEATH = 0x08
_SYS_OPENAT2 = {"x86_64": 437, "aarch64": 437}.get(platform.machine()) if sys.platform == "linux" else None
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # opening a FIFO must not wait for a writer
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _NOFOLLOW | _CLOEXEC
#: flags for the last component: read it (read, list) / only look at it (stat)
READ_FLAGS = os.O_RDONLY | _NONBLOCK | _NOFOLLOW | _CLOEXEC | getattr(os, "O_NOCTTY", 0)
LOOK_FLAGS = (os.O_PATH | _NOFOLLOW | _CLOEXEC) if hasattr(os, "O_PATH") else READ_FLAGS


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_syscall = None
_openat2_works: bool | None = None


def _openat2(dir_fd: int, path: str, flags: int) -> int:
    """openat2(dir_fd, path, {flags, resolve: BENEATH | NO_SYMLINKS}); OSError on failure."""
    global _syscall
    if _syscall is None:
        _syscall = ctypes.CDLL(None, use_errno=True).syscall
        _syscall.restype = ctypes.c_long
    how = _OpenHow(flags, 0, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)
    encoded = os.fsencode(path)
    for _ in range(16):  # EINTR / EAGAIN (a concurrent rename seen by the kernel): try again
        fd = _syscall(ctypes.c_long(_SYS_OPENAT2), ctypes.c_int(dir_fd), ctypes.c_char_p(encoded),
                      ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how)))
        if fd >= 0:
            return fd
        err = ctypes.get_errno()
        if err not in (errno.EINTR, errno.EAGAIN):
            break
    raise OSError(err, os.strerror(err), path)


def openat2_available() -> bool:
    """Whether this kernel (and any seccomp filter) lets us call openat2; probed once."""
    global _openat2_works
    if _openat2_works is None:
        _openat2_works = False
        if _SYS_OPENAT2 is not None:
            try:
                root = os.open("/", _DIR_FLAGS)
                try:
                    os.close(_openat2(root, ".", _DIR_FLAGS))
                    _openat2_works = True
                finally:
                    os.close(root)
            except OSError:  # ENOSYS (old kernel), EPERM (seccomp), EINVAL/E2BIG (old struct)
                pass
    return _openat2_works


def open_beneath(dir_fd: int, parts: list[str], flags: int, *, use_openat2: bool) -> int:
    """A descriptor for `dir_fd/parts[0]/.../parts[-1]` (no `..`, no empty parts;
    [] is dir_fd's folder itself) opened with `flags`, following no symlink in
    any component: openat2 when `use_openat2`, else an fd-by-fd walk. Raises
    OSError (ELOOP for a symlink on the way)."""
    if use_openat2:
        return _openat2(dir_fd, "/".join(parts) or ".", flags)
    if not parts:
        return os.open(".", flags, dir_fd=dir_fd)
    fd = dir_fd
    try:
        for name in parts[:-1]:
            try:
                child = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno == errno.ENOTDIR and _is_symlink(name, fd):
                    raise OSError(errno.ELOOP, "a symlink on the way", name) from None
                raise
            if fd != dir_fd:
                os.close(fd)
            fd = child
        return os.open(parts[-1], flags | _NOFOLLOW, dir_fd=fd)
    finally:
        if fd != dir_fd:
            os.close(fd)


def _is_symlink(name: str, dir_fd: int) -> bool:
    try:
        return stat_module.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


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

    def __init__(self, address: str | None = None, *, root: "str | Path | None" = None,
                 max_threads: int = DEFAULT_MAX_THREADS, resolver: str = "auto") -> None:
        """`resolver`: "auto" (openat2 where the kernel has it, else the walk),
        "openat2" (ValueError where it is missing) or "walk"."""
        super().__init__(address)
        if resolver not in ("auto", "openat2", "walk"):
            raise ValueError('resolver must be "auto", "openat2" or "walk"')
        if resolver == "openat2" and not openat2_available():
            raise ValueError("openat2 is not available on this system")
        self.resolver = "openat2" if resolver == "openat2" or (resolver == "auto" and openat2_available()) \
            else "walk"
        self._given_root = Path(root).expanduser() if root else None
        self._root: Path | None = None
        self._root_lock = trio.Lock()
        self.threads = trio.CapacityLimiter(max_threads)  # our own: never trio's default limiter

    @property
    def frame_budget(self) -> int:
        """Bytes of data one frame of the serving node may carry (its max_frame_bytes less an envelope)."""
        limits = getattr(self.node, "limits", None) or Limits()
        return limits.max_frame_bytes - FRAME_OVERHEAD

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
                            create_atomically, data_dir() / SAMPLE_FOLDER, build_sample_folder,
                            limiter=self.threads)
                    self._root = root.resolve()
        return self._root

    async def parts_of(self, path: str) -> list[str]:
        """The components of a caller's path, normalised (`.` and `..` applied as text);
        4005 for an absolute path or one that leads above the root."""
        await self.root()
        if "\x00" in path:
            raise OlaneError(ErrorCode.INVALID_PARAMETERS, "path contains a NUL byte", {"path": path})
        if path.startswith(("/", "\\")) or os.path.isabs(path) or (len(path) > 1 and path[1] == ":"):
            raise OlaneError(ErrorCode.NOT_AUTHORIZED, f"absolute paths are not allowed: {path!r} "
                             "(paths are relative to the files root)", {"path": path})
        parts: list[str] = []
        for name in path.split("/"):
            if name in ("", "."):
                continue
            if name == "..":
                if not parts:
                    raise OlaneError(ErrorCode.NOT_AUTHORIZED, f"{path!r} is outside the files root",
                                     {"path": path})
                parts.pop()
            else:
                parts.append(name)
        return parts

    def open_path(self, parts: list[str], flags: int, path: str) -> int:
        """(In a worker thread.) A descriptor for `parts` beneath the root, no
        symlink followed; OlaneError 4005 / 4002 / 4001 when it cannot be opened."""
        root_fd = os.open(self._root, _DIR_FLAGS)
        try:
            return open_beneath(root_fd, parts, flags, use_openat2=self.resolver == "openat2")
        except OSError as exc:
            raise _refusal(exc, path) from None
        finally:
            os.close(root_fd)

    def _open_and_stat(self, parts: list[str], flags: int, path: str) -> tuple[int, os.stat_result]:
        fd = self.open_path(parts, flags, path)
        try:
            st = os.fstat(fd)
        except BaseException:
            os.close(fd)
            raise
        if stat_module.S_ISLNK(st.st_mode):  # O_PATH | O_NOFOLLOW opens a final symlink itself
            os.close(fd)
            raise _refusal(OSError(errno.ELOOP, "symlink"), path)
        return fd, st

    @tool_method(
        "Lists a folder: {path, entries: [{name, type (file|dir|symlink|other), size, modified}], truncated}, "
        f"sorted by name, at most {MAX_LIST_ENTRIES} entries (and what fits in one frame).",
        params={"path": Param("folder, relative to the files root", examples=[".", "notes"])},
        category="files",
    )
    async def _tool_list(self, request: Request, path: str = ".") -> dict[str, Any]:
        parts = await self.parts_of(path)
        return await trio.to_thread.run_sync(self.list_blocking, parts, path, self.frame_budget,
                                             limiter=self.threads)

    def list_blocking(self, parts: list[str], path: str, budget: int = 1 << 62) -> dict[str, Any]:
        """`list`'s answer for the folder `parts` (blocking: call it in a worker thread)."""
        fd, st = self._open_and_stat(parts, READ_FLAGS, path)
        try:
            if not stat_module.S_ISDIR(st.st_mode):
                raise OlaneError(ErrorCode.INVALID_PARAMETERS, f"{path!r} is not a folder", {"path": path})
            entries = []
            truncated = False
            root = self._root
            folder = root.joinpath(*parts)
            size = 0  # estimated bytes of the answer: it must fit in one frame
            with os.scandir(fd) as scan:  # the folder opened, not the path looked up again
                for entry in scan:
                    size += 4 * len(entry.name) + ENTRY_OVERHEAD
                    if len(entries) >= MAX_LIST_ENTRIES or size > budget:
                        truncated = True
                        break
                    try:
                        est = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    item: dict[str, Any] = {"name": entry.name, "type": _kind(est.st_mode), "size": est.st_size,
                                            "modified": _iso(est.st_mtime)}
                    if item["type"] == "symlink":  # where it points (a label: the tool never follows it)
                        target = (folder / entry.name).resolve()
                        item["target"] = ("outside" if target != root and root not in target.parents
                                          else "missing" if not target.exists() else "inside")
                    entries.append(item)
        finally:
            os.close(fd)
        entries.sort(key=lambda e: e["name"])
        return {"path": "/".join(parts) or ".", "entries": entries, "truncated": truncated}

    @tool_method(
        "Describes one path: {path, type, size, modified, mode}.",
        params={"path": Param("file or folder, relative to the files root",
                              examples=["README.txt", "data/random-1MiB.bin"])},
        category="files",
    )
    async def _tool_stat(self, request: Request, path: str) -> dict[str, Any]:
        parts = await self.parts_of(path)
        st = await trio.to_thread.run_sync(self.stat_blocking, parts, path, limiter=self.threads)
        return {"path": "/".join(parts) or ".", "type": _kind(st.st_mode), "size": st.st_size,
                "modified": _iso(st.st_mtime), "mode": oct(stat_module.S_IMODE(st.st_mode))}

    def stat_blocking(self, parts: list[str], path: str) -> os.stat_result:
        """fstat of `parts`, opened beneath the root (blocking: call it in a worker thread)."""
        fd, st = self._open_and_stat(parts, LOOK_FLAGS, path)
        os.close(fd)
        return st

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
        largest = self.frame_budget // 4 * 3  # a chunk travels as base64 with the JSON codec
        if chunkSize > largest:
            raise OlaneError(ErrorCode.INVALID_PARAMETERS,
                             f"chunkSize {chunkSize} would not fit in one frame of this node; at most {largest}",
                             {"parameter": "chunkSize", "maximum": largest})
        parts = await self.parts_of(path)
        fd = await trio.to_thread.run_sync(self.open_file_blocking, parts, path, limiter=self.threads)
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
            while data := await trio.to_thread.run_sync(read_chunk, limiter=self.threads):
                chunks += 1
                yield {"offset": offset, "data": data}
                offset += len(data)
                del data  # hold no chunk while waiting for the next read
            yield StreamEnd({"path": "/".join(parts) or ".", "size": offset, "sha256": digest.hexdigest(),
                             "chunks": chunks})
        finally:
            os.close(fd)

    def open_file_blocking(self, parts: list[str], path: str) -> int:
        """A descriptor of a regular file (blocking: call it in a worker thread). Checked on the
        descriptor: a folder, FIFO or device swapped in is refused (O_NONBLOCK kept a FIFO from blocking)."""
        fd, st = self._open_and_stat(parts, READ_FLAGS, path)
        if not stat_module.S_ISREG(st.st_mode):
            os.close(fd)
            raise OlaneError(ErrorCode.INVALID_PARAMETERS, f"{path!r} is a {_kind(st.st_mode)}, not a file",
                             {"path": path})
        return fd


def _refusal(exc: OSError, path: str) -> OlaneError:
    """The answer for a path that could not be opened beneath the root."""
    if exc.errno in (errno.ELOOP, errno.EXDEV):
        return OlaneError(ErrorCode.NOT_AUTHORIZED,
                          f"{path!r} goes through a symlink; the files tool does not follow symlinks",
                          {"path": path})
    if exc.errno in (errno.EACCES, errno.EPERM):
        return OlaneError(ErrorCode.NOT_AUTHORIZED, f"{path!r}: permission denied", {"path": path})
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return OlaneError(ErrorCode.NOT_FOUND, f"no such file or folder: {path!r}", {"path": path})
    if exc.errno == errno.ENAMETOOLONG:
        return OlaneError(ErrorCode.INVALID_PARAMETERS, f"path too long: {path[:100]!r}...", {"path": path[:100]})
    return OlaneError(ErrorCode.UNKNOWN, f"cannot open {path!r}: {exc.strerror}", {"path": path})
