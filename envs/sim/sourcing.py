"""Where a cold start loads from and how long it takes: the sourcing rules and the load-time
estimate, written once and compiled.

The simulator's control path (``Simulator.default_source``, ``choose_host("locality")``,
``estimate_load_s``, ``best_load_s``, the pipelined stage plan of a cold start) and the env's
observation call these same functions, so the rule a policy sees in its features is the rule
the platform applies (numba: the env asks them every step).

Tiers are indices into :data:`envs.sim.config.TIERS`. The state they read is the simulator's
array mirror of the caches: ``mem`` and ``disk`` are ``int64[H, 3, M]`` (rows present, pinned,
readers: :class:`envs.sim.cache.ModelCache`).

Hierarchical sourcing (San Juan & Wong 2023): the target host's memory, then another host's
memory through the remote pool (the holder serving the fewest remote reads), then the local
disk, then cloud storage. ``cloud_only`` (``features.sourcing: cloud``) always answers cloud.

Load-time parameters travel as three arrays (:meth:`Simulator.load_params` builds them):
``hp`` float64[H, 4] per host (NIC, PCIe, disk bandwidth, cloud download rate), ``mp``
float64[M, 2] per model (size, deserialisation rate) and ``sp`` float64[4] (sandbox + runtime
initialisation s, cloud time to first byte s, pipelined 0/1, pipeline chunks). ``stripes`` is
how many holders a remote load reads from at once (1 = one holder; ``features.striping``).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .cache import PRESENT
from .config import TIERS, SimError

LOCAL_MEM, REMOTE_MEM, DISK, CLOUD = range(4)
TIER_INDEX = {t: i for i, t in enumerate(TIERS)}
assert [TIER_INDEX[t] for t in ("local_mem", "remote_mem", "disk", "cloud")] == [0, 1, 2, 3]
NIC, PCIE, DISK_BW, CLOUD_BW = range(4)  # columns of hp


_NONE = np.zeros(0, dtype=np.int64)


@njit(cache=True, nogil=True)
def _next_holder(m, h, mem, out_transfers, taken, n):
    """The remote-holder rule: another host holding ``m`` in memory (not in ``taken[:n]``),
    the one serving the fewest remote reads (ties: the lowest index); -1 if none."""
    best = -1
    for r in range(mem.shape[0]):
        if r == h or mem[r, 0, m] != 1:
            continue
        seen = False
        for i in range(n):
            if taken[i] == r:
                seen = True
        if not seen and (best < 0 or out_transfers[r] < out_transfers[best]):
            best = r
    return best


@njit(cache=True, nogil=True)
def remote_holder(m, h, mem, out_transfers):
    """Another host holding ``m`` in memory, the one serving the fewest remote reads (ties:
    the lowest index); -1 if none."""
    return _next_holder(m, h, mem, out_transfers, _NONE, 0)


@njit(cache=True, nogil=True)
def remote_holders(m, h, mem, out_transfers, k, out):
    """Up to ``k`` other hosts holding ``m`` in memory, in :func:`remote_holder`'s order,
    written to ``out[:n]``; returns ``n``."""
    n = 0
    while n < k:
        r = _next_holder(m, h, mem, out_transfers, out, n)
        if r < 0:
            break
        out[n] = r
        n += 1
    return n


@njit(cache=True, nogil=True)
def nearest_tier(m, h, mem, disk, has_disk, host_cache, remote_pool, cloud_only):
    """The tier a cold start of ``m`` on host ``h`` loads from under the sourcing rule."""
    if cloud_only or not host_cache:
        return CLOUD
    if mem[h, 0, m] == 1:
        return LOCAL_MEM
    if remote_pool:
        for r in range(mem.shape[0]):
            if r != h and mem[r, 0, m] == 1:
                return REMOTE_MEM
    if has_disk[h] and disk[h, 0, m] == 1:
        return DISK
    return CLOUD


@njit(cache=True, nogil=True)
def locality_host(m, free, fits, mem, disk, has_disk, host_cache, remote_pool, cloud_only):
    """Locality-aware placement: among hosts with a free GPU that fits ``m``, the one whose
    nearest copy is the best tier, then the most free GPUs, then the lowest index; -1 if none."""
    best = -1
    best_tier = 99
    for h in range(free.shape[0]):
        if free[h] > 0 and fits[h]:
            t = nearest_tier(m, h, mem, disk, has_disk, host_cache, remote_pool, cloud_only)
            if best < 0 or t < best_tier or (t == best_tier and free[h] > free[best]):
                best, best_tier = h, t
    return best


# ------------------------------------------------------------------ load-time estimate ----
@njit(cache=True, nogil=True)
def pipeline_fill_s(t_fetch, t_copy, t_deser, chunks):
    """What a pipelined load adds to its slowest weight stage: the other stages' time for one
    of ``chunks`` chunks (``StartupSpec.pipelined``)."""
    hi = max(t_fetch, t_copy, t_deser)
    return (t_fetch + t_copy + t_deser - hi) / chunks


@njit(cache=True, nogil=True)
def load_time_s(size, fetch_bw, pcie_bw, deser_bw, fixed_s, pipelined, chunks):
    """Uncontended cold start: fixed stages, then fetch, host-to-GPU copy and deserialisation,
    one after another or pipelined in chunks; inf when the fetch cannot move (``fetch_bw`` 0)."""
    if fetch_bw <= 0:
        return math.inf
    t_fetch = size / fetch_bw
    t_copy = size / pcie_bw
    t_deser = size / deser_bw
    if pipelined:
        hi = max(t_fetch, t_copy, t_deser)
        return fixed_s + hi + pipeline_fill_s(t_fetch, t_copy, t_deser, chunks)
    return fixed_s + (t_fetch + t_copy + t_deser)


@njit(cache=True, nogil=True)
def fetch_bw(m, h, tier, mem, out_transfers, hp, stripes):
    """Uncontended rate at which ``m``'s weights reach host ``h`` from ``tier``. A remote load
    reads from :func:`remote_holders` (one, or up to ``stripes`` at once in shards sized to
    each sender's rate: the senders' NICs add up, the receiving NIC caps the sum)."""
    if tier == LOCAL_MEM:
        return math.inf
    if tier == DISK:
        return hp[h, DISK_BW]
    if tier == CLOUD:
        return hp[h, CLOUD_BW]
    nic = hp[h, NIC]
    if stripes <= 1:
        r = remote_holder(m, h, mem, out_transfers)
        return min(nic, hp[r, NIC]) if r >= 0 else nic
    senders = np.empty(mem.shape[0], dtype=np.int64)
    n = remote_holders(m, h, mem, out_transfers, stripes, senders)
    sent = 0.0
    for i in range(n):
        sent += hp[senders[i], NIC]
    return min(nic, sent) if n else nic


@njit(cache=True, nogil=True)
def tier_load_s(m, h, tier, mem, out_transfers, hp, mp, sp, stripes):
    """Uncontended cold-start time of ``m`` on ``h`` from ``tier`` (:func:`load_time_s`)."""
    fixed = sp[0] + (sp[1] if tier == CLOUD else 0.0)
    bw = fetch_bw(m, h, tier, mem, out_transfers, hp, stripes)
    return load_time_s(mp[m, 0], bw, hp[h, PCIE], mp[m, 1], fixed, sp[2] != 0.0, sp[3])


@njit(cache=True, nogil=True)
def best_load(m, free, fits, mem, disk, has_disk, host_cache, remote_pool, cloud_only,
              out_transfers, hp, mp, sp, stripes):  # fmt: skip
    """Uncontended cold-start time of ``m`` where locality placement would put it now (from the
    tier the sourcing rule picks there); with no free GPU that fits, the best over every host
    that fits; inf if none fits."""
    h = locality_host(m, free, fits, mem, disk, has_disk, host_cache, remote_pool, cloud_only)
    if h >= 0:
        t = nearest_tier(m, h, mem, disk, has_disk, host_cache, remote_pool, cloud_only)
        return tier_load_s(m, h, t, mem, out_transfers, hp, mp, sp, stripes)
    best = math.inf
    for h in range(free.shape[0]):
        if fits[h]:
            t = nearest_tier(m, h, mem, disk, has_disk, host_cache, remote_pool, cloud_only)
            best = min(best, tier_load_s(m, h, t, mem, out_transfers, hp, mp, sp, stripes))
    return best


class SourcingMixin:
    """The simulator's side of sourcing: which tiers hold a copy, the rule's choice, and the
    load-time estimates (mixed into :class:`envs.sim.simulator.Simulator`)."""

    def _init_sourcing(self) -> None:
        cfg = self.cfg
        c, st, f = cfg.cloud, cfg.startup, cfg.features
        cloud_bw = [
            min(c.per_transfer_gb_per_s, hs.nic_gb_per_s, c.egress_gb_per_s) for hs in cfg.hosts
        ]
        self._hp = np.array(
            [[hs.nic_gb_per_s, hs.pcie_gb_per_s, hs.disk_gb_per_s, cloud_bw[h]]
             for h, hs in enumerate(cfg.hosts)], dtype=np.float64,
        )  # fmt: skip
        self._mp = np.array(
            [[m.size_gb, m.deserialize_gb_per_s] for m in cfg.models], dtype=np.float64
        )
        self._sp = np.array(
            [st.sandbox_s + st.runtime_init_s, c.ttfb_s, float(st.pipelined), st.pipeline_chunks],
            dtype=np.float64,
        )
        self._stripes = (f.stripe_holders or len(cfg.hosts)) if f.striping else 1
        self._multicast = f.multicast
        self._est_cache: dict = {}
        # The sourcing rule's inputs (the arrays change in place, the flags never): one tuple.
        self._rule_tuple = (
            self.mem_state, self.disk_state, self.has_disk, f.host_cache, f.remote_pool,
            f.sourcing == "cloud",
        )  # fmt: skip

    def available_sources(self, m: int, h: int) -> list[str]:
        """Tiers that hold a usable copy of model ``m`` for host ``h``, nearest first."""
        f = self.cfg.features
        if not f.host_cache:
            return ["cloud"]
        out = []
        held = self.mem_state[:, PRESENT, m].tolist()  # hosts holding a memory copy (mirror)
        local = held[h] == 1
        if local:
            out.append("local_mem")
        if f.remote_pool and sum(held) > local:  # another host holds one
            out.append("remote_mem")
        if self.link_disk[h] >= 0 and self.disk_state[h, PRESENT, m]:
            out.append("disk")
        out.append("cloud")
        return out

    def _rule_args(self) -> tuple:
        """``(mem, disk, has_disk, host_cache, remote_pool, cloud_only)`` of the rule kernels."""
        return self._rule_tuple

    def default_source(self, m: int, h: int) -> str:
        """The configured sourcing rule's choice for loading ``m`` onto host ``h``
        (:func:`nearest_tier`)."""
        return TIERS[nearest_tier(m, h, *self._rule_tuple)]

    def _remote_holder(self, m: int, h: int) -> int:
        return remote_holder(m, h, self.mem_state, self._out_transfers)

    def _check_source(self, m: int, h: int, source: str | None) -> str:
        if source is None:
            return self.default_source(m, h)
        if source == "cloud":
            return source  # (cloud storage holds every model: always available)
        if source not in TIERS:
            raise SimError(f"unknown source tier {source!r}; valid tiers: {TIERS}")
        if source not in self.available_sources(m, h):
            raise SimError(
                f"tier {source!r} holds no usable copy of model {self.cfg.models[m].name!r} for "
                f"host {h}; available: {self.available_sources(m, h)}"
            )
        return source

    def estimate_load_s(self, m: int, h: int, source: str | None = None) -> float:
        """Uncontended cold-start time of ``m`` on host ``h`` from ``source`` (default rule)."""
        source = source or self.default_source(m, h)
        bw = None  # the tier's rate is a function of the config, except remote memory's
        if source == "remote_mem":
            bw = fetch_bw(
                m, h, REMOTE_MEM, self.mem_state, self._out_transfers, self._hp, self._stripes
            )
        return self._estimate(m, h, source, bw)

    def _estimate(self, m: int, h: int, source: str, bw: float | None) -> float:
        key = (m, h, source, bw)
        est = self._est_cache.get(key)
        if est is None:
            tier = TIER_INDEX[source]
            if bw is None:
                bw = fetch_bw(m, h, tier, self.mem_state, self._out_transfers, self._hp, 1)
            sp, mp = self._sp, self._mp
            fixed = sp[0] + (sp[1] if tier == CLOUD else 0.0)
            est = float(load_time_s(mp[m, 0], bw, self._hp[h, PCIE], mp[m, 1], fixed,
                                    sp[2] != 0.0, sp[3]))  # fmt: skip
            self._est_cache[key] = est  # the config is frozen: same inputs, same estimate
        return est

    def load_time_tables(self) -> dict[str, np.ndarray]:
        """:meth:`estimate_load_s` for every case, as arrays.

        ``local_mem``, ``disk``, ``cloud``: ``[m, h]``; ``remote_mem``: ``[m, h, r]`` with the
        copy sent by host ``r`` alone (unicast), ``r = H`` when no other host holds one."""
        M, H = self.M, len(self.cfg.hosts)
        nic = self._hp[:, NIC].tolist()
        out = {k: np.zeros((M, H)) for k in ("local_mem", "disk", "cloud")}
        out["remote_mem"] = np.zeros((M, H, H + 1))
        for m in range(M):
            for h in range(H):
                for k in ("local_mem", "disk", "cloud"):
                    out[k][m, h] = self._estimate(m, h, k, None)
                for r in range(H):
                    bw = min(nic[h], nic[r])
                    out["remote_mem"][m, h, r] = self._estimate(m, h, "remote_mem", bw)
                out["remote_mem"][m, h, H] = self._estimate(m, h, "remote_mem", nic[h])
        return out

    def best_load_args(self) -> tuple:
        """What :func:`best_load` reads, in its order after ``m``: ``(free, fits, mem, disk,
        has_disk, host_cache, remote_pool, cloud_only, out_transfers, hp, mp, sp, stripes)``,
        with ``fits`` whole (model ``m``'s row is its own) and ``cloud_only`` the sourcing rule's
        (a model's ``cloud`` source rule is or-ed in by the caller). The arrays change in place
        and are never rebound, so compiled callers may keep the tuple for this simulator."""
        mem, disk, has_disk, cache, pool, cloud_only = self._rule_tuple
        return (self.free_per_host, self.fits, mem, disk, has_disk, cache, pool, cloud_only,
                self._out_transfers, self._hp, self._mp, self._sp, self._stripes)  # fmt: skip

    def best_load_s(self, m: int) -> float:
        """Uncontended cold-start time of ``m`` where the ``locality`` rule would put it now,
        from the tier its cold start would load from there (the sourcing rule's nearest copy, or
        cloud storage under the model's ``cloud`` source rule); with no free GPU that fits, the
        best over every host that fits. The env's ``load_time`` feature."""
        free, fits, mem, disk, has_disk, cache, pool, cloud_only, *rest = self.best_load_args()
        cloud_only = cloud_only or self.rule_source[m] == "cloud"
        return best_load(m, free, fits[m], mem, disk, has_disk, cache, pool, cloud_only, *rest)
