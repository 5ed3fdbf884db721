"""Memory of one episode's workload: what ``envs.scenarios.MAX_REQUESTS_PER_EPISODE`` bounds.

    python -m benchmarks.workload_memory                       # at the cap (20M requests)
    python -m benchmarks.workload_memory --requests 1000000

Draws a Poisson workload of the given expected size over one episode of the ``small`` preset
(its 3 models, 1,200 s), builds the simulator over it (per-request arrays), and reports the
process's peak resident memory before and after. Run it in a fresh process: the peak is the
process's. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import resource

import numpy as np

from envs.scenarios import MAX_REQUESTS_PER_EPISODE, load_scenario
from envs.sim import Simulator
from envs.workloads import make_workload


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def run(requests: int, seed: int = 0) -> dict:
    sc = load_scenario("small")
    rate = requests / sc.episode_s
    gen = make_workload({"kind": "poisson", "rate_rps": rate})
    before = _peak_mb()
    wl = gen(np.random.default_rng(seed), len(sc.sim.models), sc.episode_s)
    Simulator(sc.sim, wl, np.random.default_rng(seed + 1))
    after = _peak_mb()
    n = wl.n_requests
    return {
        "requests": n,
        "peak_rss_before_mb": round(before, 1),
        "peak_rss_after_mb": round(after, 1),
        "bytes_per_request": round((after - before) * 2**20 / max(n, 1), 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.workload_memory")
    p.add_argument("--requests", type=int, default=MAX_REQUESTS_PER_EPISODE)
    args = p.parse_args()
    if args.requests < 1:
        p.error(f"--requests must be >= 1, got {args.requests}")
    print(json.dumps(run(args.requests)))


if __name__ == "__main__":
    main()
