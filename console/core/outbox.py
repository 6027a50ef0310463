"""What a bidirectional call's tab sends: values typed in its send box wait here
(bounded) until the trio side sends them, and the newest ones sent stay for the
screen to show. Plain Python: the screen puts, the session's pump takes."""
from __future__ import annotations

import json
from collections import deque
from typing import Any

#: values waiting to be sent before the send box refuses more
MAX_PENDING = 10_000
#: sent values kept for the screen (the count covers all of them)
KEEP_SENT = 200


class Outbox:
    def __init__(self, max_pending: int = MAX_PENDING, keep: int = KEEP_SENT) -> None:
        self.max_pending = max_pending
        self.pending: deque[Any] = deque()
        self.sent: deque[tuple[int, Any]] = deque(maxlen=keep)  # (sequence, value), newest last
        self.count = 0  # values sent, all of them
        self.end_asked = False
        self.ended = False  # the end of the input was sent
        self.error: str | None = None  # why sending stopped (the call ended first)
        self.version = 0  # bumped on every change

    def put(self, values: list[Any]) -> int:
        """Queue values to send; returns how many were taken (the rest: the box is full or ended)."""
        if self.end_asked:
            return 0
        room = max(0, self.max_pending - len(self.pending))
        taken = values[:room]
        self.pending.extend(taken)
        self.version += 1
        return len(taken)

    def ask_end(self) -> None:
        self.end_asked = True
        self.version += 1

    def take(self) -> Any:
        return self.pending.popleft()

    def mark_sent(self, value: Any) -> None:
        self.count += 1
        self.sent.append((self.count, value))
        self.version += 1

    def mark_ended(self) -> None:
        self.ended = True
        self.version += 1

    def stop(self, why: str) -> None:
        self.error = why
        self.pending.clear()
        self.version += 1


def parse_lines(text: str) -> tuple[list[Any], str | None]:
    """The send box's text, one JSON value a line (blank lines skipped) ->
    (values, error): on the first line that is not JSON, nothing is taken."""
    values = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            values.append(json.loads(line))
        except ValueError as exc:
            return [], f"line {number} is not JSON: {exc}"
    return values, None
