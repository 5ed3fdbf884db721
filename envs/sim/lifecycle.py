"""Life cycles of instances and prefetches: their stages, one stage runner for both, and what
happens when an instance becomes warm, drains or goes, or a prefetched copy lands.

A load (an :class:`Instance`'s cold start, a :class:`Prefetch`) is a list of stages, run in
order by :meth:`LifecycleMixin._run_stages`: ``("delay", s)`` waits ``s`` seconds (an event),
``("fetch", Fetch)`` moves the weights from the source tier (:mod:`envs.sim.fetch`),
``("transfer", (links, gb, cap))`` moves bytes over links (the host-to-GPU copy), and
``("fetched", tier)`` lands the weights on the host (copies kept, bytes counted). When the
last stage ends the instance is warm, or the prefetched copy is in host memory.

Mixed into :class:`envs.sim.simulator.Simulator`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import sourcing
from .cache import ModelCache
from .engine import Priority
from .fetch import FetchGroup

LOADING, WARM, DRAINING, DEAD = 0, 1, 2, 3
_STAGE_DONE = Priority.STAGE_DONE


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
    tids: tuple = ()  # transfers of the current stage in flight
    waiting: int = 0  # of those, how many have not finished
    group: FetchGroup | None = None  # the multicast its fetch rides
    relayed: bool = False  # its weights came by relay (the source sent them for another load)
    locks: list = field(default_factory=list)  # (cache, model, host) read by this load
    drain_s: float = math.inf


@dataclass(eq=False)
class Prefetch:
    """A copy of a model on its way into a host's memory."""

    model: int
    host: int
    source: str
    stages: list
    stage_idx: int = 0
    token: int = 0
    tids: tuple = ()
    waiting: int = 0
    group: FetchGroup | None = None
    relayed: bool = False
    locks: list = field(default_factory=list)
    pin: bool = True


class LifecycleMixin:
    """Stages of instances and prefetches (see the module docstring)."""

    # ------------------------------------------------------------------------ plans ----
    def _plan_cold_start(self, inst: Instance, m: int, h: int, g: int, source: str) -> list:
        st, spec = self.cfg.startup, self.cfg.models[m]
        size = self.sizes[m]
        pcie = self.link_pcie[g]
        deser = spec.deserialize_gb_per_s
        if st.pipelined:  # the fetch streams through the PCIe link at the deserialiser's pace
            # (Its uncontended rate, before the fetch's locks change the holders' counts.)
            bw = sourcing.fetch_bw(
                m, h, sourcing.TIER_INDEX[source], self.mem_state, self._out_transfers,
                self._hp, self._stripes,
            )  # fmt: skip
            f = self._plan_fetch(inst, m, h, source, (pcie,), deser)
        else:
            f = self._plan_fetch(inst, m, h, source, (), math.inf)
        self.gb_pcie += size
        if st.jitter_cv > 0:
            stages = [
                ("delay", self._jitter(st.sandbox_s)),
                ("delay", self._jitter(st.runtime_init_s)),
            ]
        else:
            stages = [("delay", st.sandbox_s), ("delay", st.runtime_init_s)]
        if source == "cloud" and self.cfg.cloud.ttfb_s > 0:
            stages.append(("delay", self.cfg.cloud.ttfb_s))
        if not st.pipelined:
            if f.moves:
                stages.append(("fetch", f))
            stages.append(("fetched", source))
            stages.append(("transfer", ((pcie,), size, math.inf)))
            stages.append(("delay", size / deser))
            return stages
        fill = sourcing.pipeline_fill_s(
            size / bw, size / self.net.capacity[pcie], size / deser, st.pipeline_chunks
        )
        stages.append(("fetch", f))
        stages.append(("fetched", source))
        stages.append(("delay", fill))
        return stages

    def _plan_prefetch(self, p: Prefetch, m: int, h: int, source: str) -> list:
        f = self._plan_fetch(p, m, h, source, (), math.inf)
        return [("delay", self.cfg.cloud.ttfb_s if source == "cloud" else 0.0), ("fetch", f)]

    # ---------------------------------------------------------------- stage runner ----
    def _run_stages(self, obj, t: float) -> None:
        """Run ``obj``'s stages from its current one until one has to wait (an event or a
        transfer), or to the end (:meth:`_loaded`)."""
        stages = obj.stages
        n = len(stages)
        i = obj.stage_idx
        while i < n:
            kind, arg = stages[i]
            if kind == "delay":
                # Consecutive delays (sandbox, runtime init, first byte) end at one event, at
                # the time their own events would have reached: ((t + a) + b) + c.
                t_end = t + arg if arg > 0 else t
                while i + 1 < n and stages[i + 1][0] == "delay":
                    i += 1
                    d = stages[i][1]
                    if d > 0:
                        t_end = t_end + d
                if t_end > t:
                    obj.stage_idx = i
                    self.events.push(t_end, _STAGE_DONE, (obj, obj.token))
                    return
            elif kind == "fetch":
                obj.stage_idx = i
                self._start_fetch(obj, arg, t)
                return
            elif kind == "transfer":
                obj.stage_idx = i
                links, size, cap = arg
                obj.tids = (self.net.start(t, links, size, cap, payload=(obj, obj.token)).tid,)
                obj.waiting = 1
                return
            else:  # fetched
                obj.stage_idx = i
                self._on_fetched(obj.model, obj.host, arg, t, obj.relayed)
            i += 1
        obj.stage_idx = i
        self._loaded(obj, t)

    def _advance_stage(self, payload, t: float) -> None:
        """A stage's event fired or one of its transfers finished."""
        obj, token = payload
        if obj.token != token:
            return  # cancelled
        if obj.waiting > 1:
            obj.waiting -= 1  # other shards of this stage still moving
            return
        obj.waiting = 0
        if obj.__class__ is FetchGroup:
            self._group_done(obj, t)
            return
        obj.tids = ()
        obj.stage_idx += 1
        if obj.__class__ is Prefetch or obj.state == LOADING:
            self._run_stages(obj, t)

    def _loaded(self, obj, t: float) -> None:
        if obj.__class__ is Prefetch:
            self._prefetch_done(obj, t)
        else:
            self._become_warm(obj, t)

    def _prefetch_done(self, p: Prefetch, t: float) -> None:
        self._release(p)
        self.prefetches.remove(p)
        self.prefetch_count[p.model, p.host] -= 1
        self.version += 1
        self.prefetches_done += 1
        # Same landing as a cold start's fetch (accounting, memory copy, disk copy from cloud).
        self._on_fetched(p.model, p.host, p.source, t, p.relayed)
        if p.pin:
            self.cache_keep(p.model, p.host, True)

    def _on_fetched(self, m: int, h: int, tier: str, t: float, relayed: bool = False) -> None:
        """Weights of ``m`` reached host ``h`` from ``tier``: count the bytes the tier sent (not
        again for a copy relayed from another receiver) and keep copies where configured."""
        if not relayed:
            self.gb_by_tier[tier] += self.sizes[m]
            if tier == "cloud":
                self.egress_gb += self.sizes[m]
                self.egress_gb_by_model[m] += self.sizes[m]
        if not self.cfg.features.host_cache:
            return
        mem = self.mem[h]
        if tier != "local_mem" and mem.can_fit(m):
            if m in mem.entries:
                self._mem_change(lambda: mem.insert(m, t))
            else:  # (admitted by can_fit just now: insert without asking again)
                self._mem_change(lambda: mem._insert_new(m, t))
        if tier == "cloud" and self.cfg.hosts[h].has_disk and self.disk[h].can_fit(m):
            self.disk[h].insert(m, t)
            self.version += 1

    # ------------------------------------------------------------- instance states ----
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
        before = int(self.n_serving[m])
        after = self.n_serving[m] = before + delta
        if before == 0 and after > 0:
            self.warm_since[m] = t
            if self.n_cpu:
                self.slot_on[m, self.G :] = 0
        elif before > 0 and after == 0:
            self.warm_since[m] = np.inf
            if self.n_cpu:
                self.slot_on[m, self.G :] = 1
                np.maximum(self.slot_free[m, self.G :], t, out=self.slot_free[m, self.G :])

    def _drain(self, inst: Instance) -> None:
        """A busy instance finishes its batch and takes no more (torn down by :meth:`_reap`)."""
        inst.state = DRAINING
        self.n_draining += 1
        self.version += 1
        inst.drain_s = self.now
        self.slot_on[inst.model, inst.gpu] = 0
        self._set_serving(inst.model, -1, self.now)

    def _teardown(self, inst: Instance, t: float) -> None:
        m = inst.model
        if inst.state == WARM:
            self._set_serving(m, -1, t)
        if inst.state == DRAINING:
            self.n_draining -= 1
        if inst.state == LOADING:
            self.n_loading[m] -= 1
            inst.token += 1
            if inst.group is not None:
                self._leave_group(inst, self.now)
            for tid in inst.tids:
                self.net.cancel(self.now, tid)
            inst.tids = ()
            self._release(inst)
        self.slot_on[m, inst.gpu] = 0
        inst.state = DEAD
        self.version += 1
        self._close_gpu_time(inst, t)
        self.gpu_instance[inst.gpu] = None
        self.free_per_host[inst.host] += 1
        self.instances[m].remove(inst)

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

    def loading_wait_s(self, h: int) -> float:
        """Estimated remaining time of the cold starts in progress on host ``h`` (uncontended)."""
        return self.loading_waits()[h]

    def loading_waits(self) -> list[float]:
        """:meth:`loading_wait_s` of every host, in one pass over the instances."""
        wait = [0.0] * len(self.cfg.hosts)
        now = self.now
        for insts in self.instances:
            for inst in insts:
                if inst.state == LOADING:
                    h = inst.host
                    total = self.estimate_load_s(inst.model, h, inst.source)
                    wait[h] += max(0.0, inst.created_s + total - now)
        return wait

    # ------------------------------------------------------------- reads and locks ----
    def _lock(self, obj, cache: ModelCache, model: int, host: int | None = None) -> None:
        """``obj``'s load reads ``model``'s copy in ``cache`` (sent by ``host``'s NIC if set)."""
        cache.add_reader(model, 1)
        cache.touch(model, self.now)
        obj.locks.append((cache, model, host))
        self.version += 1
        if host is not None:
            self._out_transfers[host] += 1

    def _release(self, obj) -> None:
        if not obj.locks:
            return  # (nothing read: nothing changes)
        for cache, model, host in obj.locks:
            if model in cache.entries:
                cache.add_reader(model, -1)
            if host is not None:
                self._out_transfers[host] -= 1
        obj.locks = []
        self.version += 1

    def _jitter(self, x: float) -> float:
        cv = self.cfg.startup.jitter_cv
        if cv <= 0 or x <= 0:
            return x
        s2 = math.log1p(cv * cv)
        return x * float(self.rng.lognormal(-s2 / 2, math.sqrt(s2)))
