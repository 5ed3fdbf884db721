"""Shared links and the transfers that cross them.

A link (a NIC direction, a GPU's PCIe link, a local disk, the object store's egress) has a
bandwidth that the transfers crossing it share. Rates are max-min fair (progressive filling):
each transfer gets an equal share of its most contended link, and what a capped or elsewhere
bottlenecked transfer leaves goes to the others. Whenever a transfer starts or ends, every rate
is recomputed, so each transfer's finish time moves as others come and go.

Bytes move lazily: ``remaining_gb`` and ``gb_moved`` are as of :attr:`LinkNetwork.now`, the last
:meth:`~LinkNetwork.advance` (which ``start``, ``cancel`` and ``pop_finished`` make first); the
finish times do not depend on it. Call ``advance(t)`` before reading them at ``t``.

Rates are recomputed lazily too: a start or an end marks them stale, and they are recomputed
(once, over the transfers then active) when next read (a transfer's ``rate``, the next
completion, time moving on). Several starts and ends at one instant (a finished fetch and the
stage it starts, the scale-out of a control step) cost one allocation; the rates are those of
the final set of transfers, as an allocation after every change would have left them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numba import njit

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
    _rate: float = field(default=0.0, repr=False)
    _eta: float = field(default=math.inf, repr=False)
    _net: LinkNetwork | None = field(default=None, repr=False)

    @property
    def rate(self) -> float:
        """Current rate (GB/s): the max-min fair share given the transfers now active."""
        net = self._net
        if net is not None and net._stale:
            net._reallocate()
        return self._rate


class LinkNetwork:
    """Links with capacities and the active transfers over them."""

    def __init__(self, capacities_gb_per_s: list[float], names: list[str]) -> None:
        self.capacity = list(capacities_gb_per_s)
        self.names = list(names)
        self.transfers: dict[int, Transfer] = {}
        self.now = 0.0
        self._next_id = 0
        self.gb_moved = [0.0] * len(self.capacity)
        self._capacity = np.array(self.capacity, dtype=np.float64)
        self._stale = False  # rates (and finish times) wait for a reallocation
        self._next_eta = math.inf  # the earliest finish time, as of the last reallocation

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
            if self._stale:
                self._reallocate()
            for tr in self.transfers.values():
                moved = min(tr._rate * dt, tr.remaining_gb)
                tr.remaining_gb -= moved
                for link in tr.links:
                    self.gb_moved[link] += moved
        self.now = t

    def next_completion(self) -> float:
        """Absolute time at which the next transfer finishes (``inf`` if none)."""
        if self._stale:
            self._reallocate()
        return self._next_eta

    def pop_finished(self, t: float) -> list[Transfer]:
        """Advance to ``t`` and remove the transfers finished by then (in start order)."""
        self.advance(t)
        if self._stale:
            self._reallocate()
        done = [tr for tr in self.transfers.values() if tr._eta <= t or tr.remaining_gb <= _EPS_GB]
        if done:
            for tr in done:
                for link in tr.links:
                    self.gb_moved[link] += max(tr.remaining_gb, 0.0)
                tr.remaining_gb = 0.0
                del self.transfers[tr.tid]
            self._stale = True
        return done

    # -- membership --------------------------------------------------------------------------
    def start(
        self, t: float, links, size_gb: float, cap: float = math.inf, payload=None
    ) -> Transfer:
        self.advance(t)
        tr = Transfer(self._next_id, tuple(links), float(size_gb), cap, payload, _net=self)
        self._next_id += 1
        self.transfers[tr.tid] = tr
        self._stale = True
        return tr

    def cancel(self, t: float, tid: int) -> None:
        self.advance(t)
        if self.transfers.pop(tid, None) is not None:
            self._stale = True

    # -- max-min fair allocation (progressive filling) ---------------------------------------
    def _reallocate(self) -> None:
        self._stale = False
        active = list(self.transfers.values())
        if not active:
            self._next_eta = math.inf
            return
        if len(active) == 1:  # (the common case: max_min_rates' one round, without arrays)
            tr = active[0]
            self._next_eta = self._set_rate(tr, _alone_rate(tr.links, tr.cap_gb_per_s,
                                                             self.capacity))  # fmt: skip
            return
        flat: list[int] = []  # every transfer's links, back to back (a link crossed k times: k)
        ends = [0] * (len(active) + 1)
        for i, tr in enumerate(active):
            flat.extend(tr.links)
            ends[i + 1] = len(flat)
        if len(self._capacity) != len(self.capacity):
            self._capacity = np.array(self.capacity, dtype=np.float64)
        rates = max_min_rates(
            np.array(flat, dtype=np.int64),
            np.array(ends, dtype=np.int64),
            np.array([tr.cap_gb_per_s for tr in active], dtype=np.float64),
            self._capacity,
        ).tolist()
        best = math.inf
        for tr, r in zip(active, rates, strict=True):
            eta = self._set_rate(tr, r)
            if eta < best:
                best = eta
        self._next_eta = best

    def _set_rate(self, tr: Transfer, r: float) -> float:
        """Set ``tr``'s rate and finish time; returns the finish time."""
        tr._rate = r
        if tr.remaining_gb <= _EPS_GB:
            tr._eta = self.now  # (done, whatever its rate: pop_finished takes it now)
        else:
            tr._eta = self.now + tr.remaining_gb / r if r > 0 else math.inf
        return tr._eta


def _alone_rate(links: tuple, cap: float, capacity: list) -> float:
    """:func:`max_min_rates` of a transfer alone on its links: the smallest of its cap and
    each link's capacity over the times it crosses the link (the same divisions, so the same
    float)."""
    level = math.inf
    if len(set(links)) == len(links):
        for k in links:
            if capacity[k] < level:
                level = float(capacity[k])
    else:
        for k in set(links):
            x = capacity[k] / links.count(k)
            if x < level:
                level = x
    return float(cap) if cap < level else level


@njit(cache=True, nogil=True)
def max_min_rates(flat, ends, caps, capacity):
    """Max-min fair rates (progressive filling) of transfers ``i`` crossing links
    ``flat[ends[i]:ends[i + 1]]`` (a link listed k times is crossed k times, as a relay that
    sends over one NIC to several children), each capped at ``caps[i]``, over links of
    ``capacity``. Each round fixes, at the smallest fair share a link can still give (or a cap),
    every transfer capped there and every user of a link whose share is that level."""
    n = caps.shape[0]
    rate = np.full(n, -1.0)
    residual = capacity.copy()
    unfixed = np.zeros(capacity.shape[0], dtype=np.int64)
    for j in range(flat.shape[0]):
        unfixed[flat[j]] += 1
    bottleneck = np.zeros(capacity.shape[0], dtype=np.bool_)
    left = n
    while left > 0:
        level = np.inf
        for k in range(capacity.shape[0]):
            if unfixed[k] > 0 and residual[k] / unfixed[k] < level:
                level = residual[k] / unfixed[k]
        for i in range(n):
            if rate[i] < 0.0 and caps[i] < level:
                level = caps[i]
        for k in range(capacity.shape[0]):
            bottleneck[k] = unfixed[k] > 0 and residual[k] / unfixed[k] <= level * (1 + 1e-12)
        fix = np.zeros(n, dtype=np.bool_)
        for i in range(n):
            if rate[i] < 0.0:
                if caps[i] <= level:
                    fix[i] = True
                else:
                    for j in range(ends[i], ends[i + 1]):
                        if bottleneck[flat[j]]:
                            fix[i] = True
                            break
        for i in range(n):
            if fix[i]:
                rate[i] = level
                left -= 1
                for j in range(ends[i], ends[i + 1]):
                    residual[flat[j]] -= level
                    unfixed[flat[j]] -= 1
    return rate
