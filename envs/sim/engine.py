"""Event queue with explicit same-time order.

Entries are ``(time_s, priority, seq, payload)``: ``priority`` (an IntEnum) fixes the order of
events due at the same instant, ``seq`` (from a counter owned by the queue instance, never a
class-level one) keeps insertion order among equals, so the queue never compares payloads.
"""

from __future__ import annotations

import heapq
import itertools
from enum import IntEnum
from typing import Any


class Priority(IntEnum):
    """Order of simultaneous events: lower runs first."""

    TRANSFER_DONE = 0  # bytes landed: a stage ends before anything reacts to the new state
    STAGE_DONE = 1  # a timed stage (sandbox, runtime init, TTFB, deserialisation) ends
    TIMER = 2  # anything else scheduled by the simulator


class EventQueue:
    """A binary heap of timed events."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, int, Any]] = []
        self._seq = itertools.count()

    def push(self, time_s: float, priority: Priority, payload: Any) -> None:
        heapq.heappush(self._heap, (time_s, int(priority), next(self._seq), payload))

    def peek_time(self) -> float:
        """Time of the next event, ``inf`` when empty."""
        return self._heap[0][0] if self._heap else float("inf")

    def pop(self) -> tuple[float, int, Any]:
        t, p, _, payload = heapq.heappop(self._heap)
        return t, p, payload

    def __len__(self) -> int:
        return len(self._heap)
