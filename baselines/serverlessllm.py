"""ServerlessLLM's startup-time-optimised placement."""

from __future__ import annotations

from .base import FASTEST, ObsView, ScalingPolicy, get_datapath, reactive_target


class ServerlessLLM(ScalingPolicy):
    """Startup-time-optimised placement: each new instance goes to the host that can serve soonest.

    Source: Fu et al., "ServerlessLLM: Low-Latency Serverless Inference for Large Language
    Models" (OSDI 2024): the scheduler estimates, per server, the time to load the model from the
    fastest tier holding it plus the wait behind the loads already queued on that server, and
    picks the minimum. That is the simulator's ``fastest`` placement rule
    (``Simulator.loading_wait_s`` + ``estimate_load_s``), which this policy sets as every model's
    standing rule, so the platform's own cold starts follow it too. (In v0 it read the simulator
    and named hosts; v1 offers the rule to every policy, so it is no longer privileged.)

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

    def __init__(self, env=None, datapath="hierarchical", headroom: float = 1.0) -> None:
        self.headroom = float(headroom)
        dp = get_datapath(datapath)
        super().__init__(env, datapath=type(dp)(FASTEST, dp.source, dp.cache, dp.copies))

    def targets(self, i: int, view: ObsView, st: dict):
        return reactive_target(view, self.facts, self.headroom)
