"""Full garbage collections on the console's terms, not mid-firehose.

CPython starts a full (generation 2) collection whenever objects that survived the
young passes grow by a quarter of what the last full pass kept. Under a stream of
100k+ chunks/s that is one every second or so, each 20-70 ms with the loop stopped:
the screen's longest stalls (issue 14). This policy takes the automatic full passes
away (young ones stay as they are) and runs them itself from the refresh timer:

- when nothing is busy (no call took in chunks, no table is sorting) for `idle_after`
  seconds and `idle_min` generation-1 passes went by since the last full one (an idle
  console pays it unnoticed);
- whatever happens, once `force_after` generation-1 passes went by without a full
  one (each follows about 7,000 more live containers: some 7 M between forced passes,
  a minute or more of a firehose), so a console that is never idle still frees its
  cyclic garbage.

Plain Python; `install` returns the thresholds it replaced, `uninstall` puts them back.
"""
from __future__ import annotations

import gc
import time
from contextlib import contextmanager
from typing import Callable

NEVER = 1 << 30  # a generation-2 threshold the counter never reaches
DEFAULT_IDLE_AFTER = 1.0  # s without new chunks before an idle full pass
DEFAULT_IDLE_MIN = 10  # generation-1 passes that make an idle full pass worth it
DEFAULT_FORCE_AFTER = 1_000  # generation-1 passes without a full one: collect anyway


class Collector:
    def __init__(self, *, idle_after: float = DEFAULT_IDLE_AFTER, idle_min: int = DEFAULT_IDLE_MIN,
                 force_after: int = DEFAULT_FORCE_AFTER, clock: Callable[[], float] = time.monotonic) -> None:
        self.idle_after = idle_after
        self.idle_min = idle_min
        self.force_after = force_after
        self.clock = clock
        self.installed: tuple[int, int, int] | None = None
        self.last_busy = clock()
        self.full_passes = 0  # run by this policy
        self.forced = 0  # of which not at idle

    def install(self) -> None:
        if self.installed is None:
            self.installed = gc.get_threshold()
            young, middle, _ = self.installed
            gc.set_threshold(young, middle, NEVER)  # young passes unchanged (a bigger first one
            # changed when py-libp2p's abandoned generators are finalized, and broke a test)

    def uninstall(self) -> None:
        if self.installed is not None:
            gc.set_threshold(*self.installed)
            self.installed = None

    def tick(self, busy: bool) -> bool:
        """Called at the refresh rate; `busy` when chunks arrived since the last tick or
        other heavy work runs (a sort).
        True when it ran a full collection."""
        if self.installed is None:
            return False
        now = self.clock()
        if busy:
            self.last_busy = now
        pending = gc.get_count()[2]  # generation-1 passes since the last full one
        if pending >= self.force_after:
            self.forced += 1
        elif busy or pending < self.idle_min or now - self.last_busy < self.idle_after:
            return False
        gc.collect()
        self.full_passes += 1
        return True


_pauses = 0  # how many `paused()` blocks are open (two tabs can sort at once)
_was_enabled = False  # whether the collector ran before the first open block


@contextmanager
def paused():
    """No collection at all inside (for a short burst such as a sort in slices, whose
    million-element lists each young pass would walk, 30-100 ms a pass); the objects it
    leaves behind are looked at once after. Nested and overlapping uses are counted."""
    global _pauses, _was_enabled
    if _pauses == 0:
        _was_enabled = gc.isenabled()
        gc.disable()
    _pauses += 1
    try:
        yield
    finally:
        _pauses -= 1
        if _pauses == 0 and _was_enabled:  # the last block out, whichever entered first
            gc.enable()
