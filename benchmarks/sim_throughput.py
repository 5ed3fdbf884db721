"""Simulator throughput: replay the shipped Azure Functions 2019 day under a simple policy.

    python -m benchmarks.sim_throughput            # the whole day (~927k requests)
    python -m benchmarks.sim_throughput --quick    # one hour

The cluster is the ``azure`` preset's (8 hosts x 4 GPUs, 10 models, hierarchical sourcing), with
every function of the day dealt onto its 10 models by popularity (the preset itself replays one
sampled function per model: a few thousand requests a day, too few to load a simulator). The
policy is a plain reactive one with locality-aware placement: every 10 s, each model gets
``ceil(demand of the last interval / 70% of one instance's throughput)`` instances, at least one
while it saw a request in the last minute. Trace loading and workload generation (``workload_s``) are timed
separately; ``wall_s`` covers the simulation only (the kernel is compiled once beforehand).
The last line is JSON: ``{"requests": N, "wall_s": X, "requests_per_s": Y, ...}``.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import time

import numpy as np

from envs.scenarios import load_scenario
from envs.sim import Simulator, Workload, summary
from envs.workloads import make_workload


def run(duration_s: float, step_s: float = 10.0, seed: int = 0) -> dict:
    sc = load_scenario("azure", workload__mapping="popularity")
    cfg = sc.sim
    M = len(cfg.models)
    t0 = time.perf_counter()
    gen = make_workload(sc.workload)
    wl = gen(np.random.default_rng(seed), M, duration_s, 0.0)
    t2 = time.perf_counter()
    # Compile (or load from cache) the kernel outside the timed region.
    warm = Simulator(cfg, Workload(tuple(np.zeros(1) for _ in range(M)), 1.0))
    warm.run_until(1.0)

    sim = Simulator(cfg, wl)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cap = [m.max_batch / m.gpu_exec_s(m.max_batch) for m in cfg.models]  # req/s per instance
    last_arrived = sim.arrived - sim.offsets[:-1]
    last_seen = np.full(M, -math.inf)
    start = time.perf_counter()
    t = 0.0
    while t < duration_s:
        t = min(t + step_s, duration_s)
        sim.run_until(t)
        arrived = sim.arrived - sim.offsets[:-1]
        new = arrived - last_arrived
        last_arrived = arrived
        for m in range(M):
            if new[m] or sim.queue_len(m):
                last_seen[m] = t
            want = math.ceil((new[m] / step_s) / (0.7 * cap[m]))
            if t - last_seen[m] <= 60.0:
                want = max(want, 1)
            sim.set_target(m, want, placement="locality")
    wall = time.perf_counter() - start
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    s = summary(sim)
    return {
        "requests": int(wl.n_requests),
        "wall_s": round(wall, 3),
        "requests_per_s": round(wl.n_requests / wall, 1),
        "workload_s": round(t2 - t0, 3),
        "sim_days": round(duration_s / 86400, 3),
        "p50_latency_s": round(s["p50_latency_s"], 4),
        "p99_latency_s": round(s["p99_latency_s"], 4),
        "cold_starts": s["cold_starts"],
        "requests_dropped": s["requests_dropped"],
        "maxrss_growth_mb": round((rss1 - rss0) / 1024, 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="replay one hour instead of the day")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    res = run(3600.0 if a.quick else 86400.0, seed=a.seed)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
