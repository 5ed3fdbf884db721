"""ServerlessLLM's startup-time-optimised placement (privileged: reads the simulator)."""

from __future__ import annotations

import numpy as np

from envs.sim.simulator import LOADING

from .base import ObsView, ScalingPolicy, reactive_target


class ServerlessLLM(ScalingPolicy):
    """Startup-time-optimised placement: each new instance goes to the host that can serve soonest.

    Source: Fu et al., "ServerlessLLM: Low-Latency Serverless Inference for Large Language
    Models" (OSDI 2024): the scheduler estimates, per server, the time to load the model from the
    fastest tier holding it plus the wait behind the loads already queued on that server, and
    picks the minimum. Here: for each model needing instances, every host with a free GPU that
    fits it is scored ``sim.estimate_load_s(m, h)`` (uncontended load from the host's best tier
    under the scenario's sourcing rule) + the remaining estimated time of the cold starts in
    progress on that host; the best host gets as many of the new instances as it has free GPUs
    (the next step places the rest). Privileged: it reads the simulator (load estimates, the
    cold starts in progress); it acts only through explicit-host placement choices.

    Scaling is the reactive rule of :mod:`baselines.reactive` and the data path that of
    ``hierarchical`` (nearest tier, a warm pinned copy of every model in some host's memory,
    standing in for ServerlessLLM's checkpoints pre-stored on the servers' DRAM/SSD tiers), so
    that ``serverlessllm`` vs ``hierarchical`` compares the placement rules alone; pass
    ``datapath="lru"`` to leave the hosts' caches to LRU instead.

    Args:
        datapath: See :data:`baselines.base.DATAPATHS` (its placement is replaced).
        headroom: As in :class:`baselines.reactive.ReactivePolicy`.
    """

    name = "serverlessllm"
    privileged = True

    def __init__(self, env=None, datapath="hierarchical", headroom: float = 1.0) -> None:
        self.headroom = float(headroom)
        super().__init__(env, datapath=datapath)

    def targets(self, i: int, view: ObsView, st: dict):
        return reactive_target(view, self.facts, self.headroom)

    def queue_wait_s(self, sim, h: int) -> float:
        """Estimated remaining time of the cold starts in progress on host ``h``."""
        wait = 0.0
        for insts in sim.instances:
            for inst in insts:
                if inst.state == LOADING and inst.host == h:
                    total = sim.estimate_load_s(inst.model, h, inst.source)
                    wait += max(0.0, inst.created_s + total - sim.now)
        return wait

    def place(self, i, view, mask, st, out) -> None:
        f = self.facts
        sim = self.sim(i)
        n_rules = f.nvec[1] - f.H
        free = np.array([len(sim.free_gpus(h)) for h in range(f.H)])
        queued = np.array([self.queue_wait_s(sim, h) for h in range(f.H)])
        p0 = f.offsets[1]
        for m in range(f.M):
            delta = int(f.deltas[out[m, 0]])
            if delta <= 0:
                continue
            hosts = [h for h in range(f.H) if mask[m, p0 + n_rules + h] and free[h] > 0]
            if not hosts:
                out[m, 0] = f.zero_delta
                continue
            load = {h: sim.estimate_load_s(m, h) for h in hosts}
            h = min(hosts, key=lambda x: (load[x] + queued[x], -free[x], x))
            # The largest available delta that fits this host's free GPUs; if none does (odd
            # scale_deltas), keep the intended one: the env starts what fits.
            n = min(delta, int(free[h]))
            pos = [k for k in range(len(f.deltas)) if 0 < f.deltas[k] <= n and mask[m, k]]
            if pos:
                out[m, 0] = max(pos, key=lambda k: f.deltas[k])
            n = min(int(f.deltas[out[m, 0]]), int(free[h]))
            out[m, 1] = n_rules + h
            free[h] -= n
            queued[h] += n * load[h]
