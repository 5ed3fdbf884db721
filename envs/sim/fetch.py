"""How a load's weights move: one transfer from one source (unicast), disjoint shards from
several holders at once (striping), or one relayed transfer shared by every load of the model
that starts from the same source at the same instant (multicast).

A new loading technique goes here: its links in :meth:`FetchMixin._start_fetch` and its
uncontended rate in :func:`envs.sim.sourcing.fetch_bw` (which the pipelined stage plan, the
estimates and the env's observation share). The techniques are features (``FeatureSpec.multicast``,
``striping``), off by default; documented there.

Mixed into :class:`envs.sim.simulator.Simulator`: the methods use its links (``link_tx``,
``link_rx``, ...), caches and network.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import sourcing
from .engine import Priority

SHAREABLE = ("remote_mem", "cloud")  # tiers one send can serve many receivers from
_EPS_GB = 1e-12


@dataclass(eq=False, slots=True)
class Fetch:
    """The plan of one load's fetch stage.

    Attributes:
        tier: Source tier (:data:`envs.sim.config.TIERS`).
        model: Model index.
        host: Receiving host.
        senders: Hosts whose memory sends (remote memory; several when striped), else ``()``.
        src_links: One link per shard at the source: each sender's NIC tx, the store's egress,
            the local disk; ``()`` from local memory.
        recv_links: ``(rx,)`` of the receiving host's NIC when the bytes cross the network.
        own_links: ``(pcie,)`` when the fetch streams straight into the GPU (pipelined).
        size_gb: Weights.
        own_cap: This load's own rate cap (deserialisation when pipelined, else inf).
        net_cap: The source's rate cap (the store's streams from cloud storage, else inf).
        shares: Fraction of the weights each shard carries (``(1.0,)`` unless striped).
    """

    tier: str
    model: int
    host: int
    senders: tuple
    src_links: tuple
    recv_links: tuple
    own_links: tuple
    size_gb: float
    own_cap: float
    net_cap: float
    shares: tuple = (1.0,)

    @property
    def moves(self) -> bool:
        """Whether any link carries bytes (not: sequential load from local memory)."""
        return bool(self.src_links or self.recv_links or self.own_links)

    @property
    def cap(self) -> float:
        """Rate cap of the whole load when its bytes move in one go (unicast, striped)."""
        return min(self.net_cap, self.own_cap)


@dataclass(eq=False)
class FetchGroup:
    """One multicast: the loads (``members``, with their plans) fed by one send, relayed from
    host to host (``nodes``, in join order) down a chain or tree."""

    key: tuple
    first: Fetch
    start_s: float
    members: list = field(default_factory=list)  # (load, Fetch)
    remaining: list = field(default_factory=list)  # bytes left per shard
    tids: tuple = ()  # (shard, transfer id) in flight
    token: int = 0
    waiting: int = 0


def water_fill(total: float, caps: list[float]) -> list[float]:
    """Max-min fair shares of ``total`` among flows capped at ``caps`` (what the links give
    shards that share the receiving side, each bounded by its sender)."""
    rates = [0.0] * len(caps)
    left, n = total, len(caps)
    for i in sorted(range(len(caps)), key=lambda i: caps[i]):
        rates[i] = min(caps[i], left / n)
        left -= rates[i]
        n -= 1
    return rates


def tree(n_nodes: int, fanout: int) -> tuple[list[int], list[int]]:
    """Parents and depths of ``n_nodes`` receivers filled breadth-first under the source, each
    sender feeding ``fanout`` children (parent -1: the source; depth 0: fed by the source)."""
    parent, depth = [], []
    for i in range(n_nodes):
        p = -1 if i < fanout else (i - fanout) // fanout
        parent.append(p)
        depth.append(0 if p < 0 else depth[p] + 1)
    return parent, depth


class FetchMixin:
    """Planning and running fetch stages (see the module docstring)."""

    def _plan_fetch(self, obj, m: int, h: int, source: str, own: tuple, cap: float) -> Fetch:
        """Plan ``obj``'s fetch of ``m`` to host ``h`` from ``source`` and lock what it reads.
        ``own``: links of this load only (its PCIe link when pipelined); ``cap``: its own rate
        cap (deserialisation when pipelined, else inf)."""
        net_cap = math.inf
        size = self.sizes[m]
        senders: tuple = ()
        if source == "local_mem":
            self._lock(obj, self.mem[h], m)
            src, recv = (), ()
        elif source == "remote_mem":
            if self._stripes == 1:
                senders = (self._remote_holder(m, h),)
            else:
                out = np.empty(len(self.mem), dtype=np.int64)
                n = sourcing.remote_holders(
                    m, h, self.mem_state, self._out_transfers, self._stripes, out
                )
                senders = tuple(out[:n].tolist())
            for r in senders:
                self._lock(obj, self.mem[r], m, host=r)
            src, recv = tuple(self.link_tx[r] for r in senders), (self.link_rx[h],)
            if len(senders) > 1:
                # Shards sized to what each holder can give this receiver alone, so that they
                # land together: the receiving side (its NIC, and the PCIe link and the cap
                # when pipelined) shared max-min fair, each shard bounded by its sender's NIC.
                c = self.net.capacity
                bound = min([c[k] for k in recv + own] + [cap])
                rates = water_fill(bound, [c[k] for k in src])
                total = sum(rates)
                return Fetch(source, m, h, senders, src, recv, own, size, cap, net_cap,
                             tuple(r / total for r in rates))  # fmt: skip
        elif source == "disk":
            self._lock(obj, self.disk[h], m)
            src, recv = (self.link_disk[h],), ()
        else:
            src, recv = (self.link_egress,), (self.link_rx[h],)
            net_cap = self.cfg.cloud.per_transfer_gb_per_s
        return Fetch(source, m, h, senders, src, recv, own, size, cap, net_cap)

    def _start_fetch(self, obj, f: Fetch, t: float) -> None:
        """Start ``obj``'s fetch stage; :meth:`_advance_stage` hears when it is done."""
        if self._multicast and f.recv_links and f.tier in SHAREABLE:
            self._join_multicast(obj, f, t)
            return
        k = len(f.src_links)
        if k <= 1:  # unicast
            tr = self.net.start(
                t, f.src_links + f.recv_links + f.own_links, f.size_gb, f.cap, payload=(obj, obj.token)
            )  # fmt: skip
            obj.tids = (tr.tid,)
            obj.waiting = 1
            return
        # Striped: one shard per sender, all at once; the stage ends with the last.
        tids = []
        for link, w in zip(f.src_links, f.shares, strict=True):
            links = (link,) + f.recv_links + f.own_links
            tr = self.net.start(t, links, f.size_gb * w, f.cap * w, payload=(obj, obj.token))
            tids.append(tr.tid)
        obj.tids = tuple(tids)
        obj.waiting = k

    # ---------------------------------------------------------------------- multicast ----
    def _join_multicast(self, obj, f: Fetch, t: float) -> None:
        """Join the multicast of ``f``'s model and source that starts now, or start one. The
        relay moves the bytes between hosts; a pipelined load's own stream into its GPU (PCIe,
        deserialisation) runs beside it, so a receiver's fetch ends when both have."""
        key = (f.model, f.tier, tuple(sorted(f.senders)))
        g = self._forming.get(key)
        if g is None or g.start_s != t or not g.members:
            g = FetchGroup(key, f, t, remaining=[f.size_gb * w for w in f.shares])
            self._forming[key] = g
        g.members.append((obj, f))
        obj.group = g
        obj.waiting = 1  # the relay's delivery
        if f.own_links:
            tr = self.net.start(t, f.own_links, f.size_gb, f.own_cap, payload=(obj, obj.token))
            obj.tids = (tr.tid,)
            obj.waiting = 2
        self._restart_group(g, t)

    def _restart_group(self, g: FetchGroup, t: float) -> None:
        """(Re)start the group's shards over its current tree, each with the bytes it has left."""
        net = self.net
        if g.tids:
            net.advance(t)
            for i, tid in g.tids:
                tr = net.transfers.get(tid)
                g.remaining[i] = tr.remaining_gb if tr is not None else 0.0
                if tr is not None:
                    net.cancel(t, tid)
        nodes = _nodes(g)
        fan = self.cfg.features.multicast_fanout
        parent, _ = tree(len(nodes), fan)
        relay: tuple = ()
        for i, h in enumerate(nodes):
            relay += (self.link_rx[h],) + (self.link_tx[h],) * parent.count(i)
        first = g.first
        tids = []
        for i, w in enumerate(first.shares):
            if g.remaining[i] <= _EPS_GB:
                continue
            src = (first.src_links[i],) * min(fan, len(nodes))
            cap = first.net_cap * w
            tr = net.start(t, src + relay, g.remaining[i], cap, payload=(g, g.token))
            tids.append((i, tr.tid))
        g.tids = tuple(tids)
        g.waiting = len(tids)

    def _group_done(self, g: FetchGroup, t: float) -> None:
        """Every shard has moved: the relay delivers to each member ``depth`` hops (one
        pipeline chunk at the relay's mean rate each) after the first receivers."""
        if self._forming.get(g.key) is g:
            del self._forming[g.key]
        nodes = _nodes(g)
        _, depth = tree(len(nodes), self.cfg.features.multicast_fanout)
        hop = (t - g.start_s) / self.cfg.startup.pipeline_chunks
        members, g.members, g.tids = g.members, [], ()
        for i, (obj, f) in enumerate(members):
            obj.group = None
            obj.relayed = i > 0  # the source sent once, for the first member
            d = depth[nodes.index(f.host)]
            if d == 0:
                self._advance_stage((obj, obj.token), t)
            else:
                self.events.push(t + d * hop, Priority.STAGE_DONE, (obj, obj.token))

    def _leave_group(self, obj, t: float) -> None:
        """A member stops loading (torn down): the others go on over a tree without it."""
        g = obj.group
        obj.group = None
        g.members = [(o, f) for o, f in g.members if o is not obj]
        if g.members:
            self._restart_group(g, t)
            return
        for _, tid in g.tids:
            self.net.cancel(t, tid)
        g.tids = ()
        if self._forming.get(g.key) is g:
            del self._forming[g.key]


def _nodes(g: FetchGroup) -> list[int]:
    """The group's receiving hosts in join order (loads on one host share its node)."""
    nodes: list[int] = []
    for _, f in g.members:
        if f.host not in nodes:
            nodes.append(f.host)
    return nodes
