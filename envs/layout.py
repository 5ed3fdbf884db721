"""The action and observation layouts of ``coldstart/ServerlessGPU-v1``, defined once.

The env, the reference policies, the wrappers and the tests import these names; nothing else
spells out an index.

**Action** (one focused model per step, see :class:`envs.env.ServerlessGPUEnv`): a single
``Discrete(n)`` index over the product of four entries, in this order (the last varies fastest):

| entry | choices |
|---|---|
| scale | the scenario's ``scale_deltas`` (default -4, -1, 0, +1, +2, +4) |
| placement | ``keep`` (the model's standing rule), then ``PLACEMENT_RULES`` |
| source | ``keep``, ``nearest`` (the sourcing rule's nearest copy), ``cloud`` |
| cache | ``release``, ``hold``, ``keep``, ``prefetch`` |

A placement or source choice other than ``keep`` becomes the model's standing rule: it applies
to this step's scale-out *and* to the platform's own cold starts of the model from then on.

**Observation**: ``MODEL_FEATURES`` of the focused model, then ``CLUSTER_FEATURES``; every
feature is in ``[0, OBS_HIGH]``.
"""

from __future__ import annotations

import numpy as np

from .sim.config import PLACEMENT_RULES

PLACEMENT_CHOICES = ("keep", *PLACEMENT_RULES)
SOURCE_CHOICES = ("keep", "nearest", "cloud")
CACHE_CHOICES = ("release", "hold", "keep", "prefetch")
ENTRIES = ("scale", "placement", "source", "cache")

MODEL_FEATURES = (
    "rate_step",  # log1p(arrivals/s over the last step)
    "rate_1min",  # log1p(EMA of arrivals/s, 1-minute time constant)
    "rate_10min",  # log1p(EMA of arrivals/s, 10-minute time constant)
    "queue",  # log1p(requests waiting)
    "oldest_wait",  # oldest waiting request's wait / SLO, clipped to [0, 10], / 10
    "warm_idle",  # warm idle instances / GPUs in the cluster
    "warm_busy",  # warm busy instances / GPUs
    "loading",  # instances in a cold start / GPUs
    "mem_copies",  # hosts holding the model in memory / hosts
    "pinned_copies",  # of those, pinned by the policy / hosts
    "load_time",  # Simulator.best_load_s (its standing rules' tier) / 60 s, clipped to 5
    "slo",  # SLO / 5 s
    "size",  # weights size / largest GPU memory
    "since_last",  # log1p(seconds since the model's last arrival), clipped
    "idle_p5",  # log1p(5th percentile of the model's idle times, s): histogram's pre-warm
    "idle_p99",  # log1p(99th percentile of idle times, s): histogram's keep-alive
    "idle_count",  # log1p(idle times recorded)
    "idle_now",  # log1p(seconds since the last active interval ended; 4 h if never active)
    "hold_left",  # log1p(seconds left of histogram's keep-alive window; 0 outside it)
    "prewarm_in",  # log1p(seconds until histogram's pre-warm window opens; 0 once open)
    "since_scale_out",  # log1p(seconds since this policy last scaled the model out; 4 h cap)
    "since_scale_in",  # log1p(seconds since it last scaled the model in; 4 h cap)
    *(f"rule_{r}" for r in PLACEMENT_RULES),  # one-hot standing placement rule
    "rule_cloud",  # 1 if the standing source rule is cloud storage
)
CLUSTER_FEATURES = (
    "free_gpus",  # free GPUs / GPUs
    "free_cache",  # free host memory / cache capacity
    "tod_sin",  # time of day, shifted to [0, 1]
    "tod_cos",
    "episode_progress",  # elapsed fraction of the episode
    "focus",  # focused model's index / models: position within the control interval
)
OBS_HIGH = 25.0  # log1p features are clipped here
F = {name: i for i, name in enumerate(MODEL_FEATURES)}
C = {name: len(MODEL_FEATURES) + i for i, name in enumerate(CLUSTER_FEATURES)}
N_OBS = len(MODEL_FEATURES) + len(CLUSTER_FEATURES)


class ActionLayout:
    """Index arithmetic of the v1 action for one scenario's ``scale_deltas``.

    Attributes:
        deltas: Scale deltas, shape ``(nd,)``.
        nvec: Choices per entry ``(nd, placements, sources, caches)``.
        n: Number of actions (``prod(nvec)``); noop: the index that changes nothing.
    """

    def __init__(self, deltas) -> None:
        self.deltas = np.asarray(deltas, dtype=np.int64)
        if 0 not in self.deltas:
            raise ValueError(f"scale_deltas must include 0, got {self.deltas.tolist()}")
        self.nvec = np.array(
            [len(self.deltas), len(PLACEMENT_CHOICES), len(SOURCE_CHOICES), len(CACHE_CHOICES)]
        )
        self._dims = tuple(int(k) for k in self.nvec)
        self.n = int(np.prod(self.nvec))
        self.zero_delta = int(np.flatnonzero(self.deltas == 0)[0])
        self.noop = self.encode(self.zero_delta, 0, 0, CACHE_CHOICES.index("hold"))
        # Every index decoded once: rows (scale, placement, source, cache).
        self.table = np.stack(np.unravel_index(np.arange(self.n), tuple(self.nvec)), axis=1)
        self._rows = [tuple(int(x) for x in r) for r in self.table]

    def encode(self, scale: int, placement: int, source: int, cache: int) -> int:
        """Index of the choices (each an index into its entry's choices)."""
        _, n_p, n_s, n_c = self._dims
        for name, c, k in zip(ENTRIES, (scale, placement, source, cache), self._dims, strict=True):
            if not 0 <= c < k:
                raise ValueError(f"{name} choice must be in [0, {k - 1}], got {c}")
        return ((int(scale) * n_p + int(placement)) * n_s + int(source)) * n_c + int(cache)

    def decode(self, a: int) -> tuple[int, int, int, int]:
        """``(scale, placement, source, cache)`` choice indices of action ``a``."""
        return self._rows[a]

    def joint_mask(self, scale_ok: np.ndarray, cache_ok: np.ndarray) -> np.ndarray:
        """Mask of every action from the per-entry masks of scale and cache (placement and
        source choices are always valid), shape ``(n,)``."""
        m = scale_ok[:, None, None, None] & cache_ok[None, None, None, :]
        return np.broadcast_to(m, tuple(self.nvec)).reshape(-1).copy()

    def name(self, a: int) -> str:
        """Readable label, e.g. ``"scale+2 placement=locality source=keep cache=hold"``."""
        s, p, src, c = self.decode(a)
        return (
            f"scale{int(self.deltas[s]):+d} placement={PLACEMENT_CHOICES[p]} "
            f"source={SOURCE_CHOICES[src]} cache={CACHE_CHOICES[c]}"
        )
