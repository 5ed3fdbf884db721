"""Knative's Pod Autoscaler (KPA), concurrency mode, at the env's step granularity."""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from .base import ObsView, ScalingPolicy


class KPA(ScalingPolicy):
    """Knative KPA: target concurrency per instance, stable and panic windows, scale to zero.

    Source: calibration.md (Knative's KPA: target concurrency per instance, a 60 s stable window,
    a 6 s panic window, panic when demand exceeds twice the current capacity, scale-to-zero after
    a grace period) and Knative's defaults (target utilisation 70%, max scale-down rate 2,
    scale-to-zero grace period 30 s). Every step:

    * concurrency sample = queued requests + in-service estimate (Little's law: last step's
      arrival rate x the batch-of-one GPU time);
    * stable value = mean of the samples over ``stable_window_s`` (6 steps of 10 s), panic value =
      mean over ``panic_window_s`` (at least one step, so with 10 s steps the last step);
    * desired = ceil(value / (target_concurrency x target_utilization));
    * panic starts when panic value / target >= ``panic_threshold`` x max(ready instances, 1), and
      ends one stable window after that last held; in panic the panic value rules and the count
      never decreases;
    * scale-in removes at most half the ready instances per step (``max_scale_down_rate``);
    * the last instance goes only after the desired count has been 0 for ``scale_to_zero_grace_s``.

    Args:
        target_concurrency: Requests per instance; ``None`` = each model's ``max_batch`` (a GPU
            instance serves a batch at once; Knative's own default is 100 per pod).
        target_utilization: Fraction of the target aimed at (Knative default 0.7).
        stable_window_s, panic_window_s, panic_threshold, max_scale_down_rate,
        scale_to_zero_grace_s: As above.
        datapath: See :data:`baselines.base.DATAPATHS` (default ``"hierarchical"``).
    """

    name = "kpa"

    def __init__(
        self,
        env=None,
        target_concurrency: float | None = None,
        target_utilization: float = 0.7,
        stable_window_s: float = 60.0,
        panic_window_s: float = 6.0,
        panic_threshold: float = 2.0,
        max_scale_down_rate: float = 2.0,
        scale_to_zero_grace_s: float = 30.0,
        datapath="hierarchical",
    ) -> None:
        if target_concurrency is not None and not target_concurrency > 0:
            raise ValueError(f"target_concurrency must be > 0, got {target_concurrency!r}")
        if not 0 < target_utilization <= 1:
            raise ValueError(f"target_utilization must be in (0, 1], got {target_utilization!r}")
        self.target_concurrency = target_concurrency
        self.target_utilization = float(target_utilization)
        self.stable_window_s = float(stable_window_s)
        self.panic_window_s = float(panic_window_s)
        self.panic_threshold = float(panic_threshold)
        self.max_scale_down_rate = float(max_scale_down_rate)
        self.scale_to_zero_grace_s = float(scale_to_zero_grace_s)
        super().__init__(env, datapath=datapath)

    def on_bind(self) -> None:
        f = self.facts
        base = (
            f.max_batch.astype(float)
            if self.target_concurrency is None
            else np.full(f.M, float(self.target_concurrency))
        )
        self._target = base * self.target_utilization
        self._n_stable = max(1, round(self.stable_window_s / f.step_s))
        self._n_panic = max(1, round(self.panic_window_s / f.step_s))

    def new_state(self) -> dict:
        M = self.facts.M
        return {
            "samples": deque(maxlen=self._n_stable),
            "panic_until": np.full(M, -1, dtype=np.int64),  # step index panic lasts to
            "panic_max": np.zeros(M, dtype=np.int64),
            "zero_since": np.full(M, -1, dtype=np.int64),
        }

    def targets(self, i: int, view: ObsView, st: dict):
        f, t = self.facts, st["t"]
        st["samples"].append(view.queue + view.rate_step * f.exec1_s)
        samples = np.stack(st["samples"])
        stable = samples.mean(axis=0)
        panic = samples[-self._n_panic :].mean(axis=0)
        ready = view.ready
        out = np.zeros(f.M, dtype=np.int64)
        for m in range(f.M):
            tgt = self._target[m]
            d_stable = math.ceil(stable[m] / tgt - 1e-9)
            d_panic = math.ceil(panic[m] / tgt - 1e-9)
            if panic[m] / tgt >= self.panic_threshold * max(int(ready[m]), 1):
                if st["panic_until"][m] < t:
                    st["panic_max"][m] = 0
                st["panic_until"][m] = t + self._n_stable
            if st["panic_until"][m] >= t:
                want = max(d_panic, int(st["panic_max"][m]), int(view.instances[m]))
                st["panic_max"][m] = want
            else:
                want = max(d_stable, int(math.floor(ready[m] / self.max_scale_down_rate)))
            if want == 0 and view.instances[m] > 0:
                if st["zero_since"][m] < 0:
                    st["zero_since"][m] = t
                if (t - st["zero_since"][m]) * f.step_s < self.scale_to_zero_grace_s:
                    want = 1
            else:
                st["zero_since"][m] = -1
            out[m] = min(want, f.G)
        return out
