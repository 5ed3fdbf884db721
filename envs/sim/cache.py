"""Model copies held in a host's memory (or on its disk), under a capacity limit."""

from __future__ import annotations

from dataclasses import dataclass


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
    """

    def __init__(self, capacity_gb: float, sizes_gb: list[float]) -> None:
        self.capacity_gb = capacity_gb
        self.sizes = sizes_gb
        self.entries: dict[int, CacheEntry] = {}
        self.used_gb = 0.0

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
        reclaimable = sum(
            self.sizes[m] for m, e in self.entries.items() if not e.pinned and e.readers == 0
        )
        return self.free_gb + reclaimable

    def can_fit(self, model: int) -> bool:
        """Whether ``model`` is here or could be inserted by evicting unpinned, unread copies."""
        if model in self.entries:
            return True
        return self.sizes[model] <= self.room_gb() + 1e-9

    def insert(self, model: int, t: float, pinned: bool = False) -> list[int]:
        """Insert ``model``; returns the models evicted. Raises ``MemoryError`` if it can't fit."""
        if model in self.entries:
            e = self.entries[model]
            e.last_used_s = t
            e.pinned = e.pinned or pinned
            return []
        if not self.can_fit(model):
            raise MemoryError("no room")
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
        self.used_gb += size
        return evicted

    def remove(self, model: int) -> bool:
        e = self.entries.get(model)
        if e is None or e.readers > 0:
            return False
        del self.entries[model]
        self.used_gb -= self.sizes[model]
        if not self.entries:
            self.used_gb = 0.0  # no float drift once empty
        return True
