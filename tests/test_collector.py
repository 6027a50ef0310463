"""The console's collector policy (console/core/collector.py): CPython's own gc, thresholds real."""
from __future__ import annotations

import gc

from console.core.collector import NEVER, Collector


def test_full_passes_wait_for_an_idle_moment_or_for_too_many_young_passes():
    now = [100.0]
    before = gc.get_threshold()
    collector = Collector(idle_after=1.0, idle_min=3, force_after=20, clock=lambda: now[0])
    collector.install()
    try:
        assert gc.get_threshold() == (before[0], before[1], NEVER)  # no automatic full pass
        gc.collect()
        for _ in range(5):
            gc.collect(1)  # five young generation-1 passes
        assert gc.get_count()[2] == 5
        assert not collector.tick(busy=True)  # chunks arriving: never
        now[0] += 0.5
        assert not collector.tick(busy=False)  # idle, but not for long enough
        now[0] += 1.0
        assert collector.tick(busy=False) and gc.get_count()[2] == 0  # idle for 1.5 s: collected
        for _ in range(2):
            gc.collect(1)
        now[0] += 5
        assert not collector.tick(busy=False)  # idle, but too little to collect
        for _ in range(20):
            gc.collect(1)
        assert collector.tick(busy=True) and collector.forced == 1  # busy, but overdue
    finally:
        collector.uninstall()
    assert gc.get_threshold() == before


def test_paused_blocks_nest_and_put_the_collector_back():
    from console.core.collector import paused

    assert gc.isenabled()
    with paused():
        assert not gc.isenabled()
        with paused():  # a second sort starting while the first runs
            assert not gc.isenabled()
        assert not gc.isenabled()  # the first still runs
    assert gc.isenabled()


def test_overlapping_paused_blocks_put_the_collector_back_when_the_last_one_ends():
    """Two tabs sorting: the first to start ends first (not nested, overlapping)."""
    from console.core.collector import paused

    first, second = paused(), paused()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert not gc.isenabled()  # the second sort still runs
    second.__exit__(None, None, None)
    assert gc.isenabled()
