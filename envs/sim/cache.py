"""Model copies held in a host's memory (or on its disk), under a capacity limit."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

# Rows of ModelCache.state: what compiled code (the env's masks and features) reads.
PRESENT, PINNED, READERS = range(3)


@dataclass
class CacheEntry:
    pinned: bool = False  # kept on purpose by the policy: never evicted to make room
    readers: int = 0  # loads reading this copy right now: never evicted while > 0
    last_used_s: float = 0.0


class ModelCache:
    """Copies of models on one host tier, never over ``capacity_gb``.

    Inserting makes room by evicting least recently used copies that are neither pinned nor
    being read; if that cannot free enough, the insert is refused (the model then streams
    through without staying).

    ``entries`` is the record; ``state`` (``int64[3, n_models]``: present, pinned, readers) and
    ``used`` (``float64[1]``) mirror it as arrays for compiled readers. Change pins and readers
    through :meth:`set_pinned` and :meth:`add_reader` so that both stay equal. The simulator
    passes views into its own cluster-wide arrays; by default the cache owns them.
    """

    def __init__(
        self,
        capacity_gb: float,
        sizes_gb: list[float],
        state: np.ndarray | None = None,
        used: np.ndarray | None = None,
    ) -> None:
        self.capacity_gb = capacity_gb
        self.sizes = sizes_gb
        self._sizes = np.asarray(sizes_gb, dtype=np.float64)
        self.entries: dict[int, CacheEntry] = {}
        self.used_gb = 0.0
        self.state = np.zeros((3, len(sizes_gb)), dtype=np.int64) if state is None else state
        self.used = np.zeros(1) if used is None else used

    def __contains__(self, model: int) -> bool:
        return model in self.entries

    @property
    def free_gb(self) -> float:
        return self.capacity_gb - self.used_gb

    def touch(self, model: int, t: float) -> None:
        e = self.entries.get(model)
        if e is not None:
            e.last_used_s = t

    def room_gb(self) -> float:
        """Free space plus what evicting every unpinned, unread copy would free."""
        return float(room_gb(self.state, self.capacity_gb - self.used_gb, self._sizes))

    def can_fit(self, model: int) -> bool:
        """Whether ``model`` is here or could be inserted by evicting unpinned, unread copies."""
        if model in self.entries:
            return True
        return self.sizes[model] <= self.room_gb() + 1e-9

    def set_pinned(self, model: int, pinned: bool) -> bool:
        """Pin (never evict) or unpin ``model``'s copy; False if there is none."""
        e = self.entries.get(model)
        if e is None:
            return False
        e.pinned = bool(pinned)
        self.state[PINNED, model] = e.pinned
        return True

    def add_reader(self, model: int, delta: int) -> None:
        """A load starts (+1) or stops (-1) reading ``model``'s copy."""
        e = self.entries[model]
        e.readers += delta
        self.state[READERS, model] = e.readers

    def insert(self, model: int, t: float, pinned: bool = False) -> list[int]:
        """Insert ``model``; returns the models evicted. Raises ``MemoryError`` if it can't fit."""
        if model in self.entries:
            e = self.entries[model]
            e.last_used_s = t
            self.set_pinned(model, e.pinned or pinned)
            return []
        if not self.can_fit(model):
            raise MemoryError("no room")
        return self._insert_new(model, t, pinned)

    def _insert_new(self, model: int, t: float, pinned: bool = False) -> list[int]:
        """:meth:`insert` of a model not here that :meth:`can_fit` has admitted."""
        size = self.sizes[model]
        evicted = []
        if size > self.free_gb + 1e-9:
            victims = sorted(
                (e.last_used_s, m)
                for m, e in self.entries.items()
                if not e.pinned and e.readers == 0
            )
            for _, m in victims:
                if size <= self.free_gb + 1e-9:
                    break
                self.remove(m)
                evicted.append(m)
        self.entries[model] = CacheEntry(pinned=pinned, last_used_s=t)
        self.state[PRESENT, model] = 1
        self.state[PINNED, model] = bool(pinned)
        self.state[READERS, model] = 0
        self.used_gb += size
        self.used[0] = self.used_gb
        return evicted

    def remove(self, model: int) -> bool:
        e = self.entries.get(model)
        if e is None or e.readers > 0:
            return False
        del self.entries[model]
        self.state[:, model] = 0
        self.used_gb -= self.sizes[model]
        if not self.entries:
            self.used_gb = 0.0  # no float drift once empty
        self.used[0] = self.used_gb
        return True


@njit(cache=True, nogil=True)
def room_gb(state, free_gb, sizes):
    """Room for a new copy in a cache with mirror ``state`` (int64[3, M]): its free space plus
    the copies that are neither pinned nor being read (what LRU eviction may take)."""
    r = free_gb
    for k in range(sizes.shape[0]):
        if state[PRESENT, k] == 1 and state[PINNED, k] == 0 and state[READERS, k] == 0:
            r += sizes[k]
    return r


@njit(cache=True, nogil=True)
def prefetch_host(m, mem, mem_used, mem_capacity, sizes, pending):
    """Host whose memory would take a new copy of ``m`` (no copy there, none on its way, room
    for it per :func:`room_gb`): the one with the most free memory (ties: lowest index); -1."""
    best = -1
    best_free = -1.0
    for h in range(mem.shape[0]):
        if mem[h, PRESENT, m] == 1 or pending[m, h] > 0:
            continue
        free = mem_capacity[h] - mem_used[h]
        if sizes[m] <= room_gb(mem[h], free, sizes) + 1e-9 and free > best_free:
            best, best_free = h, free
    return best
