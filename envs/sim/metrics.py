"""Episode metrics computed exactly from the recorded requests (no sketches).

Every figure covers the measured window (:meth:`envs.sim.Simulator.open_window`: after an
episode's warm-up): the requests that arrived in it, and the costs, cold starts and bytes moved
since it opened.

**Latency is drop-aware**: percentiles and the mean are over *every* request that arrived in the
window, so a policy cannot improve its tail by letting requests drop. A request's latency is:

* completed, or in service at the end (its finish is already fixed): finish - arrival;
* dropped: the request timeout (``FeatureSpec.request_timeout_s``): the client waited that long
  and got an error, so a policy that drops more than 1% of its requests has a p99 at or above
  the timeout;
* still queued at the end: its wait so far (a lower bound).

Percentiles are empirical quantiles (:func:`percentiles`: the smallest latency with at least q%
of the requests at or below it, numpy's ``inverted_cdf``), so the claim above holds for any
number of requests (linear interpolation broke it: one drop in 65 requests gave a p99 of 21.6 s).

A request meets its SLO when it was dispatched (completed or in service) within the model's
SLO; one still queued at the end has not been served and does not count as meeting it.
``slo_attainment`` is the fraction of arrived requests that did, ``goodput_rps`` their number per
second of the window, ``drop_rate`` the fraction dropped.
"""

from __future__ import annotations

import math

import numpy as np

from .config import TIERS
from .kernel import DROPPED, PENDING, SERVED_CPU

PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p99_9": 99.9}


def window_requests(sim) -> tuple[np.ndarray, np.ndarray]:
    """``(index, model)`` of the requests that arrived in the window, shape ``(n,)`` each."""
    idx, model = [], []
    for m in range(sim.M):
        r = np.arange(sim.window_first[m], sim.arrived[m])
        idx.append(r)
        model.append(np.full(r.size, m, dtype=np.int64))
    if not idx:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(idx), np.concatenate(model)


def request_latencies(sim, idx: np.ndarray) -> np.ndarray:
    """Drop-aware latency (s) of the requests ``idx`` (see the module docstring)."""
    st = sim.status[idx]
    arr = sim.arrivals[idx]
    lat = sim.finish_s[idx] - arr
    lat[st == DROPPED] = sim.cfg.features.request_timeout_s
    queued = st == PENDING
    lat[queued] = sim.now - arr[queued]
    return lat


def latencies(sim, model: int | None = None) -> np.ndarray:
    """Drop-aware latencies (s) of the window's requests (of one model if given), shape ``(n,)``."""
    idx, mod = window_requests(sim)
    if model is not None:
        idx = idx[mod == model]
    return request_latencies(sim, idx)


_QS = tuple(PERCENTILES.values())


def percentiles(lat: np.ndarray, qs=_QS) -> list[float]:
    """The ``qs`` percentiles of ``lat`` as empirical quantiles (see the module docstring);
    NaN for no latencies (or a NaN among them).

    ``np.percentile(lat, qs, method="inverted_cdf")``'s values, from one partition at its
    indices (numpy's call costs ~30 us more, and every episode's end asks 1 + M times)."""
    n = np.size(lat)
    if not n or np.isnan(lat).any():
        return [float("nan")] * len(qs)
    ks = [_inverted_cdf_index(n, q) for q in qs]
    part = np.partition(lat, sorted(set(ks)))
    return [float(part[k]) for k in ks]


def _inverted_cdf_index(n: int, q: float) -> int:
    """Index into the sorted ``n`` values of the ``q``-th percentile, ``inverted_cdf``: numpy's
    ``n * q / 100 - 1``, rounded up unless whole, clipped to the values."""
    x = n * (q / 100.0) - 1
    k = math.floor(x)
    if x != k:
        k += 1
    return min(max(k, 0), n - 1)


def _request_metrics(sim, idx: np.ndarray, model: np.ndarray, duration: float) -> dict:
    out: dict = {}
    lat = request_latencies(sim, idx)
    for k, q in zip(PERCENTILES, percentiles(lat), strict=True):
        out[f"{k}_latency_s"] = q
    out["mean_latency_s"] = float(lat.mean()) if lat.size else float("nan")
    st = sim.status[idx]
    dropped = st == DROPPED
    met = int(np.count_nonzero(~dropped & (st != PENDING) & (lat <= sim.slo[model])))
    n = int(idx.size)
    in_service = (st != PENDING) & ~dropped & (sim.finish_s[idx] > sim.now)
    n_drop = int(dropped.sum())
    n_queued = int((st == PENDING).sum())
    n_in = int(in_service.sum())
    out["requests_arrived"] = n
    out["requests_completed"] = n - n_drop - n_queued - n_in
    out["requests_dropped"] = n_drop
    out["requests_queued"] = n_queued
    out["requests_in_service"] = n_in
    out["requests_served_on_cpu"] = int(((st == SERVED_CPU) & (sim.finish_s[idx] <= sim.now)).sum())
    out["slo_attainment"] = met / n if n else 1.0
    out["slo_violation_rate"] = 1.0 - out["slo_attainment"]
    out["drop_rate"] = n_drop / n if n else 0.0
    out["goodput_rps"] = met / duration if duration > 0 else 0.0
    return out


def summary(sim, per_model: bool = False) -> dict:
    """Scalar metrics of the window so far: drop-aware latency percentiles and mean, SLO
    attainment, drop rate, goodput, request counts, cold starts and bytes by tier, GPU
    utilisation, cost. ``per_model=True`` adds ``"models": {name: {...}}`` with the request
    metrics and cold starts of each model."""
    base = sim.window_base
    duration = sim.now - sim.window_s
    idx, model = window_requests(sim)
    out = _request_metrics(sim, idx, model, duration)
    out["cold_starts"] = int(sum(sim.cold_starts.values()) - sum(base["cold_starts"].values()))
    for t in TIERS:
        out[f"cold_starts_{t}"] = int(sim.cold_starts[t] - base["cold_starts"][t])
        out[f"gb_from_{t}"] = float(sim.gb_by_tier[t] - base["gb_by_tier"][t])
    out["autostarts"] = int(sim.autostarts - base["autostarts"])
    out["gb_host_to_gpu"] = float(sim.gb_pcie - base["gb_pcie"])
    held = sim.gpu_seconds() - base["gpu_seconds"]
    busy = sim.gpu_busy_seconds() - base["gpu_busy_seconds"]
    out["gpu_seconds"] = float(held)
    out["gpu_utilization"] = float(busy / held) if held > 0 else 0.0
    out["cost_usd"] = float(sim.cost_usd() - base["cost_usd"])
    out["window_s"] = float(duration)
    out["sim_time_s"] = float(sim.now)
    if per_model:
        cs = sim.cold_starts_by_model - base["cold_starts_by_model"]
        models = {}
        for m, spec in enumerate(sim.cfg.models):
            sel = model == m
            row = _request_metrics(sim, idx[sel], model[sel], duration)
            row["cold_starts"] = int(cs[m])
            models[spec.name] = row
        out["models"] = models
    return out
