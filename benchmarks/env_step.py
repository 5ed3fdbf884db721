"""Environment speed: raw env steps/s, and SB3 PPO's training steps/s next to CartPole-v1.

    python -m benchmarks.env_step              # small and azure; PPO 3 rounds x 8192 steps
    python -m benchmarks.env_step --quick      # fewer steps, one round
    python -m benchmarks.env_step --rounds 5   # more rounds on a noisy machine

Random (masked-valid) actions on the full ``MultiDiscrete`` space drive the raw step
measurement (time inside ``env.step`` only). PPO runs with identical
hyperparameters (SB3 defaults except n_steps=1024, batch_size=64, one env, CPU, one torch
thread, torch.distributions argument validation off) on ``CartPole-v1`` and on ``small`` in
the same process: on ``small`` with the composite ``Discrete`` actions train.py uses (SB3's
own ``MlpPolicy``), and on the full ``MultiDiscrete`` space with SB3's head and with the
project's vectorised head; and on a null env with ``small``'s composite spaces and ``info`` that
simulates nothing (what the shapes alone cost). The learners take turns, one 1024-step rollout and update each, so a
slow spell of this machine (they last seconds and move single runs by tens of percent) hits
every variant alike; a ratio is total CartPole time over total time of the variant, and the
JSON also has it per round. The ratio says whether the simulator or the learner bounds
training. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import time

import gymnasium as gym
import numpy as np
import torch

import envs  # noqa: F401  (registers the ids)
from envs.env import StepInfo


def raw_steps_per_s(scenario: str, steps: int, seed: int = 0) -> float:
    """Env steps per second of wall time spent inside ``env.step`` (the masked-random action
    sampling and the resets are not timed)."""
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
    inside = 0.0
    for _ in range(steps):
        a = valid_action()
        t = time.perf_counter()
        _, _, term, trunc, _ = env.step(a)
        inside += time.perf_counter() - t
        if term or trunc:
            env.reset()
    return steps / inside


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


NULL = "null"  # make_ppo's env id for NullEnv


class NullEnv(gym.Env):
    """Does nothing, with the spaces and the ``info`` of ``small`` on composite actions: what
    PPO costs on this env's shapes alone, to tell the simulator's share of the gap from the
    bigger observation, action head and ``info``."""

    def __init__(self, template: gym.Env) -> None:
        self.observation_space = template.observation_space
        self.action_space = template.action_space
        template.reset(seed=0)
        _, _, _, _, self._info = template.step(0)
        self._obs = np.zeros(self.observation_space.shape, dtype=np.float32)
        self._n = template.unwrapped.scenario.n_steps
        self._t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t = 0
        return self._obs.copy(), {}

    def step(self, action):
        self._t += 1
        return self._obs.copy(), 0.0, False, self._t >= self._n, StepInfo(self._info)


def make_ppo(env_id: str, policy="MlpPolicy", composite: bool = False, **kw):
    """An SB3 PPO learner (the benchmark's hyperparameters) over a step-timed env, warmed up
    by one rollout and update. ``env_id`` ``"null"``: :class:`NullEnv` over ``small``.
    Returns ``(model, timer)``."""
    from stable_baselines3 import PPO

    from agents.wrappers import DiscreteActions

    base_id = "coldstart/ServerlessGPU-v0" if env_id == NULL else env_id
    env = gym.make(base_id, disable_env_checker=True, **kw)
    if composite:
        env = DiscreteActions(env)
    if env_id == NULL:
        env = NullEnv(env)
    env = StepTimer(env)
    model = PPO(policy, env, n_steps=N_STEPS, batch_size=64, seed=0, device="cpu", verbose=0)
    model.learn(N_STEPS)
    env.seconds = 0.0
    return model, env


N_STEPS = 1024  # PPO rollout length: the unit of interleaving


VARIANTS = {
    # name: (env id, policy, composite actions)
    "cartpole": ("CartPole-v1", "MlpPolicy", False),
    "small_composite": ("coldstart/ServerlessGPU-v0", "MlpPolicy", True),
    "small_multidiscrete_sb3_head": ("coldstart/ServerlessGPU-v0", "MlpPolicy", False),
    "small_multidiscrete_fast_head": ("coldstart/ServerlessGPU-v0", "fast", False),
    "small_spaces_null_env": (NULL, "MlpPolicy", True),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer steps, one round")
    p.add_argument("--rounds", type=int, default=None, help="interleaved PPO rounds (default 3)")
    a = p.parse_args()
    rounds = a.rounds if a.rounds is not None else (1 if a.quick else 3)
    if rounds < 1:
        p.error(f"--rounds must be >= 1, got {rounds}")
    torch.set_num_threads(1)
    # Argument validation of torch.distributions costs more than the env step itself for a
    # MultiDiscrete head (one Categorical per entry); train.py turns it off too. Every run
    # below gets the same setting.
    torch.distributions.Distribution.set_default_validate_args(False)
    from agents.distributions import FastMultiDiscretePolicy

    n_raw = 500 if a.quick else 3000
    n_ppo = 2048 if a.quick else 8192
    res: dict = {
        "env_steps_per_s_small": round(raw_steps_per_s("small", n_raw), 1),
        "env_steps_per_s_azure": round(raw_steps_per_s("azure", n_raw // 2), 1),
    }
    # One learner per variant; then, round after round, one rollout + update of each in turn,
    # so a slow spell of this machine (they last seconds) hits every variant alike.
    learners = {}
    for name, (env_id, policy, composite) in VARIANTS.items():
        kw = {} if env_id == "CartPole-v1" else {"scenario": "small"}
        pol = FastMultiDiscretePolicy if policy == "fast" else policy
        learners[name] = make_ppo(env_id, policy=pol, composite=composite, **kw)
    wall = {k: [] for k in VARIANTS}
    for _ in range(rounds):
        for _ in range(n_ppo // N_STEPS):
            for name, (model, _) in learners.items():
                t = time.perf_counter()
                model.learn(N_STEPS, reset_num_timesteps=False)
                wall[name].append(time.perf_counter() - t)
    res["rounds"] = rounds
    res["ppo_steps"] = rounds * (n_ppo // N_STEPS) * N_STEPS
    per = n_ppo // N_STEPS
    for name in VARIANTS:
        total = sum(wall[name])
        res[f"ppo_steps_per_s_{name}"] = round(res["ppo_steps"] / total, 1)
        res[f"env_share_of_ppo_time_{name}"] = round(learners[name][1].seconds / total, 3)
        if name != "cartpole":
            res[f"ppo_ratio_{name}_over_cartpole"] = round(sum(wall["cartpole"]) / total, 3)
            res[f"ppo_ratio_{name}_per_round"] = [
                round(sum(wall["cartpole"][r * per : (r + 1) * per])
                      / sum(wall[name][r * per : (r + 1) * per]), 3)
                for r in range(rounds)
            ]  # fmt: skip
    print(json.dumps(res))


if __name__ == "__main__":
    main()
