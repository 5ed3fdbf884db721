"""The v1 observation (:mod:`envs.layout`), built with as little work per step as it allows.

Simulated time stands still within a control interval (it advances after the last model's
step), so every model's demand features (rates, queue, oldest wait, time since the last request,
idle-time statistics and histogram windows, time since the policy's last scaling), the time of day and the episode's progress are computed once per interval
for all models, compiled (:func:`envs.step_kernel.demand_features`). The placement-state
features (instances, copies, load time, standing rules) of a model, and the cluster's free GPUs
and cache, are recomputed only when ``Simulator.version`` has moved since they were filled (an
action changed the placement state). ``tests/test_env_fastpath.py`` checks every step against a
plain recomputation from the simulator's public queries.
"""

from __future__ import annotations

import math

import numpy as np

from . import layout as L
from .sim.config import PLACEMENT_RULES
from .sim.fastcall import BoundKernels, bind
from .stats import IDLE_FEATURES
from .step_kernel import demand_features, model_row

_DEMAND = np.array(
    [L.F[k] for k in ("rate_step", "rate_1min", "rate_10min", "queue", "oldest_wait",
                      "since_last", *IDLE_FEATURES)], dtype=np.int64,
)  # fmt: skip
# The placement-state features, filled together: two contiguous runs of the layout.
_STATE = ("warm_idle", "warm_busy", "loading", "mem_copies", "pinned_copies", "load_time")
_RULES = (*(f"rule_{r}" for r in PLACEMENT_RULES), "rule_cloud")
_S0, _R0 = L.F[_STATE[0]], L.F[_RULES[0]]
assert tuple(L.MODEL_FEATURES[_S0 : _S0 + len(_STATE)]) == _STATE
assert tuple(L.MODEL_FEATURES[_R0 : _R0 + len(_RULES)]) == _RULES
_LOAD_TIME = L.F["load_time"]
assert _LOAD_TIME == _S0 + 5  # state_features fills the five before it
_FREE_GPUS, _FREE_CACHE = L.C["free_gpus"], L.C["free_cache"]
# model_row's columns: state, load time, the rules' one-hot (start, placement rules), cluster.
_ROW_COLS = np.array([_S0, _LOAD_TIME, _R0, len(PLACEMENT_RULES), _FREE_GPUS, _FREE_CACHE],
                     dtype=np.int64)  # fmt: skip
_RULE_INDEX = {r: i for i, r in enumerate(PLACEMENT_RULES)}
_CLOCK = np.array([L.C["tod_sin"], L.C["tod_cos"], L.C["episode_progress"]], dtype=np.int64)
_FOCUS = L.C["focus"]
N_MODEL = len(L.MODEL_FEATURES)


class Observer(BoundKernels):
    """Every model's observation row of one env, kept current as the simulator changes.

    Call :meth:`new_interval` whenever simulated time has moved (reset, each interval's end);
    :meth:`observation` then gives a model's observation at any step of the interval.
    """

    def __init__(self, cfg, n_steps: int) -> None:
        self.M, self.G = len(cfg.models), cfg.n_gpus
        self.n_steps = n_steps
        max_mem = max(h.gpu_mem_gb for h in cfg.hosts)
        self.slo = np.array([m.slo_s for m in cfg.models], dtype=np.float64)
        self.cache_cap = float(sum(h.cache_gb for h in cfg.hosts))
        self.mat = np.zeros((self.M, L.N_OBS), dtype=np.float32)
        self.mat[:, L.F["slo"]] = self.slo / 5.0
        self.mat[:, L.F["size"]] = [m.size_gb / max_mem for m in cfg.models]
        self._row_version = [-1] * self.M
        self._cluster_version = -1
        self._clock = np.zeros(len(_CLOCK))  # new_interval's time of day and progress
        self._sim = None  # the simulator whose arrays _args holds (model_row's inputs)
        self._stats = None  # and its statistics (demand_features' inputs)
        self._args = ()

    def _bind_kernels(self) -> None:
        """model_row and demand_features for the simulator and statistics last seen, called
        without numba's dispatch (:mod:`envs.sim.fastcall`)."""
        sim, stats = self._sim, self._stats
        if sim is None:
            return
        self._args = (sim.slot_on, sim.slot_free, sim.n_loading, sim.mem_used,
                      *sim.best_load_args())  # fmt: skip
        self._k_row = bind(model_row, self.mat, 0, _ROW_COLS, False, 0.0, self.G, self.cache_cap,
                           0, False, *self._args)  # fmt: skip
        if stats is not None:
            self._k_demand = bind(demand_features, self.mat, _DEMAND, stats.rates, sim.arrived,
                                  sim.head, sim.offsets, sim.arrivals, 0.0, self.slo,
                                  stats.idle_features, L.OBS_HIGH, _CLOCK, self._clock)  # fmt: skip

    def new_interval(self, sim, stats, t: int, tod_s: float) -> None:
        """Simulated time is now ``sim.now``, interval ``t`` of the episode, ``tod_s`` seconds
        into the (trace's) day: recompute the demand features, mark the rest stale."""
        tod = 2 * math.pi * (tod_s % 86400.0) / 86400.0
        clock = self._clock
        clock[0] = 0.5 + 0.5 * math.sin(tod)
        clock[1] = 0.5 + 0.5 * math.cos(tod)
        clock[2] = t / self.n_steps
        if sim is not self._sim or stats is not self._stats:
            self._sim, self._stats = sim, stats
            self._bind_kernels()
        self._k_demand(self.mat, _DEMAND, stats.rates, sim.arrived, sim.head, sim.offsets,
                       sim.arrivals, sim.now, self.slo, stats.idle_features, L.OBS_HIGH, _CLOCK,
                       clock)  # fmt: skip
        self._row_version = [-1] * self.M
        self._cluster_version = -1

    def row(self, sim, m: int) -> np.ndarray:
        """Model ``m``'s row now (a view into the matrix; the focus entry is not set)."""
        v = sim.version
        stale_cluster = self._cluster_version != v
        if stale_cluster or self._row_version[m] != v:
            if sim is not self._sim:  # (its arrays change in place, never rebound)
                self._sim = sim
                self._bind_kernels()
            self._k_row(self.mat, m, _ROW_COLS, stale_cluster, sim.now, self.G, self.cache_cap,
                        _RULE_INDEX[sim.rule_placement[m]], sim.rule_source[m] == "cloud",
                        *self._args)  # fmt: skip
            self._row_version[m] = self._cluster_version = v
        return self.mat[m]

    def observation(self, sim, m: int) -> np.ndarray:
        """The observation with model ``m`` focused: float32 ``(N_OBS,)``, a new array."""
        out = self.row(sim, m).copy()
        out[_FOCUS] = m / self.M
        return out
