"""What the simulator counts: GPU-seconds held, pool memory GB-seconds, cost, cold starts and
bytes by tier, the measured window, and the request conservation identity.

Mixed into :class:`envs.sim.simulator.Simulator`; :func:`envs.sim.metrics.summary` reads these.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .cache import PRESENT
from .config import TIERS


class AccountingMixin:
    """Counters and integrals of one simulation (see the module docstring)."""

    def _init_accounting(self) -> None:
        M = self.M
        self.gpu_s_closed = 0.0
        self._n_live = 0  # instances holding a GPU, and the sum of their creation times
        self._live_created_s = 0.0
        p = self.cfg.prices
        self._usd_per_gpu_s = p.gpu_usd_per_hour / 3600.0
        self._usd_per_gb_s = p.host_mem_usd_per_gb_hour / 3600.0
        self._usd_per_egress_gb = p.egress_usd_per_gb
        self._mem_gb_s = 0.0
        self._mem_used_total = 0.0  # sum of mem_used, kept for the GB-second integral
        self._mem_t = 0.0
        self.cold_starts = dict.fromkeys(TIERS, 0)
        self.cold_starts_by_model = np.zeros(M, dtype=np.int64)
        self.gb_by_tier = dict.fromkeys(TIERS, 0.0)  # GB each tier sent (once per multicast)
        self.gb_pcie = 0.0
        self.egress_gb = 0.0
        self.prefetches_done = 0
        self.autostarts = 0  # instances the platform started on demand
        # The same integrals per model (cost_usd_by_model sums to cost_usd): what a reward that
        # credits each model with its own outcome needs.
        # (Python lists: updated one entry at a time on every start and teardown.)
        self._gpu_s_closed_by_model = [0.0] * M
        self._n_live_by_model = [0] * M
        self._live_created_by_model = [0.0] * M
        self._mem_gb_s_by_model = np.zeros(M)
        self._mem_by_model = np.zeros(M)  # GB of each model's copies in host memory
        self.egress_gb_by_model = np.zeros(M)

    # ------------------------------------------------------------------ GPU time ----
    def _open_gpu_time(self, inst) -> None:
        self._n_live += 1
        self._live_created_s += inst.created_s
        self._n_live_by_model[inst.model] += 1
        self._live_created_by_model[inst.model] += inst.created_s

    def _close_gpu_time(self, inst, t: float) -> None:
        held = max(t - inst.created_s, 0.0)
        self.gpu_s_closed += held
        self._n_live -= 1
        self._live_created_s = self._live_created_s - inst.created_s if self._n_live else 0.0
        m = inst.model
        self._gpu_s_closed_by_model[m] += held
        self._n_live_by_model[m] -= 1
        live = self._live_created_by_model[m] - inst.created_s
        self._live_created_by_model[m] = live if self._n_live_by_model[m] else 0.0

    def gpu_seconds(self) -> float:
        """GPU-seconds held: closed instances, plus every live one since its creation."""
        return self.gpu_s_closed + (self._n_live * self.now - self._live_created_s)

    @property
    def gpu_s_closed_by_model(self) -> np.ndarray:
        """GPU-seconds of the closed instances per model, shape ``(M,)``."""
        return np.array(self._gpu_s_closed_by_model)

    def gpu_busy_seconds(self) -> float:
        busy = self.slot_busy[:, : self.G]
        ahead = np.clip(self.slot_free[:, : self.G] - self.now, 0.0, None)
        ahead = np.minimum(ahead, busy)
        return float((busy - ahead).sum())

    # ----------------------------------------------------------------- pool memory ----
    def _mem_change(self, fn):
        """Run ``fn`` (a change of host-memory copies, which returns False if it changed
        nothing), integrating GB-seconds up to now."""
        dt = self.now - self._mem_t
        if dt:  # (at the instant of the last change nothing has accrued: adding 0 is a no-op)
            self._mem_gb_s += self._mem_used_total * dt
            accrue(self._mem_gb_s_by_model, self._mem_by_model, dt)
            self._mem_t = self.now
        out = fn()
        if out is not False:  # (a refused removal changed nothing: same totals, same version)
            self.version += 1
            # (mem_used mirrors each cache's used_gb: the same floats, summed in host order)
            self._mem_used_total = sum(self.mem_used.tolist())
            mem_by_model(self.mem_state, self._sizes, self._mem_by_model)
        return out

    def mem_gb_seconds(self) -> float:
        return self._mem_gb_s + self._mem_used_total * (self.now - self._mem_t)

    def gpu_seconds_by_model(self) -> np.ndarray:
        """:meth:`gpu_seconds` per model, shape ``(M,)``."""
        n_live = np.array(self._n_live_by_model, dtype=np.int64)
        return self.gpu_s_closed_by_model + (
            n_live * self.now - np.array(self._live_created_by_model)
        )

    def cost_usd_by_model(self) -> np.ndarray:
        """:meth:`cost_usd` per model (its GPU-seconds, the GB-seconds of its memory copies,
        its cloud egress), shape ``(M,)``; the entries sum to :meth:`cost_usd`."""
        mem = self._mem_gb_s_by_model + self._mem_by_model * (self.now - self._mem_t)
        return (
            self.gpu_seconds_by_model() * self._usd_per_gpu_s
            + mem * self._usd_per_gb_s
            + self.egress_gb_by_model * self.cfg.prices.egress_usd_per_gb
        )

    def cost_usd(self) -> float:
        """GPU-seconds, pool memory GB-seconds and egress, in dollars (:meth:`gpu_seconds` and
        :meth:`mem_gb_seconds` written out: the env asks every step)."""
        now = self.now
        gpu_s = self.gpu_s_closed + (self._n_live * now - self._live_created_s)
        mem_gb_s = self._mem_gb_s + self._mem_used_total * (now - self._mem_t)
        return (
            gpu_s * self._usd_per_gpu_s
            + mem_gb_s * self._usd_per_gb_s
            + self.egress_gb * self._usd_per_egress_gb
        )

    # ---------------------------------------------------------------------- window ----
    def open_window(self) -> None:
        """Start the measured window now: :func:`envs.sim.metrics.summary` covers the requests
        that arrive at or after this instant and the costs, cold starts and bytes from here on
        (an episode's warm-up before it is state, not score). Called at construction (window =
        all). A request at exactly this instant belongs to the window even if the warm-up's run
        up to it has already admitted it: windows that tile a trace then score every request
        once (one on a boundary was scored in neither)."""
        self.window_s = self.now
        first = self.arrived.copy()  # per model: first request of the window
        for m in range(self.M):
            lo = self.offsets[m]
            first[m] = lo + np.searchsorted(self.arrivals[lo : self.arrived[m]], self.now, "left")
        self.window_first = first
        self.window_base = {
            "cold_starts": dict(self.cold_starts),
            "cold_starts_by_model": self.cold_starts_by_model.copy(),
            "gb_by_tier": dict(self.gb_by_tier),
            "gb_pcie": self.gb_pcie,
            "gpu_seconds": self.gpu_seconds(),
            "gpu_busy_seconds": self.gpu_busy_seconds(),
            "cost_usd": self.cost_usd(),
            "autostarts": self.autostarts,
            "prefetches_done": self.prefetches_done,
        }

    def request_counts(self) -> dict[str, int]:
        """Every arrived request is exactly one of queued, in service, completed, dropped."""
        arrived = int((self.arrived - self.offsets[:-1]).sum())
        served = int(self.served.sum())
        dropped = int(self.dropped.sum())
        in_service = int(self.slot_batch[self.slot_free > self.now].sum())
        return {
            "arrived": arrived,
            "queued": arrived - served - dropped,
            "in_service": in_service,
            "completed": served - in_service,
            "dropped": dropped,
        }


@njit(cache=True, nogil=True)
def mem_by_model(mem_state, sizes, out):
    """``out[m]`` = GB of model ``m``'s copies in host memory (copies held x size)."""
    for m in range(sizes.shape[0]):
        n = 0
        for h in range(mem_state.shape[0]):
            n += mem_state[h, PRESENT, m]
        out[m] = n * sizes[m]


@njit(cache=True, nogil=True)
def accrue(total, rate, dt):
    """``total += rate * dt`` elementwise (numpy's result, without its temporary)."""
    for i in range(total.shape[0]):
        total[i] += rate[i] * dt
