"""The discrete-event simulator of a GPU inference cluster with cold starts.

Time advances with :meth:`Simulator.run_until`. Instance life-cycle events (stages of a cold
start, transfers over shared links, keep-alive expiry, drains) are processed one by one from an
event queue; between two such events the serving slots are fixed and the requests of that segment
are served by the compiled kernel (:mod:`envs.sim.kernel`). A policy acts between ``run_until``
calls through the control interface (``scale_up``, ``scale_down``, ``set_target``,
``cache_keep``, ``cache_evict``, ``prefetch``).

The simulator draws no workload randomness: it replays a :class:`~envs.sim.workload.Workload`,
so every policy faces the same requests. The only random stream it owns is the optional jitter
of start-up stages (``StartupSpec.jitter_cv``, 0 by default).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import cache as cache_room
from . import kernel, sourcing
from .cache import PRESENT, ModelCache
from .config import PLACEMENT_RULES, TIERS, SimConfig
from .engine import EventQueue, Priority
from .links import LinkNetwork
from .workload import Workload

LOADING, WARM, DRAINING, DEAD = 0, 1, 2, 3
# load_time_tables() per (frozen, hashable) config: a function of the config alone, needed by
# every episode's simulator.
_TABLES: dict = {}


class SimError(ValueError):
    """A control call the simulator cannot carry out (no free GPU, tier without a copy, ...)."""


@dataclass(eq=False)
class Instance:
    """One model instance on one GPU."""

    iid: int
    model: int
    host: int
    gpu: int
    source: str
    created_s: float
    state: int = LOADING
    ready_s: float = math.inf
    stages: list = field(default_factory=list)
    stage_idx: int = 0
    token: int = 0  # bumps on cancel so stale events are ignored
    transfer_id: int = -1
    locks: list = field(default_factory=list)  # (cache, model) pairs read by this load
    drain_s: float = math.inf


@dataclass(eq=False)
class Prefetch:
    model: int
    host: int
    source: str
    stages: list
    stage_idx: int = 0
    token: int = 0
    transfer_id: int = -1
    locks: list = field(default_factory=list)
    pin: bool = True


class Simulator:
    """A GPU cluster serving one workload.

    Args:
        config: The cluster, catalog and features.
        workload: Arrivals per catalog model; ``workload.n_models`` must equal the catalog size.
        rng: Random stream for start-up jitter only (unused when ``jitter_cv == 0``).
    """

    def __init__(
        self, config: SimConfig, workload: Workload, rng: np.random.Generator | None = None
    ):
        if workload.n_models != len(config.models):
            raise ValueError(
                f"workload has {workload.n_models} models but the catalog has {len(config.models)}"
            )
        self.cfg = config
        self.workload = workload
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.now = 0.0
        self.M = M = len(config.models)
        self.sizes = [m.size_gb for m in config.models]
        # GPUs: global index g, host_of_gpu[g].
        self.host_of_gpu: list[int] = []
        self.gpus_of_host: list[list[int]] = []
        for h, hs in enumerate(config.hosts):
            self.gpus_of_host.append(
                list(range(len(self.host_of_gpu), len(self.host_of_gpu) + hs.n_gpus))
            )
            self.host_of_gpu.extend([h] * hs.n_gpus)
        self.G = G = len(self.host_of_gpu)
        self.gpu_instance: list[Instance | None] = [None] * G
        # Links.
        caps, names = [], []
        self.link_egress = 0
        caps.append(config.cloud.egress_gb_per_s)
        names.append("cloud_egress")
        self.link_tx, self.link_rx, self.link_disk = [], [], []
        for h, hs in enumerate(config.hosts):
            self.link_tx.append(len(caps))
            caps.append(hs.nic_gb_per_s)
            names.append(f"host{h}_nic_tx")
            self.link_rx.append(len(caps))
            caps.append(hs.nic_gb_per_s)
            names.append(f"host{h}_nic_rx")
            self.link_disk.append(len(caps) if hs.has_disk else -1)
            if hs.has_disk:
                caps.append(hs.disk_gb_per_s)
                names.append(f"host{h}_disk")
        self.link_pcie = []
        for g in range(G):
            self.link_pcie.append(len(caps))
            caps.append(config.hosts[self.host_of_gpu[g]].pcie_gb_per_s)
            names.append(f"gpu{g}_pcie")
        self.net = LinkNetwork(caps, names)
        self.events = EventQueue()
        # Caches.
        # Caches, with their state mirrored in cluster-wide arrays (rows of cache.PRESENT,
        # PINNED, READERS per host) that compiled readers take in one piece.
        H = len(config.hosts)
        self.mem_state = np.zeros((H, 3, M), dtype=np.int64)
        self.mem_used = np.zeros(H)
        self.mem_capacity = np.array([hs.cache_gb for hs in config.hosts], dtype=np.float64)
        self.mem = [
            ModelCache(hs.cache_gb, self.sizes, self.mem_state[h], self.mem_used[h : h + 1])
            for h, hs in enumerate(config.hosts)
        ]
        self.disk_state = np.zeros((H, 3, M), dtype=np.int64)
        self.disk = [
            ModelCache(hs.disk_cache_gb if hs.has_disk else 0.0, self.sizes, self.disk_state[h])
            for h, hs in enumerate(config.hosts)
        ]
        self.free_per_host = np.array([hs.n_gpus for hs in config.hosts], dtype=np.int64)
        self.has_disk = np.array([hs.has_disk for hs in config.hosts], dtype=np.bool_)
        self._sizes = np.asarray(self.sizes, dtype=np.float64)
        self.fits = np.array(
            [[hs.gpu_mem_gb >= s for hs in config.hosts] for s in self.sizes], dtype=np.bool_
        )  # [m, h]: model m's weights fit host h's GPUs
        self._mem_gb_s = 0.0
        self._mem_used_total = 0.0  # sum of mem_used, kept for the GB-second integral
        self._mem_t = 0.0
        self._out_transfers = np.zeros(H, dtype=np.int64)  # remote-memory reads served
        # Instances.
        self.instances: list[list[Instance]] = [[] for _ in range(M)]
        self._next_iid = 0
        self.n_serving = np.zeros(M, dtype=np.int64)  # warm instances (not draining)
        self.n_loading = np.zeros(M, dtype=np.int64)  # instances in a cold start
        self.n_draining = 0  # instances finishing their last batch
        self.prefetches: list[Prefetch] = []
        self.prefetch_count = np.zeros((M, H), dtype=np.int64)  # on their way, per (model, host)
        # Kernel state.
        arr = workload.arrivals_s
        self.offsets = np.zeros(M + 1, dtype=np.int64)
        self.offsets[1:] = np.cumsum([a.size for a in arr])
        total = int(self.offsets[-1])
        self.arrivals = np.concatenate(arr) if total else np.zeros(0)
        self.head = self.offsets[:-1].copy()
        self.arrived = self.offsets[:-1].copy()
        self.start_s = np.full(total, np.nan)
        self.finish_s = np.full(total, np.nan)
        self.cold_wait_s = np.zeros(total, dtype=np.float32)
        self.status = np.zeros(total, dtype=np.int8)
        f = config.features
        self.n_cpu = f.cpu_workers if f.cpu_fallback else 0
        S = G + self.n_cpu
        self.slot_free = np.zeros((M, S))
        self.slot_on = np.zeros((M, S), dtype=np.int8)
        self.slot_batch = np.zeros((M, S), dtype=np.int32)
        self.slot_busy = np.zeros((M, S))
        if self.n_cpu:
            self.slot_on[:, G:] = 1
        self.exec1 = np.array([m.gpu_batch1_ms / 1e3 for m in config.models])
        self.exec_item = np.array([m.gpu_per_item_ms / 1e3 for m in config.models])
        self.cpu_exec = np.array([m.cpu_ms / 1e3 for m in config.models])
        self.max_batch = np.array([m.max_batch for m in config.models], dtype=np.int64)
        self.warm_since = np.full(M, np.inf)
        self.served = np.zeros(M, dtype=np.int64)
        self.dropped = np.zeros(M, dtype=np.int64)
        self.slo = np.array([m.slo_s for m in config.models], dtype=np.float64)
        self.late = np.zeros(M, dtype=np.int64)  # dispatched with latency > SLO (kernel)
        self.late_s = np.zeros(M)  # their lateness (latency - SLO), summed
        # Accounting.
        self.gpu_s_closed = 0.0
        self._n_live = 0  # instances holding a GPU, and the sum of their creation times
        self._live_created_s = 0.0
        p = config.prices
        self._usd_per_gpu_s = p.gpu_usd_per_hour / 3600.0
        self._usd_per_gb_s = p.host_mem_usd_per_gb_hour / 3600.0
        self.cold_starts = dict.fromkeys(TIERS, 0)
        self.cold_starts_by_model = np.zeros(M, dtype=np.int64)
        self.gb_by_tier = dict.fromkeys(TIERS, 0.0)
        self.gb_pcie = 0.0
        self.egress_gb = 0.0
        self.prefetches_done = 0
        self._est_cache: dict = {}
        self._tables: tuple | None = None  # load_time_tables(), built on first use
        # Per-model standing rules for the platform's own cold starts (FeatureSpec.autostart):
        # a placement rule, and a source (None: the sourcing rule's nearest copy; "cloud").
        self.rule_placement = [f.default_placement] * M
        self.rule_source: list[str | None] = [None] * M
        self.autostarts = 0  # instances the platform started on demand
        self.open_window()
        # Bumped by every change of placement state: instances (created, warm, draining, gone),
        # memory and disk copies (inserted, evicted, pinned, being read), prefetches. Whatever
        # is a function of that state alone (free GPUs, copies, the best source, the env's
        # action masks) may be cached against it.
        self.version = 0

    def __setstate__(self, state: dict) -> None:
        """Unpickling (or deep-copying) copies numpy views as separate arrays: make each cache's
        state a view into the simulator's cluster-wide arrays again."""
        self.__dict__.update(state)
        for caches, arr in ((self.mem, self.mem_state), (self.disk, self.disk_state)):
            for h, c in enumerate(caches):
                arr[h] = c.state
                c.state = arr[h]
        for h, c in enumerate(self.mem):
            self.mem_used[h] = c.used[0]
            c.used = self.mem_used[h : h + 1]

    # ====================================================================== time =============
    def run_until(self, t_end: float) -> None:
        """Advance simulated time to ``t_end`` (>= now), serving requests and processing events."""
        if not t_end >= self.now:
            raise ValueError(f"run_until({t_end}) is in the past: now = {self.now}")
        ka = self.cfg.features.keep_alive_s
        auto = self.cfg.features.autostart
        while True:
            if auto:
                self._autostart()
            t_ev = min(self.events.peek_time(), self.net.next_completion())
            if ka is not None:
                t_ev = min(t_ev, self._next_expiry(ka))
            if auto:  # the platform acts on the next request of a model with no instance
                t_ev = min(t_ev, kernel.next_cold_arrival(
                    self.arrivals, self.offsets, self.arrived, self.n_serving, self.n_loading
                ))  # fmt: skip
            t_seg = min(t_ev, t_end)
            if t_seg > self.now or (auto and t_seg == self.now):
                # (A request arriving at the current instant for a model with no instance: mark
                # it arrived now, so the activator sees it at the next pass.)
                self._serve(t_seg)
            elif t_seg == self.now and ka is not None:
                self._reap(t_seg)
            if t_ev > t_end:
                break
            for tr in self.net.pop_finished(t_seg):
                self._advance_stage(tr.payload, t_seg)
            while self.events.peek_time() <= t_seg:
                _, _, payload = self.events.pop()
                self._advance_stage(payload, t_seg)
        self.now = t_end

    def _serve(self, t1: float) -> None:
        if kernel.has_work(self.arrivals, self.offsets, self.head, self.arrived, t1):
            kernel.serve_segment(
            t1, self.arrivals, self.offsets, self.head, self.arrived, self.start_s,
            self.finish_s, self.cold_wait_s, self.status, self.slot_free, self.slot_on,
            self.slot_batch, self.slot_busy, self.G, self.exec1, self.exec_item, self.cpu_exec,
            self.max_batch, self.cfg.features.request_timeout_s, self.warm_since, self.served,
            self.dropped, self.slo, self.late, self.late_s,
            )  # fmt: skip
        self.now = t1
        self._reap(t1)

    def _autostart(self) -> None:
        """The platform's activator: a model with queued requests and no warm or loading
        instance gets one now, placed and sourced by its standing rules (:meth:`set_rules`).
        Without a free GPU that fits, nothing starts; the next call (every event) tries again."""
        if not kernel.cold_with_queue(self.n_serving, self.n_loading, self.head, self.arrived):
            return
        if not self.free_per_host.any():
            return  # retried at the next event (a teardown frees a GPU)
        cold = (self.n_serving + self.n_loading == 0) & (self.head < self.arrived)
        for m in np.flatnonzero(cold).tolist():
            h = self.choose_host(m, self.rule_placement[m])
            if h >= 0:
                self.scale_up(m, h, self.rule_source[m])
                self.autostarts += 1

    def set_rules(self, m: int, placement: str | None = None, source: str | None = "keep") -> None:
        """Standing rules of model ``m`` for the platform's own cold starts (autostart).

        Args:
            placement: A placement rule (``PLACEMENT_RULES``); ``None`` leaves it.
            source: ``None`` (the sourcing rule's nearest copy) or ``"cloud"``; ``"keep"``
                leaves it.
        """
        self._check_model(m)
        if placement is not None and placement != self.rule_placement[m]:
            if placement not in PLACEMENT_RULES:
                raise SimError(f"unknown placement rule {placement!r}; valid: {PLACEMENT_RULES}")
            self.rule_placement[m] = placement
            self.version += 1
        if source != "keep" and source != self.rule_source[m]:
            if source not in (None, "cloud"):
                raise SimError(f"source rule must be None (nearest) or 'cloud', got {source!r}")
            self.rule_source[m] = source
            self.version += 1

    def _next_expiry(self, ka: float) -> float:
        best = math.inf
        for m, insts in enumerate(self.instances):
            queued = self.head[m] != self.arrived[m]
            for inst in insts:
                if inst.state == WARM:
                    t = self.slot_free[m, inst.gpu] + ka
                    if queued and t <= self.now:
                        # Due but requests wait (arrived at the expiry instant, or queued during
                        # the cold start with keep_alive_s == 0): _reap keeps it, the next
                        # segment serves them, so it cannot expire before one batch + ka.
                        t = self.now + self.exec1[m] + ka
                    if t < best:
                        best = t
        return max(best, self.now)

    def _reap(self, t: float) -> None:
        """Tear down drained instances and idle instances past their keep-alive."""
        ka = self.cfg.features.keep_alive_s
        if ka is None and not self.n_draining:
            return  # nothing can be due
        for m, insts in enumerate(self.instances):
            if not insts:
                continue
            for inst in list(insts):
                free = self.slot_free[m, inst.gpu]
                if inst.state == DRAINING and free <= t:
                    self._teardown(inst, max(free, inst.drain_s))
                elif (
                    ka is not None
                    and inst.state == WARM
                    and free + ka <= t
                    and self.head[m] == self.arrived[m]
                ):
                    self._teardown(inst, free + ka)

    # ================================================================ life cycle =============
    def _advance_stage(self, payload, t: float) -> None:
        obj, token = payload
        if obj.token != token:
            return  # cancelled
        obj.transfer_id = -1
        obj.stage_idx += 1
        if isinstance(obj, Prefetch):
            self._run_prefetch_stage(obj, t)
        elif obj.state == LOADING:
            self._run_stage(obj, t)

    def _run_stage(self, inst: Instance, t: float) -> None:
        while inst.stage_idx < len(inst.stages):
            kind, arg = inst.stages[inst.stage_idx][:2]
            if kind == "delay":
                if arg > 0:
                    self.events.push(t + arg, Priority.STAGE_DONE, (inst, inst.token))
                    return
            elif kind == "fetched":
                self._on_fetched(inst.model, inst.host, arg, t)
            else:  # transfer
                links, size, cap = arg
                tr = self.net.start(t, links, size, cap, payload=(inst, inst.token))
                inst.transfer_id = tr.tid
                return
            inst.stage_idx += 1
        self._become_warm(inst, t)

    def _become_warm(self, inst: Instance, t: float) -> None:
        m = inst.model
        inst.state = WARM
        self.n_loading[m] -= 1
        self.version += 1
        inst.ready_s = t
        self._release(inst)
        self.slot_free[m, inst.gpu] = t
        self.slot_batch[m, inst.gpu] = 0
        self.slot_on[m, inst.gpu] = 1
        self._set_serving(m, +1, t)

    def _set_serving(self, m: int, delta: int, t: float) -> None:
        before = self.n_serving[m]
        self.n_serving[m] += delta
        if before == 0 and self.n_serving[m] > 0:
            self.warm_since[m] = t
            if self.n_cpu:
                self.slot_on[m, self.G :] = 0
        elif before > 0 and self.n_serving[m] == 0:
            self.warm_since[m] = np.inf
            if self.n_cpu:
                self.slot_on[m, self.G :] = 1
                np.maximum(self.slot_free[m, self.G :], t, out=self.slot_free[m, self.G :])

    def _teardown(self, inst: Instance, t: float) -> None:
        m = inst.model
        if inst.state == WARM:
            self._set_serving(m, -1, t)
        if inst.state == DRAINING:
            self.n_draining -= 1
        if inst.state == LOADING:
            self.n_loading[m] -= 1
            inst.token += 1
            if inst.transfer_id >= 0:
                self.net.cancel(self.now, inst.transfer_id)
            self._release(inst)
        self.slot_on[m, inst.gpu] = 0
        inst.state = DEAD
        self.version += 1
        self.gpu_s_closed += max(t - inst.created_s, 0.0)
        self._n_live -= 1
        self._live_created_s = self._live_created_s - inst.created_s if self._n_live else 0.0
        self.gpu_instance[inst.gpu] = None
        self.free_per_host[inst.host] += 1
        self.instances[m].remove(inst)

    def _release(self, obj) -> None:
        for cache, model, host in obj.locks:
            if model in cache.entries:
                cache.add_reader(model, -1)
            if host is not None:
                self._out_transfers[host] -= 1
        obj.locks = []
        self.version += 1

    def _lock(self, obj, cache: ModelCache, model: int, host: int | None = None) -> None:
        cache.add_reader(model, 1)
        cache.touch(model, self.now)
        obj.locks.append((cache, model, host))
        self.version += 1
        if host is not None:
            self._out_transfers[host] += 1

    def _on_fetched(self, m: int, h: int, tier: str, t: float) -> None:
        """Weights of ``m`` reached host ``h`` from ``tier``: keep copies where configured."""
        self.gb_by_tier[tier] += self.sizes[m]
        if tier == "cloud":
            self.egress_gb += self.sizes[m]
        if not self.cfg.features.host_cache:
            return
        if tier != "local_mem" and self.mem[h].can_fit(m):
            self._mem_change(lambda: self.mem[h].insert(m, t))
        if tier == "cloud" and self.cfg.hosts[h].has_disk and self.disk[h].can_fit(m):
            self.disk[h].insert(m, t)
            self.version += 1

    def _mem_change(self, fn):
        self.version += 1
        self._mem_gb_s += self._mem_used_total * (self.now - self._mem_t)
        self._mem_t = self.now
        out = fn()
        self._mem_used_total = sum(c.used_gb for c in self.mem)
        return out

    # ============================================================ sourcing ==================
    def available_sources(self, m: int, h: int) -> list[str]:
        """Tiers that hold a usable copy of model ``m`` for host ``h``, nearest first."""
        f = self.cfg.features
        if not f.host_cache:
            return ["cloud"]
        out = []
        held = self.mem_state[:, PRESENT, m]  # hosts holding a memory copy (ModelCache mirror)
        local = bool(held[h])
        if local:
            out.append("local_mem")
        if f.remote_pool and int(held.sum()) > local:  # another host holds one
            out.append("remote_mem")
        if self.link_disk[h] >= 0 and self.disk_state[h, PRESENT, m]:
            out.append("disk")
        out.append("cloud")
        return out

    def _rule_args(self) -> tuple:
        f = self.cfg.features
        return (
            self.mem_state, self.disk_state, self.has_disk, f.host_cache, f.remote_pool,
            f.sourcing == "cloud",
        )  # fmt: skip

    def default_source(self, m: int, h: int) -> str:
        """The configured sourcing rule's choice for loading ``m`` onto host ``h``
        (:func:`envs.sim.sourcing.nearest_tier`)."""
        return TIERS[sourcing.nearest_tier(m, h, *self._rule_args())]

    def _remote_holder(self, m: int, h: int) -> int:
        return sourcing.remote_holder(m, h, self.mem_state, self._out_transfers)

    def _fetch_plan(self, obj, m: int, h: int, source: str):
        """Links, rate cap, first-byte delay for moving ``m``'s weights to host ``h``."""
        c = self.cfg.cloud
        if source == "local_mem":
            self._lock(obj, self.mem[h], m)
            return (), math.inf, 0.0
        if source == "remote_mem":
            r = self._remote_holder(m, h)
            self._lock(obj, self.mem[r], m, host=r)
            return (self.link_tx[r], self.link_rx[h]), math.inf, 0.0
        if source == "disk":
            self._lock(obj, self.disk[h], m)
            return (self.link_disk[h],), math.inf, 0.0
        return (self.link_egress, self.link_rx[h]), c.per_transfer_gb_per_s, c.ttfb_s

    def _check_source(self, m: int, h: int, source: str | None) -> str:
        if source is None:
            return self.default_source(m, h)
        if source not in TIERS:
            raise SimError(f"unknown source tier {source!r}; valid tiers: {TIERS}")
        if source not in self.available_sources(m, h):
            raise SimError(
                f"tier {source!r} holds no usable copy of model {self.cfg.models[m].name!r} for "
                f"host {h}; available: {self.available_sources(m, h)}"
            )
        return source

    def _jitter(self, x: float) -> float:
        cv = self.cfg.startup.jitter_cv
        if cv <= 0 or x <= 0:
            return x
        s2 = math.log1p(cv * cv)
        return x * float(self.rng.lognormal(-s2 / 2, math.sqrt(s2)))

    # ============================================================ control ===================
    def free_gpus(self, h: int) -> list[int]:
        return [g for g in self.gpus_of_host[h] if self.gpu_instance[g] is None]

    def free_gpu_counts(self) -> list[int]:
        """Free GPUs per host."""
        return self.free_per_host.tolist()

    def choose_host(self, m: int, rule: str) -> int:
        """Host for a new instance of ``m`` under a placement rule; -1 if no GPU is free."""
        if rule not in PLACEMENT_RULES:
            raise SimError(f"unknown placement rule {rule!r}; valid rules: {PLACEMENT_RULES}")
        size = self.sizes[m]
        nfree = self.free_per_host.tolist()
        cands = [h for h, hs in enumerate(self.cfg.hosts) if hs.gpu_mem_gb >= size and nfree[h]]
        if not cands:
            return -1
        if rule == "pack":
            return min(cands, key=lambda h: (nfree[h], h))
        if rule == "least_loaded":
            return min(cands, key=lambda h: (-nfree[h], h))
        if rule == "fastest":
            return min(
                cands,
                key=lambda h: (self.estimate_load_s(m, h) + self.loading_wait_s(h), -nfree[h], h),
            )

        return sourcing.locality_host(m, self.free_per_host, self.fits[m], *self._rule_args())

    def loading_wait_s(self, h: int) -> float:
        """Estimated remaining time of the cold starts in progress on host ``h`` (uncontended)."""
        wait = 0.0
        for insts in self.instances:
            for inst in insts:
                if inst.state == LOADING and inst.host == h:
                    total = self.estimate_load_s(inst.model, h, inst.source)
                    wait += max(0.0, inst.created_s + total - self.now)
        return wait

    def best_load_s(self, m: int) -> float:
        """Uncontended cold-start time of ``m`` where the ``locality`` rule would put it now,
        from the tier its cold start would load from there (the sourcing rule's nearest copy, or
        cloud storage under the model's ``cloud`` source rule); with no free GPU that fits, the
        best over every host that fits. The env's ``load_time`` feature."""
        if self._tables is None:
            t = _TABLES.get(self.cfg)
            if t is None:
                if len(_TABLES) > 64:
                    _TABLES.clear()
                t = _TABLES[self.cfg] = self.load_time_tables()
            self._tables = (t["local_mem"], t["remote_mem"], t["disk"], t["cloud"])
        mem, disk, has_disk, cache, pool, cloud_only = self._rule_args()
        return sourcing.best_load(
            m, self.free_per_host, self.fits[m], mem, disk, has_disk, cache, pool,
            cloud_only or self.rule_source[m] == "cloud", self._out_transfers, *self._tables,
        )  # fmt: skip

    def scale_up(self, m: int, host: int | None = None, source: str | None = None) -> Instance:
        """Start a cold start of model ``m`` on ``host`` (or the default placement rule's host)."""
        self._check_model(m)
        if host is None:
            host = self.choose_host(m, self.cfg.features.default_placement)
            if host < 0:
                raise SimError(f"no free GPU fits model {self.cfg.models[m].name!r}")
        if not 0 <= host < len(self.cfg.hosts):
            raise SimError(f"host must be in [0, {len(self.cfg.hosts) - 1}], got {host}")
        if self.cfg.hosts[host].gpu_mem_gb < self.sizes[m]:
            raise SimError(f"model {self.cfg.models[m].name!r} does not fit host {host}'s GPUs")
        free = self.free_gpus(host)
        if not free:
            raise SimError(f"host {host} has no free GPU")
        source = self._check_source(m, host, source)
        g = free[0]
        inst = Instance(self._next_iid, m, host, g, source, self.now)
        self._next_iid += 1
        self.gpu_instance[g] = inst
        self._n_live += 1
        self._live_created_s += inst.created_s
        self.free_per_host[host] -= 1
        self.n_loading[m] += 1
        self.version += 1
        self.instances[m].append(inst)
        self.cold_starts[source] += 1
        self.cold_starts_by_model[m] += 1
        inst.stages = self._plan_cold_start(inst, m, host, g, source)
        self._run_stage(inst, self.now)
        return inst

    def _plan_cold_start(self, inst, m: int, h: int, g: int, source: str) -> list:
        st, spec = self.cfg.startup, self.cfg.models[m]
        size = self.sizes[m]
        links, cap, ttfb = self._fetch_plan(inst, m, h, source)
        pcie = self.link_pcie[g]
        self.gb_pcie += size
        stages = [("delay", self._jitter(st.sandbox_s)), ("delay", self._jitter(st.runtime_init_s))]
        if ttfb > 0:
            stages.append(("delay", ttfb))
        if not st.pipelined:
            if links:
                stages.append(("transfer", (links, size, cap)))
            stages.append(("fetched", source))
            stages.append(("transfer", ((pcie,), size, math.inf)))
            stages.append(("delay", size / spec.deserialize_gb_per_s))
            return stages
        caps = [self.net.capacity[k] for k in links] + [cap]
        t_fetch = size / min(caps) if links else 0.0
        t_copy = size / self.net.capacity[pcie]
        t_deser = size / spec.deserialize_gb_per_s
        times = [t_fetch, t_copy, t_deser]
        fill = (sum(times) - max(times)) / st.pipeline_chunks
        stages.append(("transfer", ((*links, pcie), size, min(cap, spec.deserialize_gb_per_s))))
        stages.append(("fetched", source))
        stages.append(("delay", fill))
        return stages

    def scale_down(self, m: int, k: int = 1) -> int:
        """Remove up to ``k`` instances of ``m``: idle warm first (longest idle), then loading
        (latest started), then busy ones, which drain (finish their batch, take no more)."""
        self._check_model(m)
        removed = 0
        while removed < k:
            insts = [i for i in self.instances[m] if i.state in (WARM, LOADING)]
            if not insts:
                break
            idle = [i for i in insts if i.state == WARM and self.slot_free[m, i.gpu] <= self.now]
            loading = [i for i in insts if i.state == LOADING]
            if idle:
                victim = min(idle, key=lambda i: (self.slot_free[m, i.gpu], i.iid))
                self._teardown(victim, self.now)
            elif loading:
                self._teardown(max(loading, key=lambda i: (i.created_s, i.iid)), self.now)
            else:
                victim = min(insts, key=lambda i: (self.slot_free[m, i.gpu], i.iid))
                victim.state = DRAINING
                self.n_draining += 1
                self.version += 1
                victim.drain_s = self.now
                self.slot_on[m, victim.gpu] = 0
                self._set_serving(m, -1, self.now)
            removed += 1
        return removed

    def set_target(self, m: int, n: int, placement: str | None = None) -> int:
        """Scale model ``m`` to ``n`` instances (warm + loading); returns the change made.

        Scale-out stops early (without error) when no GPU is free."""
        self._check_model(m)
        if n < 0:
            raise SimError(f"target must be >= 0, got {n}")
        cur = self.instance_count(m)
        rule = placement or self.cfg.features.default_placement
        if n > cur:
            made = 0
            for _ in range(n - cur):
                h = self.choose_host(m, rule)
                if h < 0:
                    break
                self.scale_up(m, h)
                made += 1
            return made
        return -self.scale_down(m, cur - n)

    def cache_keep(self, m: int, h: int, keep: bool = True) -> bool:
        """Pin (or unpin) model ``m``'s copy in host ``h``'s memory; False if there is none."""
        self._check_model(m)
        self._check_host(h)
        if not self.mem[h].set_pinned(m, keep):
            return False
        self.version += 1
        return True

    def cache_evict(self, m: int, h: int) -> bool:
        """Drop host ``h``'s memory copy of ``m`` now; False if absent or being read."""
        self._check_model(m)
        self._check_host(h)
        return self._mem_change(lambda: self.mem[h].remove(m))

    def prefetch(self, m: int, h: int, source: str | None = None, pin: bool = True) -> bool:
        """Copy ``m`` into host ``h``'s memory from the nearest other tier (or ``source``).

        Returns False (nothing started) if the copy is already there, on its way, or can't fit."""
        self._check_model(m)
        self._check_host(h)
        f = self.cfg.features
        if not f.host_cache or m in self.mem[h] or not self.mem[h].can_fit(m):
            return False
        if self.prefetch_pending(m, h):
            return False
        if source is None:
            srcs = [s for s in self.available_sources(m, h) if s != "local_mem"]
            source = "cloud" if f.sourcing == "cloud" else srcs[0]
        elif source == "local_mem" or source not in self.available_sources(m, h):
            raise SimError(f"cannot prefetch model {m} to host {h} from {source!r}")
        p = Prefetch(m, h, source, [], pin=pin)
        links, cap, ttfb = self._fetch_plan(p, m, h, source)
        p.stages = [("delay", ttfb), ("transfer", (links, self.sizes[m], cap))]
        self.prefetches.append(p)
        self.prefetch_count[m, h] += 1
        self.version += 1
        self._run_prefetch_stage(p, self.now)
        return True

    def prefetch_host(self, m: int) -> int:
        """Host whose memory would take a prefetched copy of ``m`` (no copy, none on its way,
        room after evicting unpinned unread copies; the most free memory), or -1."""
        if not self.cfg.features.host_cache:
            return -1
        return cache_room.prefetch_host(
            m, self.mem_state, self.mem_used, self.mem_capacity, self._sizes, self.prefetch_count
        )

    def prefetch_pending(self, m: int, h: int) -> bool:
        """Whether a prefetch of ``m`` into host ``h``'s memory is on its way."""
        return bool(self.prefetch_count[m, h])

    def seed_copy(self, m: int, h: int) -> bool:
        """Place a copy of ``m`` in host ``h``'s memory now, without a transfer (initial state).

        Returns False if the host cache is off or the copy does not fit."""
        self._check_model(m)
        self._check_host(h)
        if not self.cfg.features.host_cache or not self.mem[h].can_fit(m):
            return False
        self._mem_change(lambda: self.mem[h].insert(m, self.now))
        return True

    def _run_prefetch_stage(self, p: Prefetch, t: float) -> None:
        while p.stage_idx < len(p.stages):
            kind, arg = p.stages[p.stage_idx]
            if kind == "delay" and arg > 0:
                self.events.push(t + arg, Priority.STAGE_DONE, (p, p.token))
                return
            if kind == "transfer":
                tr = self.net.start(t, *arg, payload=(p, p.token))
                p.transfer_id = tr.tid
                return
            p.stage_idx += 1
        self._release(p)
        self.prefetches.remove(p)
        self.prefetch_count[p.model, p.host] -= 1
        self.version += 1
        self.prefetches_done += 1
        # Same landing as a cold start's fetch (accounting, memory copy, disk copy from cloud).
        self._on_fetched(p.model, p.host, p.source, t)
        if p.pin:
            self.cache_keep(p.model, p.host, True)

    def _check_model(self, m: int) -> None:
        if not 0 <= m < self.M:
            raise SimError(f"model index must be in [0, {self.M - 1}], got {m}")

    def _check_host(self, h: int) -> None:
        if not 0 <= h < len(self.cfg.hosts):
            raise SimError(f"host must be in [0, {len(self.cfg.hosts) - 1}], got {h}")

    # ============================================================ queries ===================
    def instance_count(self, m: int) -> int:
        return sum(1 for i in self.instances[m] if i.state in (WARM, LOADING))

    def counts(self, m: int) -> tuple[int, int, int]:
        """(warm idle, warm busy, loading) instances of model ``m`` now."""
        idle = busy = loading = 0
        for i in self.instances[m]:
            if i.state == LOADING:
                loading += 1
            elif i.state == WARM:
                if self.slot_free[m, i.gpu] > self.now:
                    busy += 1
                else:
                    idle += 1
        return idle, busy, loading

    def queue_len(self, m: int) -> int:
        return int(self.arrived[m] - self.head[m])

    def oldest_wait_s(self, m: int) -> float:
        return (
            float(self.now - self.arrivals[self.head[m]]) if self.arrived[m] > self.head[m] else 0.0
        )

    def hosts_with_copy(self, m: int) -> list[int]:
        return [h for h, c in enumerate(self.mem) if m in c]

    def estimate_load_s(self, m: int, h: int, source: str | None = None) -> float:
        """Uncontended cold-start time of ``m`` on host ``h`` from ``source`` (default rule)."""
        source = source or self.default_source(m, h)
        remote_bw = self.cfg.hosts[h].nic_gb_per_s
        if source == "remote_mem" and (r := self._remote_holder(m, h)) >= 0:
            remote_bw = min(remote_bw, self.cfg.hosts[r].nic_gb_per_s)  # the holder's NIC sends
        return self._estimate(m, h, source, remote_bw)

    def _estimate(self, m: int, h: int, source: str, remote_bw: float) -> float:
        key = (m, h, source, remote_bw)
        est = self._est_cache.get(key)
        if est is not None:
            return est
        st, c, spec = self.cfg.startup, self.cfg.cloud, self.cfg.models[m]
        hs = self.cfg.hosts[h]
        size = self.sizes[m]
        fetch_bw = {
            "local_mem": math.inf,
            "remote_mem": remote_bw,
            "disk": hs.disk_gb_per_s,
            "cloud": min(c.per_transfer_gb_per_s, hs.nic_gb_per_s, c.egress_gb_per_s),
        }[source]
        if fetch_bw <= 0:  # disk tier of a host without a disk (disk_gb_per_s 0): never usable
            self._est_cache[key] = math.inf
            return math.inf
        times = [size / fetch_bw, size / hs.pcie_gb_per_s, size / spec.deserialize_gb_per_s]
        fixed = st.sandbox_s + st.runtime_init_s + (c.ttfb_s if source == "cloud" else 0.0)
        if st.pipelined:
            est = fixed + max(times) + (sum(times) - max(times)) / st.pipeline_chunks
        else:
            est = fixed + sum(times)
        self._est_cache[key] = est  # the config is frozen: same inputs, same estimate
        return est

    def load_time_tables(self) -> dict[str, np.ndarray]:
        """:meth:`estimate_load_s` for every case, as arrays (for compiled readers).

        ``local_mem``, ``disk``, ``cloud``: ``[m, h]``; ``remote_mem``: ``[m, h, r]`` with the
        copy sent by host ``r``, ``r = H`` when no other host holds one."""
        M, H = self.M, len(self.cfg.hosts)
        nic = [hs.nic_gb_per_s for hs in self.cfg.hosts]
        out = {k: np.zeros((M, H)) for k in ("local_mem", "disk", "cloud")}
        out["remote_mem"] = np.zeros((M, H, H + 1))
        for m in range(M):
            for h in range(H):
                for k in ("local_mem", "disk", "cloud"):
                    out[k][m, h] = self._estimate(m, h, k, nic[h])
                for r in range(H):
                    out["remote_mem"][m, h, r] = self._estimate(
                        m, h, "remote_mem", min(nic[h], nic[r])
                    )
                out["remote_mem"][m, h, H] = self._estimate(m, h, "remote_mem", nic[h])
        return out

    def request_counts(self) -> dict[str, int]:
        """Every arrived request is exactly one of queued, in service, completed, dropped."""
        arrived = int((self.arrived - self.offsets[:-1]).sum())
        served = int(self.served.sum())
        dropped = int(self.dropped.sum())
        in_service = int(self.slot_batch[self.slot_free > self.now].sum())
        return {
            "arrived": arrived,
            "queued": arrived - served - dropped,
            "in_service": in_service,
            "completed": served - in_service,
            "dropped": dropped,
        }

    def open_window(self) -> None:
        """Start the measured window now: :func:`envs.sim.metrics.summary` covers the requests
        that arrive after this instant and the costs, cold starts and bytes from here on (an
        episode's warm-up before it is state, not score). Called at construction (window = all)."""
        self.window_s = self.now
        self.window_first = self.arrived.copy()  # per model: first request of the window
        self.window_base = {
            "cold_starts": dict(self.cold_starts),
            "cold_starts_by_model": self.cold_starts_by_model.copy(),
            "gb_by_tier": dict(self.gb_by_tier),
            "gb_pcie": self.gb_pcie,
            "gpu_seconds": self.gpu_seconds(),
            "gpu_busy_seconds": self.gpu_busy_seconds(),
            "cost_usd": self.cost_usd(),
            "autostarts": self.autostarts,
            "prefetches_done": self.prefetches_done,
        }

    def gpu_seconds(self) -> float:
        """GPU-seconds held: closed instances, plus every live one since its creation."""
        return self.gpu_s_closed + (self._n_live * self.now - self._live_created_s)

    def mem_gb_seconds(self) -> float:
        return self._mem_gb_s + self._mem_used_total * (self.now - self._mem_t)

    def cost_usd(self) -> float:
        return (
            self.gpu_seconds() * self._usd_per_gpu_s
            + self.mem_gb_seconds() * self._usd_per_gb_s
            + self.egress_gb * self.cfg.prices.egress_usd_per_gb
        )

    def gpu_busy_seconds(self) -> float:
        busy = self.slot_busy[:, : self.G]
        ahead = np.clip(self.slot_free[:, : self.G] - self.now, 0.0, None)
        ahead = np.minimum(ahead, busy)
        return float((busy - ahead).sum())

    def cache_used_gb(self, h: int) -> float:
        return self.mem[h].used_gb
