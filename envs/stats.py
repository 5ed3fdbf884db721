"""Per-model demand statistics the v1 observation carries (updated once per control interval).

* arrival rates: the last interval's, and EMAs with 1- and 10-minute time constants;
* the hybrid histogram policy's idle-time histogram (Shahrad et al. ATC 2020, calibration.md:
  1-minute bins over a 4-hour range): at each interval with activity (an arrival, a queue or a
  busy instance) the time since the previous active interval ended is recorded, 0 for
  back-to-back activity, exactly as ``baselines.keepalive.HybridHistogram`` records it, so a
  policy that reads the observation can compute that policy's pre-warm and keep-alive windows.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

BIN_S = 60.0  # Shahrad et al.: 1-minute bins
RANGE_S = 4 * 3600.0  # Shahrad et al.: 4-hour range


class ModelStats:
    """Rates and idle-time histograms of every model of one simulator.

    Attributes:
        rates: ``(3, M)`` req/s: last interval, 1-minute EMA, 10-minute EMA.
        last_arrivals: ``(M,)`` arrivals in the last interval.
        idle_features: ``(M, 3)`` float32: log1p of the 5th and 99th percentile idle time (s,
            bin edges as the histogram policy computes them) and log1p(idle times recorded).
    """

    def __init__(self, sim, step_s: float) -> None:
        M = sim.M
        self.step_s = float(step_s)
        self.rates = np.zeros((3, M))
        self.last_arrivals = np.zeros(M, dtype=np.int64)
        self._prev_arrived = sim.arrived.copy()
        self._t_prev = sim.now
        self.n_bins = int(round(RANGE_S / BIN_S))
        self.bins = np.zeros((M, self.n_bins), dtype=np.int64)
        self.oob = np.zeros(M, dtype=np.int64)
        self.last_active = np.full(M, -1, dtype=np.int64)
        self.k = 0  # intervals seen
        self.idle_features = np.zeros((M, 3), dtype=np.float32)

    def update(self, sim) -> None:
        """Account for the interval that just ended at ``sim.now``."""
        dt = sim.now - self._t_prev
        if dt <= 0:
            return
        self._t_prev = sim.now
        _update(
            dt, self.step_s, self.k, sim.now, sim.arrived, sim.head, sim.slot_free, sim.slot_on,
            sim.G, self._prev_arrived, self.last_arrivals, self.rates, self.bins, self.oob,
            self.last_active, self.idle_features, BIN_S,
        )  # fmt: skip
        self.k += 1

    @staticmethod
    def since_last(sim, m: int) -> float:
        """Seconds since model ``m``'s last arrival (since the run began if none yet)."""
        a = sim.arrived[m]
        return float(sim.now - sim.arrivals[a - 1]) if a > sim.offsets[m] else float(sim.now)


@njit(cache=True, nogil=True)
def _update(dt, step_s, k, now, arrived, head, slot_free, slot_on, n_gpu, prev_arrived,
            last_arrivals, rates, bins, oob, last_active, feats, bin_s):  # fmt: skip
    """:meth:`ModelStats.update` compiled (it runs every interval, warm-up included)."""
    M, n_bins = bins.shape
    a1 = 1.0 - math.exp(-dt / 60.0)
    a2 = 1.0 - math.exp(-dt / 600.0)
    for m in range(M):
        n = arrived[m] - prev_arrived[m]
        prev_arrived[m] = arrived[m]
        last_arrivals[m] = n
        r = n / dt
        rates[0, m] = r
        rates[1, m] += a1 * (r - rates[1, m])
        rates[2, m] += a2 * (r - rates[2, m])
        busy = False
        for g in range(n_gpu):
            if slot_on[m, g] == 1 and slot_free[m, g] > now:
                busy = True
                break
        if not (n > 0 or head[m] < arrived[m] or busy):
            continue
        if last_active[m] >= 0:
            idle = (k - last_active[m] - 1) * step_s
            b = int(idle // bin_s)
            if b < n_bins:
                bins[m, b] += 1
            else:
                oob[m] += 1
            total = 0
            for j in range(n_bins):
                total += bins[m, j]
            if total > 0:
                head_bin = tail_bin = -1
                c = 0
                for j in range(n_bins):
                    c += bins[m, j]
                    if head_bin < 0 and c / total >= 0.05 - 1e-12:
                        head_bin = j
                    if c / total >= 0.99 - 1e-12:
                        tail_bin = j
                        break
                feats[m, 0] = math.log1p(head_bin * bin_s)
                feats[m, 1] = math.log1p((tail_bin + 1) * bin_s)
            feats[m, 2] = math.log1p(total + oob[m])
        last_active[m] = k
