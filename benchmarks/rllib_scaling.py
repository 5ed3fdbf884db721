"""Sampling throughput: RLlib env runners (1 and 2) next to SB3's SubprocVecEnv (1 and 2 envs).

    python -m benchmarks.rllib_scaling            # 3 rounds x 4800 env steps per configuration
    python -m benchmarks.rllib_scaling --quick    # 1 round x 1200 steps
    unshare -n bash -c 'ip link set lo up && python -m benchmarks.rllib_scaling'   # loopback only

Both sides sample the cold-start env (v1) on ``small`` with the policy in the loop, on v1's own
``Discrete`` actions and masks (:func:`agents.rllib_env.make_env` for RLlib,
:class:`agents.wrappers.EnvFactory` for SB3), an untrained 64x64 MLP policy each:

* RLlib: PPO (new API stack, action-masking RLModule) with ``num_env_runners`` = 1, 2; a round
  is ``synchronous_parallel_sample`` of the round's steps over the remote runners (the policy
  runs inside each runner);
* SB3: MaskablePPO on ``SubprocVecEnv`` with 1, 2 envs; a round is ``collect_rollouts`` of the
  same steps (the policy runs in the main process, batched over the envs).

The configurations take turns, one round each, so a slow spell of this shared machine hits all
alike; figures are medians over rounds. Then two full RLlib iterations (sample + learn,
``train_batch_size`` = the round's steps) per runner count give the learner's share of an
iteration, what bounds scale-out. The output is one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from statistics import median
from types import SimpleNamespace

WORKERS = (1, 2)


class _Usage(Exception):
    pass


def _rllib_algo(runners: int, batch: int, seed: int):
    from agents.rllib_train import DEFAULTS, build_config

    args = {**DEFAULTS, "num_env_runners": runners, "train_batch_size": batch, "seed": seed}
    return build_config(SimpleNamespace(args=args, overrides={}), seed).build_algo()


def _rllib_round(algo, steps: int) -> tuple[int, float]:
    from ray.rllib.execution.rollout_ops import synchronous_parallel_sample

    t = time.perf_counter()
    eps = synchronous_parallel_sample(
        worker_set=algo.env_runner_group, max_env_steps=steps, concat=False,
        _uses_new_env_runners=True,
    )  # fmt: skip
    dt = time.perf_counter() - t
    flat = [e for item in eps for e in (item if isinstance(item, list) else [item])]
    return sum(len(e) for e in flat), dt  # env steps (one runner's list of episodes per item)


def _sb3_model(n_envs: int, steps: int, seed: int):
    from sb3_contrib import MaskablePPO
    from stable_baselines3.common.vec_env import SubprocVecEnv

    from agents.wrappers import EnvFactory

    venv = SubprocVecEnv([EnvFactory("small", masked=True)] * n_envs)
    venv.seed(seed)
    model = MaskablePPO("MlpPolicy", venv, n_steps=steps // n_envs, batch_size=64, seed=seed,
                        policy_kwargs={"net_arch": [64, 64]}, device="cpu")  # fmt: skip
    _, callback = model._setup_learn(steps * 100, None)
    return model, callback


def _sb3_round(model, callback) -> tuple[int, float]:
    t = time.perf_counter()
    model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps)
    dt = time.perf_counter() - t
    return model.n_steps * model.env.num_envs, dt


def measure(rounds: int, steps: int, seed: int = 0) -> dict:
    import ray
    import torch

    torch.set_num_threads(1)
    ray.init(num_cpus=max(os.cpu_count() or 1, sum(WORKERS)), include_dashboard=False,
             log_to_driver=False, logging_level="ERROR")  # fmt: skip
    algos, sb3 = {}, {}
    try:
        for n in WORKERS:
            algos[n] = _rllib_algo(n, steps, seed)
            _rllib_round(algos[n], steps)  # warm-up: imports, JIT, first resets
            sb3[n] = _sb3_model(n, steps, seed)
            _sb3_round(*sb3[n])
        rates: dict[str, dict[int, list[float]]] = {"rllib": {}, "sb3_subproc": {}}
        for _ in range(rounds):
            for n in WORKERS:
                k, dt = _rllib_round(algos[n], steps)
                rates["rllib"].setdefault(n, []).append(k / dt)
                k, dt = _sb3_round(*sb3[n])
                rates["sb3_subproc"].setdefault(n, []).append(k / dt)
        share = {}
        for n in WORKERS:
            rows = []
            for _ in range(2):
                r = algos[n].train()
                rows.append(
                    (r["timers"]["env_runner_sampling_timer"], r["timers"]["learner_update_timer"])
                )
            s, learn = rows[-1]
            share[n] = {"sample_s": s, "learn_s": learn, "learner_share": learn / (s + learn)}
    finally:
        for a in algos.values():
            a.stop()
        for model, _ in sb3.values():
            model.env.close()
        ray.shutdown()
    out = {name: {str(n): {"steps_per_s": median(v), "per_worker_steps_per_s": median(v) / n,
                           "rounds": v} for n, v in by.items()}
           for name, by in rates.items()}  # fmt: skip
    for name in out:
        one, two = out[name]["1"]["steps_per_s"], out[name]["2"]["steps_per_s"]
        out[name]["speedup_2_over_1"] = two / one
    out["rllib_iteration"] = {str(n): v for n, v in share.items()}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.rllib_scaling", description=__doc__.split("\n")[0]
    )
    p.add_argument("--quick", action="store_true", help="one round of 1200 steps")
    p.add_argument("--rounds", type=int, default=None, help="rounds per configuration (default: 3)")
    p.add_argument("--steps", type=int, default=None, help="env steps per round (default: 4800)")
    a = p.parse_args(argv)
    rounds = a.rounds if a.rounds is not None else (1 if a.quick else 3)
    steps = a.steps if a.steps is not None else (1200 if a.quick else 4800)
    if rounds < 1 or steps < 2 * max(WORKERS) or steps % 2:
        print(f"rllib_scaling: error: --rounds must be >= 1 and --steps an even number >= 4, "
              f"got --rounds {rounds} --steps {steps}", file=sys.stderr)  # fmt: skip
        return 2
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    t0 = time.perf_counter()
    res = measure(rounds, steps)
    res.update(scenario="small", rounds=rounds, steps_per_round=steps, cpus=os.cpu_count(),
               wall_s=time.perf_counter() - t0)  # fmt: skip
    print(json.dumps(res))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
