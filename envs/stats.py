"""Per-model demand statistics the v1 observation carries (updated once per control interval).

* arrival rates: the last interval's, and EMAs with 1- and 10-minute time constants;
* the hybrid histogram policy's idle-time histogram (Shahrad et al. ATC 2020, calibration.md:
  1-minute bins over a 4-hour range): at each interval with activity (an arrival, a queue or a
  busy instance) the time since the previous active interval ended is recorded, 0 for
  back-to-back activity, exactly as ``baselines.keepalive.HybridHistogram`` records it, so a
  policy that reads the observation can compute that policy's pre-warm and keep-alive windows;
  the windows themselves (:func:`histogram_windows`, the one definition ``histogram`` uses too)
  and where the model stands in them (``idle_now``, ``hold_left``, ``prewarm_in``);
* the policy's own recent scaling of the model (``since_scale_out``, ``since_scale_in``: seconds
  since the last step whose action scaled it out / in; :meth:`ModelStats.scaled`), so that a
  policy without memory can see that it scaled a model in a moment ago.

Durations are capped at ``RANGE_S`` (the histogram's range: "never" reads as 4 hours).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .sim.fastcall import BoundKernels, bind

BIN_S = 60.0  # Shahrad et al.: 1-minute bins
RANGE_S = 4 * 3600.0  # Shahrad et al.: 4-hour range
# The hybrid histogram policy's parameters (Shahrad et al. ATC 2020; calibration.md).
CV_THRESHOLD = 2.0  # a histogram with a bin-count CV below this is not representative
MARGIN = 0.10  # pre-warm and keep-alive margins
OOB_THRESHOLD = 0.5  # share of out-of-range idle times above which the next one is predicted
ARIMA_MARGIN = 0.15  # margin around that prediction
# Columns of ModelStats.idle_features, in the observation's order (envs.layout).
IDLE_FEATURES = ("idle_p5", "idle_p99", "idle_count", "idle_now", "hold_left", "prewarm_in",
                 "since_scale_out", "since_scale_in")  # fmt: skip


@njit(cache=True, nogil=True)
def histogram_windows(bins, n_out, last_idle_s, bin_s, range_s, cv_threshold, margin,
                      oob_threshold, arima_margin):  # fmt: skip
    """``(pre-warm, keep-alive)`` seconds of the hybrid histogram policy for one model's idle-time
    histogram ``bins`` (counts per ``bin_s`` bin), ``n_out`` idle times out of range and the last
    idle time ``last_idle_s`` (see ``baselines.keepalive.HybridHistogram``)."""
    n_bins = bins.shape[0]
    n_in = 0
    for j in range(n_bins):
        n_in += bins[j]
    if n_in + n_out > 0 and n_out / (n_in + n_out) >= oob_threshold:
        return last_idle_s * (1 - arima_margin), last_idle_s * arima_margin * 2
    if n_in == 0:
        return 0.0, range_s
    mean = n_in / n_bins
    ss = 0.0
    for j in range(n_bins):
        ss += (bins[j] - mean) ** 2
    if math.sqrt(ss / (n_bins - 1)) / mean < cv_threshold:
        return 0.0, range_s
    head, tail = percentile_bins(bins, n_in)
    return head * bin_s * (1 - margin), (tail + 1) * bin_s * (1 + margin)


@njit(cache=True, nogil=True)
def percentile_bins(bins, n_in):
    """The bins holding the 5th and 99th percentile of a histogram of ``n_in`` > 0 counts."""
    head = tail = -1
    c = 0
    for j in range(bins.shape[0]):
        c += bins[j]
        if head < 0 and c / n_in >= 0.05 - 1e-12:
            head = j
        if c / n_in >= 0.99 - 1e-12:
            tail = j
            break
    return head, tail


class ModelStats(BoundKernels):
    """Rates and idle-time histograms of every model of one simulator.

    Attributes:
        rates: ``(3, M)`` req/s: last interval, 1-minute EMA, 10-minute EMA.
        last_arrivals: ``(M,)`` arrivals in the last interval.
        idle_features: ``(M, len(IDLE_FEATURES))`` float32: log1p of the 5th and 99th
            percentile idle time (s, bin edges as the histogram policy computes them),
            log1p(idle times recorded), then log1p of: the idle time now (seconds since the
            last active interval ended; 0 while active, ``RANGE_S`` if never active), what is
            left of the policy's keep-alive window (0 outside it), the time until its pre-warm
            window opens (0 once open), and the seconds since the last scale-out / scale-in.
        windows: ``(M, 2)`` the histogram policy's (pre-warm, keep-alive) seconds now.
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
        self.last_idle_s = np.zeros(M)
        self.windows = np.zeros((M, 2))
        self.windows[:, 1] = RANGE_S  # an empty histogram: pre-warm 0, keep-alive the range
        self.last_scale = np.full((2, M), -np.inf)  # sim time of the last scale-out, scale-in
        self.idle_features = np.zeros((M, len(IDLE_FEATURES)), dtype=np.float32)
        for m in range(M):  # never active, never scaled
            _position(self.idle_features, m, 0, self.step_s, sim.now, self.last_active,
                      self.windows, self.last_scale, RANGE_S)  # fmt: skip
        self._sim_arrays = (sim.arrived, sim.head, sim.slot_free, sim.slot_on)  # (their types)
        self._bind_kernels()

    def _bind_kernels(self) -> None:
        """:func:`_update`, called without numba's dispatch (:mod:`envs.sim.fastcall`)."""
        self._k_update = bind(
            _update, 0.0, self.step_s, 0, 0.0, *self._sim_arrays, 0, self._prev_arrived,
            self.last_arrivals, self.rates, self.bins, self.oob, self.last_active,
            self.idle_features, BIN_S, self.last_idle_s, self.windows, self.last_scale,
        )  # fmt: skip

    def scaled(self, m: int, delta: int, now: float) -> None:
        """The policy's action scaled model ``m`` by ``delta`` at simulated time ``now``."""
        if delta:
            self.last_scale[0 if delta > 0 else 1, m] = now

    def update(self, sim) -> None:
        """Account for the interval that just ended at ``sim.now``."""
        dt = sim.now - self._t_prev
        if dt <= 0:
            return
        self._t_prev = sim.now
        self._k_update(
            dt, self.step_s, self.k, sim.now, sim.arrived, sim.head, sim.slot_free, sim.slot_on,
            sim.G, self._prev_arrived, self.last_arrivals, self.rates, self.bins, self.oob,
            self.last_active, self.idle_features, BIN_S, self.last_idle_s, self.windows,
            self.last_scale,
        )  # fmt: skip
        self.k += 1

    @staticmethod
    def since_last(sim, m: int) -> float:
        """Seconds since model ``m``'s last arrival (since the run began if none yet)."""
        a = sim.arrived[m]
        return float(sim.now - sim.arrivals[a - 1]) if a > sim.offsets[m] else float(sim.now)


@njit(cache=True, nogil=True)
def _update(dt, step_s, k, now, arrived, head, slot_free, slot_on, n_gpu, prev_arrived,
            last_arrivals, rates, bins, oob, last_active, feats, bin_s, last_idle, windows,
            last_scale):  # fmt: skip
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
        if n > 0 or head[m] < arrived[m] or busy:
            if last_active[m] >= 0:
                idle = (k - last_active[m] - 1) * step_s
                b = int(idle // bin_s)
                if b < n_bins:
                    bins[m, b] += 1
                else:
                    oob[m] += 1
                last_idle[m] = idle
                total = 0
                for j in range(n_bins):
                    total += bins[m, j]
                if total > 0:
                    head_bin, tail_bin = percentile_bins(bins[m], total)
                    feats[m, 0] = math.log1p(head_bin * bin_s)
                    feats[m, 1] = math.log1p((tail_bin + 1) * bin_s)
                feats[m, 2] = math.log1p(total + oob[m])
                pre, keep = histogram_windows(bins[m], oob[m], last_idle[m], bin_s,
                                              n_bins * bin_s, CV_THRESHOLD, MARGIN,
                                              OOB_THRESHOLD, ARIMA_MARGIN)  # fmt: skip
                windows[m, 0] = pre
                windows[m, 1] = keep
            last_active[m] = k
        _position(feats, m, k, step_s, now, last_active, windows, last_scale, n_bins * bin_s)


@njit(cache=True, nogil=True)
def _position(feats, m, k, step_s, now, last_active, windows, last_scale, cap):
    """``feats[m, 3:]``: where model ``m`` stands in the histogram policy's windows at the start
    of interval ``k`` (as the policy sees it there: idle = the intervals since the last active
    one ended), and the seconds since the last scale-out / scale-in; durations capped at
    ``cap``, never active or never scaled reading as ``cap``."""
    if last_active[m] < 0:
        feats[m, 3] = math.log1p(cap)
        feats[m, 4] = 0.0
        feats[m, 5] = 0.0
    else:
        idle = (k - last_active[m]) * step_s
        pre, keep = windows[m, 0], windows[m, 1]
        feats[m, 3] = math.log1p(min(idle, cap))
        left = pre + keep - idle
        feats[m, 4] = math.log1p(min(left, cap)) if pre <= idle < pre + keep else 0.0
        feats[m, 5] = math.log1p(min(pre - idle, cap)) if idle < pre else 0.0
    for j in range(2):
        feats[m, 6 + j] = math.log1p(min(now - last_scale[j, m], cap))
