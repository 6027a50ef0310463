"""A stable sort done in slices, so a screen keeps answering while a million rows sort.

`sorted()` of a million keys is one C call that holds the loop (and the GIL: a thread
would not help) for 1-3 s. Here the work is cut into steps of about `step` elements,
each a C-speed sort of a small list: sorted runs of (key, position) first, then merges
of run pairs block by block (a block of one run and the elements of the other up to its
last pair, found by bisecting, sorted together: Timsort merges two sorted runs in linear
time). A generator: each `next()` is one step; the result is its return value.

Equal keys keep their original order, also descending (as `sorted(reverse=True)` does).
"""
from __future__ import annotations

from bisect import bisect_right
from typing import Any, Generator, Sequence


def sort_in_slices(keys: Sequence[Any], step: int = 5_000,
                   descending: bool = False) -> Generator[float, None, list[int]]:
    """Indices of `keys` in sorted order; yields the fraction done after each step.
    Raises TypeError (at some step) when keys do not compare."""
    n = len(keys)
    step = max(1, step)
    sign = -1 if descending else 1
    runs: list[list[tuple]] = []
    for start in range(0, n, step):
        # (key, position): unique and totally ordered, so no key function (random reads
        # of a million keys cost more than the sort) and ties need no care; descending
        # sorts (key, -position) and reverses
        run = [(keys[i], sign * i) for i in range(start, min(n, start + step))]
        run.sort()
        runs.append(run)
        yield 0.3 * min(n, start + step) / max(1, n)
    levels = max(1, (len(runs) - 1).bit_length())
    level = 0
    while len(runs) > 1:
        merged: list[list[tuple]] = []
        for p in range(0, len(runs) - 1, 2):
            merged.append((yield from _merge(runs[p], runs[p + 1], step,
                                             0.3 + 0.6 * level / levels, 0.6 / levels * (p + 2) / len(runs))))
        if len(runs) % 2:
            merged.append(runs[-1])
        runs = merged
        level += 1
    pairs = runs[0] if runs else []
    del runs
    # the positions, taken off the end a slice at a time so that the million pairs are
    # freed a slice per step too (freeing them at once held the loop ~300 ms)
    pieces: list[list[int] | None] = []
    while pairs:
        piece = pairs[-step:]
        del pairs[-step:]
        positions = [sign * pos for _, pos in piece]
        if descending:
            positions.reverse()
        pieces.append(positions)
        del piece
        yield 0.9 + 0.1 * (n - len(pairs)) / max(1, n)
    if not descending:
        pieces.reverse()
    order: list[int] = []
    for k, positions in enumerate(pieces, 1):
        order.extend(positions)
        pieces[k - 1] = None  # its references go now, not all at once at the end
        if not k % 20:  # a million positions copied at once, ~5-15 ms: a step per 20 slices
            yield 1.0
    return order


def _merge(a: list[tuple], b: list[tuple], step: int, base: float, span: float):
    """Two sorted runs of distinct (key, position) pairs as one, a block per step."""
    out: list[tuple] = []
    i = j = 0
    while i < len(a) and j < len(b):
        ai, bj = min(i + step, len(a)), min(j + step, len(b))
        if a[ai - 1] < b[bj - 1]:  # everything up to the smaller block end, from both
            bj = bisect_right(b, a[ai - 1], j, bj)
        else:
            ai = bisect_right(a, b[bj - 1], i, ai)
        block = a[i:ai] + b[j:bj]
        block.sort()  # two sorted runs: Timsort merges them in linear time
        out.extend(block)
        i, j = ai, bj
        yield base + span * (i + j) / (len(a) + len(b))
    out.extend(a[i:])
    out.extend(b[j:])
    return out
