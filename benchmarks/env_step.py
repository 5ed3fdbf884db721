"""Environment speed: raw env steps/s, and SB3 PPO's training steps/s next to CartPole-v1.

    python -m benchmarks.env_step            # small and azure, PPO 8192 steps each
    python -m benchmarks.env_step --quick    # fewer steps

Random (masked-valid) actions drive the raw step measurement. PPO runs with identical
hyperparameters (SB3 defaults except n_steps=1024, batch_size=64, one env, CPU, one torch
thread, torch.distributions argument validation off) on ``small`` and on ``CartPole-v1`` in the same process; the ratio says whether the
simulator or the learner bounds training. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import time

import gymnasium as gym
import numpy as np
import torch

import envs  # noqa: F401  (registers the ids)


def raw_steps_per_s(scenario: str, steps: int, seed: int = 0) -> float:
    env = gym.make("coldstart/ServerlessGPU-v0", scenario=scenario, disable_env_checker=True)
    u = env.unwrapped
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    nvec = u.nvec_model

    def valid_action():
        mask = u.action_masks().reshape(u.K, -1)
        out = []
        for m in range(u.K):
            off = 0
            for n in nvec:
                choices = np.flatnonzero(mask[m, off : off + n])
                out.append(rng.choice(choices))
                off += n
        return np.array(out)

    env.step(valid_action())  # compile / warm caches
    start = time.perf_counter()
    for _ in range(steps):
        _, _, term, trunc, _ = env.step(valid_action())
        if term or trunc:
            env.reset()
    return steps / (time.perf_counter() - start)


class StepTimer(gym.Wrapper):
    """Accumulates the wall time spent inside the wrapped env's ``step``."""

    def __init__(self, env):
        super().__init__(env)
        self.seconds = 0.0

    def step(self, action):
        t = time.perf_counter()
        out = self.env.step(action)
        self.seconds += time.perf_counter() - t
        return out


def ppo_steps_per_s(
    env_id: str, steps: int, policy="MlpPolicy", composite: bool = False, **kw
) -> tuple[float, float]:
    """PPO training steps/s and the share of that wall time spent in ``env.step``."""
    from stable_baselines3 import PPO

    env = gym.make(env_id, disable_env_checker=True, **kw)
    if composite:
        from agents.wrappers import DiscreteActions

        env = DiscreteActions(env)
    env = StepTimer(env)
    model = PPO(policy, env, n_steps=1024, batch_size=64, seed=0, device="cpu", verbose=0)
    model.learn(1024)  # warm-up: first rollout and update
    env.seconds = 0.0
    start = time.perf_counter()
    model.learn(steps, reset_num_timesteps=False)
    wall = time.perf_counter() - start
    return steps / wall, env.seconds / wall


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(1)
    # Argument validation of torch.distributions costs more than the env step itself for a
    # MultiDiscrete head (one Categorical per entry); train.py turns it off too. Both runs
    # below get the same setting.
    torch.distributions.Distribution.set_default_validate_args(False)
    n_raw = 500 if a.quick else 3000
    n_ppo = 2048 if a.quick else 8192
    res = {
        "env_steps_per_s_small": round(raw_steps_per_s("small", n_raw), 1),
        "env_steps_per_s_azure": round(raw_steps_per_s("azure", n_raw // 2), 1),
    }
    cart, cart_share = ppo_steps_per_s("CartPole-v1", n_ppo)
    ours, ours_share = ppo_steps_per_s("coldstart/ServerlessGPU-v0", n_ppo, scenario="small")
    from agents.distributions import FastMultiDiscretePolicy

    fast, fast_share = ppo_steps_per_s(
        "coldstart/ServerlessGPU-v0", n_ppo, policy=FastMultiDiscretePolicy, scenario="small"
    )
    comp, comp_share = ppo_steps_per_s(
        "coldstart/ServerlessGPU-v0", n_ppo, composite=True, scenario="small"
    )
    res.update(
        ppo_steps_per_s_cartpole=round(cart, 1),
        ppo_steps_per_s_small=round(ours, 1),
        ppo_ratio_small_over_cartpole=round(ours / cart, 3),
        env_share_of_ppo_time_cartpole=round(cart_share, 3),
        env_share_of_ppo_time_small=round(ours_share, 3),
        ppo_steps_per_s_small_fast_head=round(fast, 1),
        ppo_ratio_small_fast_head_over_cartpole=round(fast / cart, 3),
        env_share_of_ppo_time_small_fast_head=round(fast_share, 3),
        ppo_steps_per_s_small_composite=round(comp, 1),
        ppo_ratio_small_composite_over_cartpole=round(comp / cart, 3),
        env_share_of_ppo_time_small_composite=round(comp_share, 3),
    )
    print(json.dumps(res))


if __name__ == "__main__":
    main()
