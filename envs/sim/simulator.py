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

The class is assembled from one module per concept: :mod:`.lifecycle` (stages of instances and
prefetches, one stage runner), :mod:`.fetch` (how weights move: unicast, striped, multicast),
:mod:`.sourcing` (where a load reads from and how long it takes), :mod:`.accounting` (GPU time,
memory, cost, counts). This module holds the state, the event loop, the control interface and
the queries.
"""

from __future__ import annotations

import numpy as np

from . import cache as cache_room
from . import kernel, sourcing
from .accounting import AccountingMixin
from .cache import ModelCache
from .config import PLACEMENT_RULES, SimConfig, SimError
from .engine import EventQueue
from .fastcall import BoundKernels, bind
from .fetch import FetchMixin
from .lifecycle import DEAD, DRAINING, LOADING, WARM, Instance, LifecycleMixin, Prefetch
from .links import LinkNetwork
from .sourcing import SourcingMixin
from .workload import Workload

__all__ = ["DEAD", "DRAINING", "LOADING", "WARM", "Instance", "Prefetch", "SimError", "Simulator"]


class Simulator(LifecycleMixin, FetchMixin, SourcingMixin, AccountingMixin, BoundKernels):
    """A GPU cluster serving one workload.

    Args:
        config: The cluster, catalog and features.
        workload: Arrivals per catalog model; ``workload.n_models`` must equal the catalog size.
        rng: Random stream for start-up jitter only (unused when ``jitter_cv == 0``).
    """

    # The event loop skips the stops at cold models' arrivals that the activator cannot use
    # (no free GPU, none freeing before the next event: kernel.activator_next); False stops at
    # every one, as before the skip: the same results, more passes (tests compare the two).
    _skip_cold_stops = True

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
        self._init_links()
        self.events = EventQueue()
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
        self._fit_hosts = [np.flatnonzero(row).tolist() for row in self.fits]  # per model
        self._out_transfers = np.zeros(H, dtype=np.int64)  # remote-memory reads served
        # Instances and prefetches.
        self.instances: list[list[Instance]] = [[] for _ in range(M)]
        self._next_iid = 0
        self.n_serving = np.zeros(M, dtype=np.int64)  # warm instances (not draining)
        self.n_loading = np.zeros(M, dtype=np.int64)  # instances in a cold start
        self.n_draining = 0  # instances finishing their last batch
        self.prefetches: list[Prefetch] = []
        self.prefetch_count = np.zeros((M, H), dtype=np.int64)  # on their way, per (model, host)
        self._forming: dict = {}  # multicasts that loads starting now may join, by source
        self._init_kernel_state(workload)
        self._init_accounting()
        self._init_sourcing()
        # Per-model standing rules for the platform's own cold starts (FeatureSpec.autostart):
        # a placement rule, and a source (None: the sourcing rule's nearest copy; "cloud").
        self.rule_placement = [config.features.default_placement] * M
        self.rule_source: list[str | None] = [None] * M
        self._autostart_on = config.features.autostart
        self.open_window()
        # Bumped by every change of placement state: instances (created, warm, draining, gone),
        # memory and disk copies (inserted, evicted, pinned, being read), prefetches. Whatever
        # is a function of that state alone (free GPUs, copies, the best source, the env's
        # action masks) may be cached against it.
        self.version = 0
        self._bind_kernels()

    def _bind_kernels(self) -> None:
        """The event loop's per-pass kernel, called without numba's dispatch (:mod:`.fastcall`:
        its arguments keep these types: the times floats, the arrays never rebound)."""
        self._k_plan_and_serve = bind(kernel.plan_and_serve, 0.0, 0.0, 0.0, False,
                                      self.n_serving, self.n_loading, self.free_per_host,
                                      *self._serve_args)  # fmt: skip

    def _init_links(self) -> None:
        config = self.cfg
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
        for g in range(self.G):
            self.link_pcie.append(len(caps))
            caps.append(config.hosts[self.host_of_gpu[g]].pcie_gb_per_s)
            names.append(f"gpu{g}_pcie")
        self.net = LinkNetwork(caps, names)

    def _init_kernel_state(self, workload: Workload) -> None:
        """Per-request and per-slot arrays of the serving kernel (:mod:`envs.sim.kernel`)."""
        config, M, G = self.cfg, self.M, self.G
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
        # kernel.serve_segment's arguments after t1 (updated in place, never rebound).
        self._serve_args = (
            self.arrivals, self.offsets, self.head, self.arrived, self.start_s, self.finish_s,
            self.cold_wait_s, self.status, self.slot_free, self.slot_on, self.slot_batch,
            self.slot_busy, G, self.exec1, self.exec_item, self.cpu_exec, self.max_batch,
            f.request_timeout_s, self.warm_since, self.served, self.dropped, self.slo, self.late,
            self.late_s,
        )  # fmt: skip

    def __setstate__(self, state: dict) -> None:
        """Unpickling (or deep-copying) copies numpy views as separate arrays: make each cache's
        state a view into the simulator's cluster-wide arrays again; bind the kernels again."""
        self.__dict__.update(state)
        for caches, arr in ((self.mem, self.mem_state), (self.disk, self.disk_state)):
            for h, c in enumerate(caches):
                arr[h] = c.state
                c.state = arr[h]
        for h, c in enumerate(self.mem):
            self.mem_used[h] = c.used[0]
            c.used = self.mem_used[h : h + 1]
        self._bind_kernels()

    # ====================================================================== time =============
    def run_until(self, t_end: float) -> None:
        """Advance simulated time to ``t_end`` (>= now), serving requests and processing events."""
        if not t_end >= self.now:
            raise ValueError(f"run_until({t_end}) is in the past: now = {self.now}")
        f = self.cfg.features
        ka, auto = f.keep_alive_s, f.autostart
        net, heap = self.net, self.events._heap  # (the queue's heap, read in place: hot loop)
        arrivals, offsets, head, arrived = self.arrivals, self.offsets, self.head, self.arrived
        n_serving, n_loading, free = self.n_serving, self.n_loading, self.free_per_host
        serve_args = self._serve_args
        plan_and_serve, has_work = self._k_plan_and_serve, kernel.has_work
        inf = np.inf
        t_end_f = float(t_end)
        no_ka = ka is None and self._skip_cold_stops
        while True:
            t_ev, t_net = self._next_event(ka)
            now = self.now
            if auto:
                # The platform acts on the next request of a model with no instance; the
                # segment up to the next event is served in the same call. (A request arriving
                # at the current instant for a model with no instance: the segment of length 0
                # marks it arrived, so the activator sees it at the next pass.)
                # (A GPU frees only at an event unless a keep-alive or a drain is reaped at
                # a pass: then the loop stops at every cold arrival, the activator's chance.)
                t_cold, t_seg = plan_and_serve(t_ev, t_end_f, now, no_ka and not self.n_draining,
                                               n_serving, n_loading, free, *serve_args)  # fmt: skip
                served = t_cold != -inf  # (else the kernel returned before serving)
                if not served:
                    self._autostart()
                    t_cold = kernel.next_cold_arrival(arrivals, offsets, arrived, n_serving,
                                                      n_loading)  # fmt: skip
                    t_ev, t_net = self._next_event(ka)  # (its loads' first events)
                    t_seg = min(t_ev, t_cold, t_end_f)
                if t_cold < t_ev:
                    t_ev = t_cold
                due = t_seg >= now
            else:
                t_seg = t_ev if t_ev < t_end else t_end
                served, due = False, t_seg > now
            # Serve the segment (the compiled kernel, when some model has a queue or an
            # arrival by t_seg), unless plan_and_serve has.
            if due and not served and has_work(arrivals, offsets, head, arrived, t_seg):
                kernel.serve_segment(t_seg, *serve_args)
            if due:
                self.now = t_seg
                if self.n_draining or ka is not None:
                    self._reap(t_seg)  # (else nothing can be due)
            elif t_seg == now and ka is not None:
                self._reap(t_seg)
            if t_ev > t_end:
                break
            if t_net <= t_seg:  # (the links move their bytes lazily: when asked, or here)
                for tr in net.pop_finished(t_seg):
                    self._advance_stage(tr.payload, t_seg)
            while heap and heap[0][0] <= t_seg:
                _, _, payload = self.events.pop()
                self._advance_stage(payload, t_seg)
        self.now = t_end_f  # (always a float: the kernels that read it compile once)

    def _next_event(self, ka) -> tuple[float, float]:
        """``(t_ev, t_net)``: the earliest of the next transfer completion (``t_net``), the next
        queued event and (with a keep-alive ``ka``) the next expiry."""
        t_ev = t_net = self.net.next_completion()
        heap = self.events._heap
        if heap and heap[0][0] < t_ev:
            t_ev = heap[0][0]
        if ka is not None:
            t_ev = min(t_ev, self._next_expiry(ka))
        return t_ev, t_net

    def _autostart(self) -> None:
        """The platform's activator (when :func:`kernel.cold_with_queue` says it has something
        to do): a model with queued requests and no warm or loading instance gets one now,
        placed and sourced by its standing rules (:meth:`set_rules`). Without a free GPU that
        fits, nothing starts; the next pass of the event loop (every event) tries again."""
        out = np.empty(self.M, dtype=np.int64)
        n = kernel.cold_queued(self.n_serving, self.n_loading, self.head, self.arrived, out)
        for m in out[:n].tolist():
            h = self.choose_host(m, self.rule_placement[m])
            if h >= 0:
                self.scale_up(m, h, self.rule_source[m])
                self.autostarts += 1

    # ============================================================ control ===================
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

    def choose_host(self, m: int, rule: str) -> int:
        """Host for a new instance of ``m`` under a placement rule; -1 if no GPU is free."""
        if rule == "locality":  # (the kernel answers -1 when no host that fits has a free GPU)
            return sourcing.locality_host(m, self.free_per_host, self.fits[m], *self._rule_tuple)
        if rule not in PLACEMENT_RULES:
            raise SimError(f"unknown placement rule {rule!r}; valid rules: {PLACEMENT_RULES}")
        nfree = self.free_per_host.tolist()
        cands = [h for h in self._fit_hosts[m] if nfree[h]]
        if not cands:
            return -1
        if rule == "pack":
            return min(cands, key=lambda h: (nfree[h], h))
        if rule == "least_loaded":
            return min(cands, key=lambda h: (-nfree[h], h))
        if rule == "fastest":
            wait = self.loading_waits()
            return min(cands, key=lambda h: (self.estimate_load_s(m, h) + wait[h], -nfree[h], h))
        raise AssertionError(rule)  # (every rule is handled above)

    def scale_up(self, m: int, host: int | None = None, source: str | None = None) -> Instance:
        """Start a cold start of model ``m`` on ``host`` (or the default placement rule's host)."""
        self._check_model(m)
        if host is None:
            host = self.choose_host(m, self.cfg.features.default_placement)
            if host < 0:
                raise SimError(f"no free GPU fits model {self.cfg.models[m].name!r}")
        if not 0 <= host < len(self.cfg.hosts):
            raise SimError(f"host must be in [0, {len(self.cfg.hosts) - 1}], got {host}")
        if not self.fits[m, host]:
            raise SimError(f"model {self.cfg.models[m].name!r} does not fit host {host}'s GPUs")
        gpu_instance = self.gpu_instance
        for g in self.gpus_of_host[host]:  # the host's first free GPU
            if gpu_instance[g] is None:
                break
        else:
            raise SimError(f"host {host} has no free GPU")
        source = self._check_source(m, host, source)
        inst = Instance(self._next_iid, m, host, g, source, self.now)
        self._next_iid += 1
        gpu_instance[g] = inst
        self._open_gpu_time(inst)
        self.free_per_host[host] -= 1
        self.n_loading[m] += 1
        self.version += 1
        self.instances[m].append(inst)
        self.cold_starts[source] += 1
        self.cold_starts_by_model[m] += 1
        inst.stages = self._plan_cold_start(inst, m, host, g, source)
        self._run_stages(inst, self.now)
        return inst

    def removable(self, m: int) -> int:
        """Instances of ``m`` (warm or loading) a scale-in may remove now: all of them, but with
        ``features.autostart`` one stays while requests of ``m`` wait (see ``FeatureSpec``)."""
        n = int(self.n_serving[m]) + int(self.n_loading[m])
        if n and self._autostart_on and self.arrived[m] > self.head[m]:
            return n - 1
        return n

    def scale_down(self, m: int, k: int = 1) -> int:
        """Remove up to ``k`` instances of ``m`` (at most :meth:`removable`): idle warm first
        (longest idle), then loading (latest started), then busy ones, which drain (finish
        their batch, take no more)."""
        self._check_model(m)
        k = min(k, self.removable(m))
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
                self._drain(min(insts, key=lambda i: (self.slot_free[m, i.gpu], i.iid)))
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
        cache = self.mem[h]
        e = cache.entries.get(m)
        if e is None:
            return False
        if e.pinned != bool(keep):  # (pinning a pinned copy changes nothing: same version)
            cache.set_pinned(m, keep)
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
            if f.sourcing == "cloud":
                source = "cloud"
            else:
                source = [s for s in self.available_sources(m, h) if s != "local_mem"][0]
        elif source == "local_mem" or source not in self.available_sources(m, h):
            raise SimError(f"cannot prefetch model {m} to host {h} from {source!r}")
        p = Prefetch(m, h, source, [], pin=pin)
        p.stages = self._plan_prefetch(p, m, h, source)
        self.prefetches.append(p)
        self.prefetch_count[m, h] += 1
        self.version += 1
        self._run_stages(p, self.now)
        return True

    def prefetch_host(self, m: int) -> int:
        """Host whose memory would take a prefetched copy of ``m`` (no copy, none on its way,
        room after evicting unpinned unread copies; the most free memory), or -1."""
        if not self.cfg.features.host_cache:
            return -1
        return cache_room.prefetch_host(
            m, self.mem_state, self.mem_used, self.mem_capacity, self._sizes, self.prefetch_count
        )

    def seed_copy(self, m: int, h: int) -> bool:
        """Place a copy of ``m`` in host ``h``'s memory now, without a transfer (initial state).

        Returns False if the host cache is off or the copy does not fit."""
        self._check_model(m)
        self._check_host(h)
        if not self.cfg.features.host_cache or not self.mem[h].can_fit(m):
            return False
        self._mem_change(lambda: self.mem[h].insert(m, self.now))
        return True

    def _check_model(self, m: int) -> None:
        if not 0 <= m < self.M:
            raise SimError(f"model index must be in [0, {self.M - 1}], got {m}")

    def _check_host(self, h: int) -> None:
        if not 0 <= h < len(self.cfg.hosts):
            raise SimError(f"host must be in [0, {len(self.cfg.hosts) - 1}], got {h}")

    # ============================================================ queries ===================
    def free_gpus(self, h: int) -> list[int]:
        return [g for g in self.gpus_of_host[h] if self.gpu_instance[g] is None]

    def free_gpu_counts(self) -> list[int]:
        """Free GPUs per host."""
        return self.free_per_host.tolist()

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

    def prefetch_pending(self, m: int, h: int) -> bool:
        """Whether a prefetch of ``m`` into host ``h``'s memory is on its way."""
        return bool(self.prefetch_count[m, h])

    def hosts_with_copy(self, m: int) -> list[int]:
        return [h for h, c in enumerate(self.mem) if m in c.entries]

    def cache_used_gb(self, h: int) -> float:
        return self.mem[h].used_gb
