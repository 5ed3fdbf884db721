"""Shared links and the transfers that cross them.

A link (a NIC direction, a GPU's PCIe link, a local disk, the object store's egress) has a
bandwidth that the transfers crossing it share. Rates are max-min fair (progressive filling):
each transfer gets an equal share of its most contended link, and what a capped or elsewhere
bottlenecked transfer leaves goes to the others. Whenever a transfer starts or ends, every rate
is recomputed, so each transfer's finish time moves as others come and go.

Bytes move lazily: ``remaining_gb`` and ``gb_moved`` are as of :attr:`LinkNetwork.now`, the last
:meth:`~LinkNetwork.advance` (which ``start``, ``cancel`` and ``pop_finished`` make first); the
finish times do not depend on it. Call ``advance(t)`` before reading them at ``t``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

_EPS_GB = 1e-12


@dataclass
class Transfer:
    """Bytes moving across a set of links.

    Attributes:
        tid: Identifier, unique within its network.
        links: Indices of the links crossed.
        remaining_gb: Bytes still to move.
        cap_gb_per_s: Per-transfer rate cap (e.g. the object store's streams), ``inf`` if none.
        payload: What to notify on completion.
    """

    tid: int
    links: tuple[int, ...]
    remaining_gb: float
    cap_gb_per_s: float
    payload: object = None
    rate: float = 0.0
    _eta: float = field(default=math.inf, repr=False)


class LinkNetwork:
    """Links with capacities and the active transfers over them."""

    def __init__(self, capacities_gb_per_s: list[float], names: list[str]) -> None:
        self.capacity = list(capacities_gb_per_s)
        self.names = list(names)
        self.transfers: dict[int, Transfer] = {}
        self.now = 0.0
        self._next_id = 0
        self.gb_moved = [0.0] * len(self.capacity)

    def add_link(self, capacity: float, name: str) -> int:
        self.capacity.append(capacity)
        self.names.append(name)
        self.gb_moved.append(0.0)
        return len(self.capacity) - 1

    # -- time --------------------------------------------------------------------------------
    def advance(self, t: float) -> None:
        """Move every transfer's bytes forward to time ``t``."""
        dt = t - self.now
        if dt < 0:
            raise ValueError(f"LinkNetwork time cannot go backwards: {t} < {self.now}")
        if dt > 0:
            for tr in self.transfers.values():
                moved = min(tr.rate * dt, tr.remaining_gb)
                tr.remaining_gb -= moved
                for link in tr.links:
                    self.gb_moved[link] += moved
        self.now = t

    def next_completion(self) -> float:
        """Absolute time at which the next transfer finishes (``inf`` if none)."""
        best = math.inf
        for tr in self.transfers.values():
            if tr._eta < best:
                best = tr._eta
        return best

    def pop_finished(self, t: float) -> list[Transfer]:
        """Advance to ``t`` and remove the transfers finished by then (in start order)."""
        self.advance(t)
        done = [tr for tr in self.transfers.values() if tr._eta <= t or tr.remaining_gb <= _EPS_GB]
        if done:
            for tr in done:
                for link in tr.links:
                    self.gb_moved[link] += max(tr.remaining_gb, 0.0)
                tr.remaining_gb = 0.0
                del self.transfers[tr.tid]
            self._reallocate()
        return done

    # -- membership --------------------------------------------------------------------------
    def start(
        self, t: float, links, size_gb: float, cap: float = math.inf, payload=None
    ) -> Transfer:
        self.advance(t)
        tr = Transfer(self._next_id, tuple(links), float(size_gb), cap, payload)
        self._next_id += 1
        self.transfers[tr.tid] = tr
        self._reallocate()
        return tr

    def cancel(self, t: float, tid: int) -> None:
        self.advance(t)
        if self.transfers.pop(tid, None) is not None:
            self._reallocate()

    # -- max-min fair allocation (progressive filling) ---------------------------------------
    def _reallocate(self) -> None:
        active = list(self.transfers.values())
        if not active:
            return
        residual: dict[int, float] = {}
        users: dict[int, list[Transfer]] = {}
        for tr in active:
            tr.rate = -1.0  # unfixed
            for link in tr.links:
                if link in users:
                    users[link].append(tr)
                else:
                    residual[link] = self.capacity[link]
                    users[link] = [tr]
        n_unfixed = {link: len(trs) for link, trs in users.items()}
        left = len(active)
        while left:
            # The level: the smallest fair share a link can still give, or a transfer's cap.
            level = math.inf
            for link, n in n_unfixed.items():
                if n and residual[link] / n < level:
                    level = residual[link] / n
            for tr in active:
                if tr.rate < 0 and tr.cap_gb_per_s < level:
                    level = tr.cap_gb_per_s
            # Fix every transfer bottlenecked at this level: capped ones, and the users of links
            # whose fair share equals the level.
            to_fix = [tr for tr in active if tr.rate < 0 and tr.cap_gb_per_s <= level]
            for link, n in n_unfixed.items():
                if n and residual[link] / n <= level * (1 + 1e-12):
                    to_fix.extend(tr for tr in users[link] if tr.rate < 0)
            for tr in to_fix:
                if tr.rate >= 0:
                    continue
                tr.rate = level
                left -= 1
                for link in tr.links:
                    residual[link] -= level
                    n_unfixed[link] -= 1
        for tr in active:
            if tr.remaining_gb <= _EPS_GB:
                tr._eta = self.now  # (done, whatever its rate: pop_finished takes it now)
            else:
                tr._eta = self.now + tr.remaining_gb / tr.rate if tr.rate > 0 else math.inf
