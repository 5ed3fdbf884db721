"""Fuzz: random valid scenarios over the documented space, random masked actions.

Each example builds a scenario the way a YAML file does (``scenario_from_dict``): hosts with and
without disks, zero caches, zero memory and egress prices, every workload kind (the shipped
Azure day replayed at several time scales), timeouts, keep-alive, CPU fallback, pipelined
start-up, both sourcing rules and every placement rule; then plays one short episode with random
actions drawn from ``action_masks()``. After every step: no exception, requests conserved by the
per-request arrays and equal to ``info``, capacities held (``check_step`` of the simulator's
invariant tests); at reset: the window inside its split.

Bounded: 40 examples of at most 12 steps (about 10-20 s on 2 cores).
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_sim_invariants import check_step, independent_counts

from envs.env import ServerlessGPUEnv
from envs.scenarios import scenario_from_dict
from envs.sim.config import PLACEMENT_RULES, SOURCING_RULES
from envs.sim.kernel import DROPPED, PENDING, SERVED_CPU, SERVED_GPU

# Prices of zero included: v1's reward is in dollars, nothing divides by a price.
GPU_PRICES = (0.0, 0.5, 1.006)
MODELS = ("bert-base", "gpt2-xl", "t5-3b")
# Held-out fractions and spans (multiples of 240 s) keep the held-out cut on a whole minute: the
# env draws start times on whole minutes (see test_reliability_env.py for a cut that is not).
FRACTIONS = (0.25, 0.5)

small = st.sampled_from


def synthetic(kind: str):
    rate = small([0.2, 1.0, 4.0])
    if kind == "poisson":
        return st.fixed_dictionaries({"kind": st.just(kind), "rate_rps": rate})
    if kind == "bursty":
        return st.fixed_dictionaries({"kind": st.just(kind), "rate_rps": rate, "cv": small([0.5, 4])})
    if kind == "mmpp":
        return st.fixed_dictionaries({
            "kind": st.just(kind), "rate_low_rps": small([0.0, 0.05]), "rate_high_rps": rate,
            "mean_low_s": small([20.0, 240.0]), "mean_high_s": small([10.0, 90.0]),
            "zipf_s": small([0.0, 1.0]),
        })  # fmt: skip
    if kind == "diurnal":
        return st.fixed_dictionaries({
            "kind": st.just(kind), "mean_rate_rps": rate, "amplitude": small([0.0, 1.0]),
            "period_s": small([600.0, 86400.0]),
        })  # fmt: skip
    return st.fixed_dictionaries({
        "kind": st.just("flash"), "base_rate_rps": small([0.0, 0.5]), "spike_rate_rps": rate,
        "spike_every_s": small([30.0, 300.0]), "spike_duration_s": small([5.0, 40.0]),
        "spike_on_one_model": st.booleans(),
    })  # fmt: skip


SYNTHETIC = ("poisson", "bursty", "mmpp", "diurnal", "flash")
TRACE = st.fixed_dictionaries({
    "kind": st.just("trace"), "path": st.just("azure2019"),
    "time_scale": small([0.5, 1.0, 2.0, 5.0]),
    "mapping": small(["popularity", "hash", "round_robin", "per_request"]),
    "subminute": small(["uniform", "equidistant"]),
})  # fmt: skip


@st.composite
def workloads(draw):
    kind = draw(small(SYNTHETIC + ("compose", "trace")))
    if kind == "trace":
        return draw(TRACE)
    if kind == "compose":
        parts = [draw(synthetic(k)) for k in draw(st.lists(small(SYNTHETIC), min_size=1, max_size=2))]
        return {"kind": "compose", "parts": parts}
    return draw(synthetic(kind))


@st.composite
def scenario_dicts(draw):
    hosts = [
        {
            "count": draw(st.integers(1, 2)),
            "n_gpus": draw(st.integers(1, 3)),
            "gpu_mem_gb": draw(small([16.0, 24.0])),
            "cache_gb": draw(small([0.0, 8.0, 64.0])),
            "disk_gb_per_s": draw(small([0.0, 3.2])),  # 0: no local disk
            "disk_cache_gb": draw(small([0.0, 50.0])),
        }
        for _ in range(draw(st.integers(1, 2)))
    ]
    n_hosts = sum(h["count"] for h in hosts)
    models = draw(st.lists(small(MODELS), min_size=1, max_size=3, unique=True))
    wl = draw(workloads())
    ts = wl.get("time_scale", 1.0)
    step_s = draw(small([10.0, 20.0]))
    episode_s = step_s * draw(st.integers(3, 12))
    f = draw(small(FRACTIONS))
    if wl["kind"] == "trace":
        span_s = 86400.0  # the shipped day
    else:
        lo = math.ceil(episode_s * ts / (min(f, 1 - f) * 240.0))
        span_s = 240.0 * draw(st.integers(lo, lo + 30))
    return {
        "hosts": hosts,
        "models": models,
        "max_models": len(models) + draw(st.integers(0, 1)),
        "workload": wl,
        "episode_s": episode_s,
        "step_s": step_s,
        "span_s": span_s,
        "held_out_fraction": f,
        "initial_copies": draw(st.integers(0, n_hosts)),
        "scale_deltas": draw(small([[-1, 0, 1], [-4, -1, 0, 1, 2, 4]])),
        "startup": {
            "pipelined": draw(st.booleans()),
            "pipeline_chunks": draw(st.integers(1, 8)),
            "sandbox_s": draw(small([0.0, 0.57])),
            "runtime_init_s": draw(small([0.0, 4.48])),
        },
        "prices": {
            "gpu_usd_per_hour": draw(small(GPU_PRICES)),
            "host_mem_usd_per_gb_hour": draw(small([0.0, 0.0044])),
            "egress_usd_per_gb": draw(small([0.0, 0.09])),
        },
        "features": {
            "host_cache": draw(st.booleans()),
            "remote_pool": draw(st.booleans()),
            "sourcing": draw(small(SOURCING_RULES)),
            "default_placement": draw(small(PLACEMENT_RULES)),
            "request_timeout_s": draw(small([5.0, 60.0])),
            "keep_alive_s": draw(small([None, 0.0, 30.0, 600.0])),
            "cpu_fallback": draw(st.booleans()),
            "cpu_workers": draw(st.integers(1, 2)),
        },
        "reward": {
            "late_usd": draw(small([0.0, 0.05])),
            "late_usd_per_s": draw(small([0.0, 0.005])),
            "drop_usd": 1.0,  # above the worst late request at the largest timeout drawn
        },
        "warmup_s": draw(small([0.0, 300.0])),
    }


def masked_action(env: ServerlessGPUEnv, rng: np.random.Generator) -> int:
    """A random valid action for the focused model, from ``action_masks()``."""
    return int(rng.choice(np.flatnonzero(env.action_masks())))


def window_counts(sim) -> dict[str, int]:
    """:func:`independent_counts` restricted to the measured window's requests (those from
    ``window_first`` on, per model), from the per-request arrays alone."""
    model = np.repeat(np.arange(sim.M), np.diff(sim.offsets))
    inside = np.arange(sim.offsets[-1]) >= sim.window_first[model]
    here = inside & (sim.arrivals <= sim.now)
    st_, fin = sim.status, sim.finish_s
    served = (st_ == SERVED_GPU) | (st_ == SERVED_CPU)
    return {
        "arrived": int(here.sum()),
        "pending": int((here & ((st_ == PENDING) | (served & (fin > sim.now)))).sum()),
        "completed": int((here & served & (fin <= sim.now)).sum()),
        "dropped": int((here & (st_ == DROPPED)).sum()),
    }


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(scenario_dicts(), small(["train", "eval"]), st.integers(0, 2**16))
def test_random_valid_scenarios_and_masked_actions(data, split, seed):
    sc = scenario_from_dict(data, name="fuzz")
    env = ServerlessGPUEnv(sc, split=split)
    env.reset(seed=seed)
    # The window lies inside its split, in the workload's own seconds.
    cut = sc.span_s * (1 - sc.held_out_fraction)
    end = env.start_s + sc.episode_s * sc.time_scale
    if split == "train":
        assert 0 <= env.start_s and end <= cut + 1e-6, (env.start_s, end, cut)
    else:
        assert cut <= env.start_s and end <= sc.span_s + 1e-6, (env.start_s, end, cut)
    rng = np.random.default_rng(seed)
    prev: dict = {}
    truncated = False
    while not truncated:
        _, reward, terminated, truncated, info = env.step(masked_action(env, rng))
        assert math.isfinite(reward) and not terminated
        assert info["invalid_actions"] == 0  # every choice came from the mask
        if info["focus"] == 0:  # time advanced: info's counts are refreshed
            n = window_counts(env.sim)
            for k in ("arrived", "dropped", "completed", "pending"):
                assert info[f"requests_{k}"] == n[k], (k, info, n)
            independent_counts(env.sim)
            prev = check_step(env.sim, prev)
