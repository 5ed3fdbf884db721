"""A clairvoyant reference: scaling that knows every model's future arrivals.

Not a heuristic an operator could run, and not one of the nine reference policies (``all``
leaves it out; neither a study's "best heuristic" nor a teacher is ever drawn from it). It
exists to measure *headroom*: how much better than the best heuristic a policy with perfect
knowledge of arrival times does on the same windows, and so how large a margin a learned
policy (which sees only the observation) could at most hope to find through prediction alone.

It is a lower bound on that headroom, not an optimum: it plans one model at a time with
uncontended load times, at the env's control interval. Where it gains little over the best
heuristic, a learned agent has little to find; where it gains much, the gap is a prediction
problem the observation may or may not allow.

Exact arrival times include what no policy could predict: a trace of per-minute counts is laid
out within each minute at random (``subminute: uniform``). With ``resolution_s=60`` the policy
knows only what the trace knows, each minute's count: it keeps an instance through a minute
whose requests have not all arrived, and pre-warms for the start of the next minute with any.
"""

from __future__ import annotations

import math

import numpy as np

from .base import ObsView, ScalingPolicy, reactive_target


class Hindsight(ScalingPolicy):
    """Pre-warm just in time for the next request, scale in whenever the idle gap pays for a
    reload; scale out ahead of the demand of the interval a new instance would first serve.

    Per model and control interval, with ``g`` the time to the model's next arrival and ``L``
    the uncontended cold start (``Simulator.best_load_s``) stretched by ``load_margin`` plus
    ``lead_steps`` control intervals of slack (a decision waits for the next interval):

    * while requests wait or an instance is busy: the reactive target (at least 1), as
      ``histogram`` does while active;
    * otherwise one instance if ``g <= L``, else none (scale in: the reload a later
      pre-warm pays costs less GPU time than holding the instance through the gap);
    * and never fewer than the instances the arrivals of ``[now + L, now + L + step)`` need at
      full batches (the demand a scale-out started now first meets).

    Data path: ``hierarchical``'s (locality placement, nearest copy, warm pool), as
    ``histogram``'s, so the two differ in when instances exist alone.

    Args:
        load_margin: Factor on the uncontended load time (link contention, start-up stages).
        lead_steps: Control intervals of slack added to the load time.
        resolution_s: 0: exact arrival times; else the arrivals are known only as counts per
            bin of this many workload (trace) seconds, bins aligned with the workload's clock.
        datapath: See :data:`baselines.base.DATAPATHS`.
        name: The name results show it under.
    """

    name = "hindsight"
    privileged = True

    def __init__(self, env=None, load_margin: float = 1.25, lead_steps: float = 2.0,
                 resolution_s: float = 0.0, datapath="hierarchical", name: str = "hindsight",
                 ) -> None:  # fmt: skip
        if not (math.isfinite(load_margin) and load_margin >= 1.0):
            raise ValueError(f"load_margin must be a finite number >= 1, got {load_margin!r}")
        if not (math.isfinite(lead_steps) and lead_steps >= 0.0):
            raise ValueError(f"lead_steps must be a finite number >= 0, got {lead_steps!r}")
        if not (math.isfinite(resolution_s) and resolution_s >= 0.0):
            raise ValueError(f"resolution_s must be a finite number >= 0, got {resolution_s!r}")
        self.load_margin, self.lead_steps = float(load_margin), float(lead_steps)
        self.resolution_s = float(resolution_s)
        self.name = str(name)
        super().__init__(env, datapath=datapath)

    def _bins(self, i: int) -> tuple[float, float]:
        """``(origin, width)`` of the knowledge bins in simulated seconds (width 0: exact)."""
        env = self.env(i)
        ts = float(env.scenario.time_scale)
        if self.resolution_s == 0.0:
            return 0.0, 0.0
        # Simulated second t replays workload second start_s + (t - warmup_s) * ts.
        w0 = float(env.start_s) - float(env.warmup_s) * ts
        width = self.resolution_s / ts
        return -(w0 % self.resolution_s) / ts, width

    def targets(self, i: int, view: ObsView, st: dict) -> np.ndarray:
        sim, f = self.sim(i), self.facts
        now, step_s = float(sim.now), f.step_s
        origin, width = self._bins(i)
        out = reactive_target(view, f)
        for m in range(f.M):
            arr = sim.workload.arrivals_s[m]
            nxt = int(np.searchsorted(arr, now, side="right"))
            lead = self.load_margin * sim.best_load_s(m) + self.lead_steps * step_s
            if nxt >= arr.size:
                wait = math.inf
            elif width == 0.0:
                wait = arr[nxt] - now
            else:  # the next arrival's bin: now if it is this bin, else that bin's start
                b = origin + math.floor((arr[nxt] - origin) / width) * width
                wait = max(b - now, 0.0)
            if view.queue[m] > 0 or view.busy[m] > 0 or wait <= lead:
                out[m] = max(out[m], 1)
            else:
                out[m] = 0
            # The demand an instance started now first serves (a bin's count spread over it).
            t0, t1 = now + lead, now + lead + step_s
            if width > 0.0:
                b0 = origin + math.floor((t0 - origin) / width) * width
                lo, hi = np.searchsorted(arr, (b0, b0 + width), side="left")
                rate = (hi - lo) / width
            else:
                lo, hi = np.searchsorted(arr, (t0, t1), side="right")
                rate = (hi - lo) / step_s
            need = math.ceil(rate / f.capacity_rps[m] - 1e-9)
            out[m] = min(max(out[m], need), f.G)
        return out
