"""Where a step of ``coldstart/ServerlessGPU-v1`` spends its time (what to compile next).

    python -m benchmarks.step_parts                 # small, 40,000 uniform-random steps
    python -m benchmarks.step_parts --scenario paper --steps 20000

Actions are uniform over the whole space, as an untrained PPO's are (masked choices become the
no-op, as the env documents), so every model's step starts, cancels and drains cold starts.
Each part of ``ServerlessGPUEnv.step`` (and ``reset``, amortised over the steps) is timed by
wrapping the env's own methods: the simulator's advance (event loop, ``run_until``, and the
interval's statistics), the action (scale, placement, source and cache), the validity check,
the observation, the reward, ``info`` and the interval's demand features. The parts nest in
``step``; the rest of ``step`` is its own bookkeeping. The same number of steps of the no-op
alone (``us_per_step_noop``: the platform's activator still starts what queued requests need)
gives what the random actions' consequences cost beside it: the cold starts they start and
cancel, the prefetches, evictions and scale-ins, which is the work an untrained PPO (stock
``PPO("MlpPolicy")`` acts uniformly over v1's 360 actions) makes the simulator do.

It also times one call of the observation's compiled row kernel (``model_row``, 26 arguments)
through numba's dispatcher and through the entry point the env binds (``envs.sim.fastcall``),
against a compiled function that takes the same arguments and does nothing: what a numba call
costs before any work. And it counts the event loop's passes a step (calls of
``kernel.plan_and_serve``) over the same actions. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import time
import timeit

import gymnasium as gym
import numpy as np

import envs  # noqa: F401  (registers the ids)
from envs import ENV_ID
from envs.env import ServerlessGPUEnv

PARTS = ("_advance", "_apply", "_valid", "_observe", "_reward", "_info", "_new_interval", "reset")


def _run(env, actions) -> float:
    t = time.perf_counter()
    for a in actions:
        if env.step(a)[3]:
            env.reset()
    return time.perf_counter() - t


def parts(scenario: str, steps: int, seed: int = 0) -> dict:
    """Microseconds a step: the whole step (unwrapped, then wrapped) and each part."""
    env = gym.make(ENV_ID, scenario=scenario, disable_env_checker=True).unwrapped
    env.reset(seed=seed)
    actions = np.random.default_rng(seed).integers(0, env.action_space.n, steps).tolist()
    plain = _run(env, actions)
    env.reset(seed=seed)
    noop = _run(env, [env.layout.noop] * steps)
    spent = dict.fromkeys(PARTS, 0.0)
    originals = {name: getattr(ServerlessGPUEnv, name) for name in PARTS}

    def timed(name, fn):
        def wrapper(self, *args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(self, *args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - t

        return wrapper

    try:
        for name, fn in originals.items():
            setattr(ServerlessGPUEnv, name, timed(name, fn))
        env.reset(seed=seed)
        spent["reset"] = 0.0
        wrapped = _run(env, actions)
    finally:
        for name, fn in originals.items():
            setattr(ServerlessGPUEnv, name, fn)
    us = 1e6 / steps
    return {"us_per_step": round(plain * us, 1), "us_per_step_noop": round(noop * us, 1),
            "us_per_step_wrapped": round(wrapped * us, 1),
            **{f"us_{k.lstrip('_')}": round(v * us, 1) for k, v in spent.items()}}  # fmt: skip


def kernel_call_overhead(scenario: str) -> dict:
    """One ``model_row`` call and a do-nothing compiled call with the same arguments, in us."""
    from numba import njit

    from envs.observe import _ROW_COLS, _RULE_INDEX
    from envs.step_kernel import model_row

    env = gym.make(ENV_ID, scenario=scenario, disable_env_checker=True).unwrapped
    env.reset(seed=0)
    sim, obs = env.sim, env._obs
    obs.row(sim, 0)  # (fills the observer's argument tuple)
    args = (obs.mat, 0, _ROW_COLS, True, sim.now, obs.G, obs.cache_cap,
            _RULE_INDEX[sim.rule_placement[0]], False, *obs._args)  # fmt: skip

    @njit
    def nothing(*a):
        return 0

    nothing(*args)
    model_row(*args)
    bound = obs._k_row
    n = 50_000
    return {
        "model_row_args": len(args),
        "model_row_us": round(timeit.timeit(lambda: model_row(*args), number=n) / n * 1e6, 2),
        "model_row_bound_us": round(timeit.timeit(lambda: bound(*args), number=n) / n * 1e6, 2),
        "empty_call_same_args_us": round(
            timeit.timeit(lambda: nothing(*args), number=n) / n * 1e6, 2
        ),
    }


def passes_per_step(scenario: str, steps: int, seed: int = 0) -> float:
    """Event-loop passes (``kernel.plan_and_serve`` calls) a step, resets' warm-ups included."""
    from envs.sim import kernel

    real, calls = kernel.plan_and_serve, [0]

    def counted(*args):
        calls[0] += 1
        return real(*args)

    kernel.plan_and_serve = counted  # (simulators made from here on bind it as it is)
    try:
        env = gym.make(ENV_ID, scenario=scenario, disable_env_checker=True).unwrapped
        env.reset(seed=seed)
        calls[0] = 0
        _run(env, np.random.default_rng(seed).integers(0, env.action_space.n, steps).tolist())
    finally:
        kernel.plan_and_serve = real
    return round(calls[0] / steps, 3)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scenario", default="small", choices=envs.list_presets())
    p.add_argument("--steps", type=int, default=40_000)
    a = p.parse_args(argv)
    if a.steps < 1:
        p.error(f"--steps must be >= 1, got {a.steps}")
    res = {"scenario": a.scenario, "steps": a.steps, **parts(a.scenario, a.steps),
           **kernel_call_overhead(a.scenario),
           "passes_per_step": passes_per_step(a.scenario, min(a.steps, 20_000))}  # fmt: skip
    for k, v in res.items():
        print(f"{k:28s} {v}")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
