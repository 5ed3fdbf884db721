"""Keep-alive policies of FaaS platforms: a fixed keep-alive and Shahrad et al.'s hybrid histogram.

Both scale out reactively (:func:`baselines.base.reactive_target`) and differ in when they let
instances go. Their data path defaults to ``"hierarchical"`` so that they compare with the
``hierarchical`` policy on scaling alone; pass ``datapath="cloud"`` to compare with ``baseline``.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from envs import stats as S

from .base import ObsView, ScalingPolicy, reactive_target


class KeepAlive(ScalingPolicy):
    """Fixed keep-alive: scale up on demand, remove an instance once it has been idle
    ``keep_alive_s``.

    Source: calibration.md (Shahrad et al. ATC 2020: fixed keep-alive was 10 minutes on AWS Lambda
    and 20 minutes on Azure Functions at the time). At step granularity "instance k has been idle
    keep_alive_s" is "fewer than k instances were needed over the last keep_alive_s", so the
    target is the largest reactive target over a sliding window of ``ceil(keep_alive_s / step_s)``
    steps.

    Args:
        keep_alive_s: Idle time before an instance is removed (600 = AWS Lambda, 1200 = Azure).
        datapath: See :data:`baselines.base.DATAPATHS`.
    """

    name = "keepalive"

    def __init__(self, env=None, keep_alive_s: float = 600.0, datapath="hierarchical") -> None:
        if not keep_alive_s >= 0:
            raise ValueError(f"keep_alive_s must be >= 0, got {keep_alive_s!r}")
        self.keep_alive_s = float(keep_alive_s)
        super().__init__(env, datapath=datapath)

    def new_state(self) -> dict:
        n = max(1, math.ceil(self.keep_alive_s / self.facts.step_s - 1e-9) + 1)
        return {"window": deque(maxlen=n)}

    def targets(self, i: int, view: ObsView, st: dict):
        st["window"].append(reactive_target(view, self.facts))
        return np.max(np.stack(st["window"]), axis=0)


class HybridHistogram(ScalingPolicy):
    """Shahrad et al.'s hybrid histogram policy (ATC 2020), per model.

    Source: calibration.md's summary of "Serverless in the Wild" (ATC 2020) and the open
    re-implementation osukhoroslov/dslab (``hybrid_histogram.rs``), whose window arithmetic this
    follows. Per model, a histogram of idle times with ``bin_s`` (1 minute) bins over ``range_s``
    (4 hours):

    * an idle time is recorded at each step with activity (arrivals, a queue or a busy instance):
      the time since the previous active step ended (0 for consecutive active steps), in the
      step's resolution;
    * representative histogram (coefficient of variation of the bin counts >= ``cv_threshold``):
      pre-warm window = 5th-percentile bin x ``bin_s`` x (1 - 10%), keep-alive window =
      (99th-percentile bin + 1) x ``bin_s`` x (1 + 10%);
    * not representative (CV < 2, which includes an empty histogram): pre-warm 0, keep-alive =
      ``range_s``;
    * at least half of the idle times out of range: the paper predicts the next idle time with
      ARIMA (15% margin). Simplification: the prediction is the last idle time ``x``, pre-warm
      ``0.85 x``, keep-alive ``2 * 0.15 x`` (dslab's windows around an ARIMA forecast).

    After activity ends, one instance is kept loaded while the idle time ``d`` since the last
    active step lies in ``[pre-warm, pre-warm + keep-alive)`` (with pre-warm > 0 the instance is
    unloaded at once and loaded again at the pre-warm time). While active, scaling is reactive
    (at least one instance). The pre-warm load is not started early to hide the cold start.

    Args:
        bin_s, range_s, cv_threshold, margin, oob_threshold, arima_margin: As above.
        datapath: See :data:`baselines.base.DATAPATHS`.
    """

    name = "histogram"

    def __init__(
        self,
        env=None,
        bin_s: float = S.BIN_S,
        range_s: float = S.RANGE_S,
        cv_threshold: float = S.CV_THRESHOLD,
        margin: float = S.MARGIN,
        oob_threshold: float = S.OOB_THRESHOLD,
        arima_margin: float = S.ARIMA_MARGIN,
        datapath="hierarchical",
    ) -> None:
        if not (bin_s > 0 and range_s >= bin_s):
            raise ValueError(f"need 0 < bin_s <= range_s, got bin_s={bin_s!r}, range_s={range_s!r}")
        self.bin_s, self.range_s = float(bin_s), float(range_s)
        self.n_bins = int(round(range_s / bin_s))
        self.cv_threshold, self.margin = float(cv_threshold), float(margin)
        self.oob_threshold, self.arima_margin = float(oob_threshold), float(arima_margin)
        super().__init__(env, datapath=datapath)

    def new_state(self) -> dict:
        M = self.facts.M
        return {
            "bins": np.zeros((M, self.n_bins), dtype=np.int64),
            "oob": np.zeros(M, dtype=np.int64),
            "last_idle_s": np.zeros(M),
            "last_active": np.full(M, -1, dtype=np.int64),  # step index, -1 = never
        }

    def record(self, st: dict, m: int, idle_s: float) -> None:
        b = int(idle_s // self.bin_s)
        if b < self.n_bins:
            st["bins"][m, b] += 1
        else:
            st["oob"][m] += 1
        st["last_idle_s"][m] = idle_s

    def windows(self, st: dict, m: int) -> tuple[float, float]:
        """(pre-warm, keep-alive) in seconds for model ``m`` from its histogram now."""
        return S.histogram_windows(
            st["bins"][m], int(st["oob"][m]), float(st["last_idle_s"][m]), self.bin_s,
            self.range_s, self.cv_threshold, self.margin, self.oob_threshold, self.arima_margin,
        )  # fmt: skip

    def targets(self, i: int, view: ObsView, st: dict):
        t, step_s = st["t"], self.facts.step_s
        out = reactive_target(view, self.facts)
        active = view.active
        for m in range(self.facts.M):
            last = int(st["last_active"][m])
            if active[m]:
                if last >= 0:
                    self.record(st, m, (t - last - 1) * step_s)
                st["last_active"][m] = t
                out[m] = max(out[m], 1)
            elif last >= 0:
                idle_s = (t - last) * step_s
                pre, keep = self.windows(st, m)
                if pre <= idle_s < pre + keep:
                    out[m] = max(out[m], 1)
        return out
