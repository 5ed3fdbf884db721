"""The reactive scaling rule, and the reference policy that plays an episode's warm-up.

An episode of ``coldstart/ServerlessGPU-v1`` starts where a running platform would be: the part
of the workload just before the window (``Scenario.warmup_s``) is played under
:class:`WarmupPolicy`, and only then does the measured window open. The policy is documented
and deliberately plain, the state of practice the agent inherits:

* the platform's activator (``FeatureSpec.autostart``) starts an instance for a model with
  requests and none running, at the model's standing rules (the scenario defaults);
* every control interval, each model is scaled to the largest :func:`reactive_target` of the
  last ``keep_alive_s`` (600 s, AWS Lambda's fixed keep-alive, Shahrad et al. ATC 2020 in
  calibration.md): scale out to demand, release an instance once it has been unneeded that long;
* memory copies are left to the hosts' LRU caches (every fetch leaves one).

This is the ``keepalive`` reference policy's rule (``baselines.keepalive.KeepAlive``) acting on
the simulator directly; both use :func:`reactive_target`.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

KEEP_ALIVE_S = 600.0  # AWS Lambda's fixed keep-alive (calibration.md, Shahrad et al. ATC 2020)


def capacity_rps(models) -> np.ndarray:
    """Requests/s one instance of each model serves at full batches, shape ``(M,)``."""
    return np.array([m.max_batch / m.gpu_exec_s(m.max_batch) for m in models])


@njit(cache=True, nogil=True)
def reactive_target(rate_rps, queue, step_s, capacity, n_gpus, headroom=1.0):
    """Instances needed for recent demand: ``ceil((rate + queue / step_s) * headroom / capacity)``.

    ``rate`` is the arrival rate of the last step (req/s, shape ``(M,)``) and ``queue / step_s``
    the rate that clears the backlog within one step; zero demand gives 0 instances. Clipped to
    ``[0, n_gpus]``. Compiled: the warm-up calls it every interval; Python callers pass arrays.
    """
    out = np.zeros(rate_rps.shape[0], dtype=np.int64)
    for m in range(rate_rps.shape[0]):
        need = math.ceil((rate_rps[m] + queue[m] / step_s) * headroom / capacity[m] - 1e-9)
        out[m] = min(max(need, 0), n_gpus)
    return out


@njit(cache=True, nogil=True)
def _warm_targets(arrivals, arrived, head, step_s, capacity, n_gpus, window, k, n_serving,
                  n_loading, target, changed):  # fmt: skip
    """Push this interval's reactive target (``arrivals`` of the last step, the queues
    ``arrived - head``) into the ring buffer ``window`` (row ``k % n``); ``target`` = the
    buffer's largest target per model, ``changed[:n]`` = the models (in order) whose target
    differs from their instances (warm or loading). Returns ``n``."""
    M = arrivals.shape[0]
    rate = np.empty(M)
    queue = np.empty(M)
    for m in range(M):
        rate[m] = arrivals[m] / step_s
        queue[m] = arrived[m] - head[m]
    window[k % window.shape[0]] = reactive_target(rate, queue, step_s, capacity, n_gpus, 1.0)
    n = 0
    for m in range(M):
        best = window[0, m]
        for i in range(1, window.shape[0]):
            if window[i, m] > best:
                best = window[i, m]
        target[m] = best
        if best != n_serving[m] + n_loading[m]:
            changed[n] = m
            n += 1
    return n


class WarmupPolicy:
    """:func:`reactive_target` held for ``keep_alive_s``, applied through ``Simulator.set_target``."""

    def __init__(self, sim, step_s: float, keep_alive_s: float = KEEP_ALIVE_S) -> None:
        self.sim = sim
        self.step_s = float(step_s)
        self.capacity = capacity_rps(sim.cfg.models)
        n = max(1, math.ceil(keep_alive_s / step_s - 1e-9) + 1)
        self.window = np.zeros((n, sim.M), dtype=np.int64)  # ring buffer of the last n targets
        self.k = 0
        self._target = np.zeros(sim.M, dtype=np.int64)  # _warm_targets' outputs
        self._changed = np.zeros(sim.M, dtype=np.int64)

    def act(self, arrivals_last_step: np.ndarray) -> None:
        sim = self.sim
        n = _warm_targets(
            arrivals_last_step, sim.arrived, sim.head, self.step_s, self.capacity, sim.G,
            self.window, self.k, sim.n_serving, sim.n_loading, self._target, self._changed,
        )  # fmt: skip
        self.k += 1
        if n:
            target = self._target.tolist()
            for m in self._changed[:n].tolist():
                sim.set_target(m, target[m], placement=sim.rule_placement[m])
