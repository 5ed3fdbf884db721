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

The active transfers' state lives in arrays, one slot per transfer in start order (compiled
kernels move the bytes, allocate the rates and find what finished, in one call each); a
:class:`Transfer` is a handle onto its slot while it is active and keeps its last values after.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .fastcall import BoundKernels, bind

_EPS_GB = 1e-12


class Transfer:
    """Bytes moving across a set of links.

    Attributes:
        tid: Identifier, unique within its network.
        links: Indices of the links crossed.
        remaining_gb: Bytes still to move (as of the network's ``now``).
        cap_gb_per_s: Per-transfer rate cap (e.g. the object store's streams), ``inf`` if none.
        payload: What to notify on completion.
        rate: Current rate (GB/s): the max-min fair share given the transfers now active.
    """

    __slots__ = ("tid", "links", "cap_gb_per_s", "payload", "_net", "_slot", "_rem", "_rate")

    def __init__(self, tid, links, remaining_gb, cap_gb_per_s, payload=None, net=None, slot=-1):
        self.tid = tid
        self.links = links
        self.cap_gb_per_s = cap_gb_per_s
        self.payload = payload
        self._net = net
        self._slot = slot  # -1 once it has ended (finished or cancelled)
        self._rem = remaining_gb  # (while active: the network's arrays hold the values)
        self._rate = 0.0

    @property
    def remaining_gb(self) -> float:
        if self._slot < 0:
            return self._rem
        return float(self._net._rem[self._slot])

    @property
    def rate(self) -> float:
        if self._slot < 0:
            return self._rate
        net = self._net
        if net._stale:
            net._reallocate()
        return float(net._rate[self._slot])

    def __repr__(self) -> str:
        return (
            f"Transfer(tid={self.tid}, links={self.links}, remaining_gb={self.remaining_gb}, "
            f"cap_gb_per_s={self.cap_gb_per_s}, payload={self.payload!r})"
        )


class LinkNetwork(BoundKernels):
    """Links with capacities and the active transfers over them."""

    def __init__(self, capacities_gb_per_s: list[float], names: list[str]) -> None:
        self.capacity = list(capacities_gb_per_s)
        self.names = list(names)
        self.transfers: dict[int, Transfer] = {}
        self.now = 0.0
        self._next_id = 0
        self.gb_moved = np.zeros(len(self.capacity))  # GB each link has carried
        self._capacity = np.array(self.capacity, dtype=np.float64)
        self._stale = False  # rates (and finish times) wait for a reallocation
        self._next_eta = math.inf  # the earliest finish time, as of the last reallocation
        # Slots [0, _hi) in start order; _on marks the active ones.
        n, w = 64, 4  # (the kernels skip free slots at little cost: compact seldom)
        self._links = np.full((n, w), -1, dtype=np.int64)  # links crossed, -1 padded
        self._n_links = np.zeros(n, dtype=np.int64)
        self._cap = np.zeros(n)
        self._rem = np.zeros(n)
        self._rate = np.zeros(n)
        self._eta = np.full(n, np.inf)
        self._on = np.zeros(n, dtype=np.bool_)
        self._obj: list[Transfer | None] = [None] * n
        self._hi = 0
        self._done = np.zeros(n, dtype=np.int64)  # pop_finished's output buffer
        self._bind_kernels()

    def _bind_kernels(self) -> None:
        """The kernels below, called without numba's dispatch (:mod:`.fastcall`; the slot
        arrays keep their types when they grow)."""
        a = (0, self._on, self._links, self._n_links)
        self._k_move = bind(_move, 0.0, *a, self._rate, self._rem, self.gb_moved)
        self._k_finish = bind(_finish, 0.0, *a, self._eta, self._rem, self.gb_moved, self._done)
        self._k_allocate = bind(_allocate, 0.0, *a, self._cap, self._rem, self._capacity,
                                self._rate, self._eta)  # fmt: skip

    def add_link(self, capacity: float, name: str) -> int:
        self.capacity.append(capacity)
        self.names.append(name)
        self.gb_moved = np.append(self.gb_moved, 0.0)
        self._capacity = np.array(self.capacity, dtype=np.float64)
        return len(self.capacity) - 1

    # -- time --------------------------------------------------------------------------------
    def advance(self, t: float) -> None:
        """Move every transfer's bytes forward to time ``t``."""
        dt = t - self.now
        if dt < 0:
            raise ValueError(f"LinkNetwork time cannot go backwards: {t} < {self.now}")
        if dt > 0 and self.transfers:
            if self._stale:
                self._reallocate()
            self._k_move(dt, self._hi, self._on, self._links, self._n_links, self._rate,
                         self._rem, self.gb_moved)  # fmt: skip
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
        if not self.transfers:
            return []
        n = self._k_finish(t, self._hi, self._on, self._links, self._n_links, self._eta,
                           self._rem, self.gb_moved, self._done)  # fmt: skip
        if not n:
            return []
        done = []
        for slot in self._done[:n].tolist():
            tr = self._obj[slot]
            self._end(tr)
            tr._rem = 0.0
            done.append(tr)
        self._stale = True
        return done

    # -- membership --------------------------------------------------------------------------
    def start(
        self, t: float, links, size_gb: float, cap: float = math.inf, payload=None
    ) -> Transfer:
        self.advance(t)
        links = tuple(links)
        if self._hi == len(self._obj):
            self._make_room()
        if len(links) > self._links.shape[1]:
            wide = np.full((len(self._obj), len(links)), -1, dtype=np.int64)
            wide[:, : self._links.shape[1]] = self._links
            self._links = wide
        slot = self._hi
        self._hi += 1
        tr = Transfer(self._next_id, links, float(size_gb), cap, payload, self, slot)
        self._next_id += 1
        self.transfers[tr.tid] = tr
        self._obj[slot] = tr
        self._links[slot, : len(links)] = links
        self._n_links[slot] = len(links)
        self._cap[slot] = cap
        self._rem[slot] = size_gb
        self._on[slot] = True
        self._stale = True
        return tr

    def cancel(self, t: float, tid: int) -> None:
        self.advance(t)
        tr = self.transfers.get(tid)
        if tr is not None:
            tr._rem = float(self._rem[tr._slot])
            self._end(tr)
            self._stale = True

    def _end(self, tr: Transfer) -> None:
        """Free ``tr``'s slot (it keeps its last rate; the caller sets its remaining bytes)."""
        slot = tr._slot
        tr._rate = float(self._rate[slot])
        self._on[slot] = False  # (slots are not reused before _make_room compacts them)
        self._obj[slot] = None
        tr._slot = -1
        del self.transfers[tr.tid]

    def _make_room(self) -> None:
        """The slots are used up: move the active ones to the front (in order), and double the
        arrays if more than half of them are active."""
        keep = np.flatnonzero(self._on[: self._hi])
        k, n = len(keep), len(self._obj)
        size = 2 * n if 2 * k > n else n
        for name in ("_links", "_n_links", "_cap", "_rem", "_rate", "_eta", "_on"):
            old = getattr(self, name)
            new = np.full((size,) + old.shape[1:], -1 if name == "_links" else 0, old.dtype)
            if name == "_eta":
                new[:] = np.inf
            new[:k] = old[keep]
            setattr(self, name, new)
        objs = [self._obj[i] for i in keep.tolist()]
        for i, tr in enumerate(objs):
            tr._slot = i
        self._obj = objs + [None] * (size - k)
        self._hi = k
        self._done = np.zeros(size, dtype=np.int64)

    # -- max-min fair allocation (progressive filling) ---------------------------------------
    def _reallocate(self) -> None:
        self._stale = False
        if not self.transfers:
            self._next_eta = math.inf
            return
        if len(self._capacity) != len(self.capacity):
            self._capacity = np.array(self.capacity, dtype=np.float64)
        self._next_eta = self._k_allocate(
            self.now, self._hi, self._on, self._links, self._n_links, self._cap, self._rem,
            self._capacity, self._rate, self._eta,
        )  # fmt: skip


@njit(cache=True, nogil=True)
def _move(dt, hi, on, links, n_links, rate, rem, gb_moved):
    """:meth:`LinkNetwork.advance` by ``dt`` > 0: each active slot moves ``rate * dt`` of its
    bytes (at most what is left), counted on every link it crosses (in start order)."""
    for s in range(hi):
        if on[s]:
            moved = min(rate[s] * dt, rem[s])
            rem[s] -= moved
            for j in range(n_links[s]):
                gb_moved[links[s, j]] += moved


@njit(cache=True, nogil=True)
def _finish(t, hi, on, links, n_links, eta, rem, gb_moved, out):
    """The active slots finished by ``t`` (due, or no bytes left), in start order, into
    ``out``; their last bytes counted on their links. Returns how many."""
    n = 0
    for s in range(hi):
        if on[s] and (eta[s] <= t or rem[s] <= _EPS_GB):
            left = max(rem[s], 0.0)
            for j in range(n_links[s]):
                gb_moved[links[s, j]] += left
            rem[s] = 0.0
            out[n] = s
            n += 1
    return n


@njit(cache=True, nogil=True)
def _allocate(now, hi, on, links, n_links, caps, rem, capacity, rate, eta):
    """Rates (:func:`max_min_rates`) and finish times of the active slots; returns the earliest
    finish time."""
    n = 0
    total = 0
    for s in range(hi):
        if on[s]:
            n += 1
            total += n_links[s]
    slots = np.empty(n, dtype=np.int64)
    flat = np.empty(total, dtype=np.int64)
    ends = np.zeros(n + 1, dtype=np.int64)
    cap = np.empty(n)
    i = 0
    for s in range(hi):
        if on[s]:
            slots[i] = s
            cap[i] = caps[s]
            e = ends[i]
            for j in range(n_links[s]):
                flat[e + j] = links[s, j]
            ends[i + 1] = e + n_links[s]
            i += 1
    r = max_min_rates(flat, ends, cap, capacity)
    best = np.inf
    for i in range(n):
        s = slots[i]
        rate[s] = r[i]
        if rem[s] <= _EPS_GB:
            eta[s] = now  # (done, whatever its rate: pop_finished takes it now)
        elif r[i] > 0:
            eta[s] = now + rem[s] / r[i]
        else:
            eta[s] = np.inf
        if eta[s] < best:
            best = eta[s]
    return best


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
