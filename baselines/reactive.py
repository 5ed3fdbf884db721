"""The seed paper's three systems: one reactive autoscaler, three data paths.

San Juan & Wong, "Reducing the Cost of GPU Cold Starts in Serverless Deep Learning Inference
Serving" (PerCom Workshops 2023; calibration.md). Only the abstract is public; these policies are
the reconstruction used by the ``paper`` scenario. All three scale the same way (so that the
comparison isolates the data path):

* instances = ``ceil(recent demand / per-instance capacity)``, recent demand = arrivals/s of the
  last step plus the queue cleared within one step, capacity = ``max_batch / gpu_exec_s(max_batch)``;
* scale to zero as soon as a step had no arrival and the queue is empty.
"""

from __future__ import annotations

from .base import DATAPATHS, DataPath, ObsView, ScalingPolicy, reactive_target


class ReactivePolicy(ScalingPolicy):
    """Reactive scaling (see the module docstring) over a configurable data path.

    Args:
        datapath: ``"cloud"``, ``"pool"``, ``"hierarchical"`` or ``"lru"`` (see
            :data:`baselines.base.DATAPATHS`).
        headroom: Multiplies the demand before dividing by capacity (1 = exactly enough).
    """

    name = "reactive"

    def __init__(self, env=None, datapath="hierarchical", headroom: float = 1.0) -> None:
        if not headroom > 0:
            raise ValueError(f"headroom must be > 0, got {headroom!r}")
        self.headroom = float(headroom)
        super().__init__(env, datapath=datapath)

    def targets(self, i: int, view: ObsView, st: dict):
        return reactive_target(view, self.facts, self.headroom)


class Baseline(ReactivePolicy):
    """The paper's baseline: every cold start downloads the model from cloud storage.

    Source: San Juan & Wong 2023 (abstract; calibration.md: "most plausibly: every cold start
    downloads the model from cloud storage"). Reactive scaling (module docstring), source=cloud,
    cache=release every step (no memory pool), placement=least_loaded (blind to locality).
    """

    name = "baseline"

    def __init__(self, env=None, headroom: float = 1.0) -> None:
        super().__init__(env, datapath="cloud", headroom=headroom)


class Pool(ReactivePolicy):
    """Remote memory pooling: models stay in idle hosts' memory across the cluster.

    Source: San Juan & Wong 2023 (abstract: remote memory pooling; the author's prototype used a
    memcached server as the pool). Reactive scaling, cache=prefetch until one host holds a copy
    then keep (pinned), source=nearest (a remote-memory copy beats cloud storage), placement still
    blind to locality (least_loaded).
    """

    name = "pool"

    def __init__(self, env=None, headroom: float = 1.0) -> None:
        super().__init__(env, datapath="pool", headroom=headroom)


class Hierarchical(ReactivePolicy):
    """Hierarchical sourcing with locality-aware autoscaling, over a warm memory pool.

    Source: San Juan & Wong 2023 (abstract: load from the target host's memory, then another
    host's memory through the pool, then cloud storage; scale out onto hosts that already hold the
    model). Reactive scaling, source=nearest (the hierarchical rule), placement=locality,
    cache=prefetch until ``copies`` hosts hold the model, then keep.

    Args:
        copies: Hosts that should hold a pinned copy of every model (default 1; cold starts on
            other hosts add copies of their own as they load).
    """

    name = "hierarchical"

    def __init__(self, env=None, headroom: float = 1.0, copies: int = 1) -> None:
        if not (isinstance(copies, int) and copies >= 1):
            raise ValueError(f"copies must be an integer >= 1, got {copies!r}")
        dp = DATAPATHS["hierarchical"]
        super().__init__(
            env, datapath=DataPath(dp.placement, dp.source, dp.cache, copies), headroom=headroom
        )
