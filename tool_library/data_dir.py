"""Where the tool library keeps what it creates on first use (the sample SQLite
database and the sample files folder), and how it creates them safely."""
from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Callable

ENV_VAR = "OLANE_DATA_DIR"


def data_dir() -> Path:
    """`$OLANE_DATA_DIR` when set (tests set it), else the user data dir of
    olane-console (platformdirs). Created if missing."""
    value = os.environ.get(ENV_VAR)
    if value:
        path = Path(value).expanduser()
    else:
        import platformdirs

        path = Path(platformdirs.user_data_dir("olane-console"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def create_atomically(target: Path, build: Callable[[Path], None]) -> Path:
    """Make `target` (a file or a folder) with `build(temp_path)`, then rename it
    into place, so that nobody ever sees a half-built one. If another process
    got there first, its result is kept and ours is dropped. Blocking: call it
    from a worker thread."""
    target = Path(target)
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        build(temp)
        if temp.is_dir():
            try:
                os.rename(temp, target)  # atomic; fails if target appeared meanwhile
            except OSError:
                if not target.exists():
                    raise
        else:
            os.replace(temp, target)  # atomic; both results are complete, either may win
    finally:
        if temp.is_dir():
            shutil.rmtree(temp, ignore_errors=True)
        elif temp.exists():
            temp.unlink()
    return target
