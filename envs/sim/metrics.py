"""Episode metrics computed exactly from the recorded requests (no sketches)."""

from __future__ import annotations

import numpy as np

from .config import TIERS
from .kernel import DROPPED, SERVED_CPU, SERVED_GPU

PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p99_9": 99.9}


def latencies(sim, model: int | None = None) -> np.ndarray:
    """End-to-end latencies (s) of requests completed by ``sim.now``, shape ``(n,)``."""
    lo, hi = (0, sim.offsets[-1]) if model is None else (sim.offsets[model], sim.offsets[model + 1])
    st = sim.status[lo:hi]
    fin = sim.finish_s[lo:hi]
    done = ((st == SERVED_GPU) | (st == SERVED_CPU)) & (fin <= sim.now)
    return fin[done] - sim.arrivals[lo:hi][done]


def summary(sim) -> dict:
    """Scalar metrics of a run so far: latency percentiles and mean, SLO attainment, drops,
    cold starts and bytes by tier, GPU utilisation, cost. Latencies cover completed requests;
    SLO attainment counts every decided request (completed or dropped), drops as violations."""
    out: dict = {}
    st, fin, arr = sim.status, sim.finish_s, sim.arrivals
    done = ((st == SERVED_GPU) | (st == SERVED_CPU)) & (fin <= sim.now)
    lat = fin[done] - arr[done]  # latencies(sim), in one pass with the SLO check below
    qs = np.percentile(lat, list(PERCENTILES.values())) if lat.size else None
    for i, k in enumerate(PERCENTILES):
        out[f"{k}_latency_s"] = float(qs[i]) if lat.size else float("nan")
    out["mean_latency_s"] = float(lat.mean()) if lat.size else float("nan")
    slo = np.repeat(sim.slo, np.diff(sim.offsets))[done]  # each completed request's SLO
    met = int(np.count_nonzero(lat <= slo))
    decided = lat.size + int(np.count_nonzero(st == DROPPED))
    out["slo_attainment"] = met / decided if decided else 1.0
    out["slo_violation_rate"] = 1.0 - out["slo_attainment"]
    rc = sim.request_counts()
    out.update({f"requests_{k}": v for k, v in rc.items()})
    lo_cpu = sim.status == SERVED_CPU
    out["requests_served_on_cpu"] = int((lo_cpu & (sim.finish_s <= sim.now)).sum())
    out["cold_starts"] = int(sum(sim.cold_starts.values()))
    for t in TIERS:
        out[f"cold_starts_{t}"] = int(sim.cold_starts[t])
        out[f"gb_from_{t}"] = float(sim.gb_by_tier[t])
    out["gb_host_to_gpu"] = float(sim.gb_pcie)
    held = sim.gpu_seconds()
    out["gpu_seconds"] = float(held)
    out["gpu_utilization"] = float(sim.gpu_busy_seconds() / held) if held > 0 else 0.0
    out["cost_usd"] = float(sim.cost_usd())
    out["sim_time_s"] = float(sim.now)
    return out
