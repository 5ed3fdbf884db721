"""Environment speed: raw env steps/s, and stock SB3 PPO's training steps/s next to CartPole-v1.

    python -m benchmarks.env_step              # 3 interleaved rounds x 8192 PPO steps
    python -m benchmarks.env_step --quick      # fewer steps, one round
    python -m benchmarks.env_step --rounds 5   # more rounds on a noisy machine

Raw speed: masked-random actions on ``coldstart/ServerlessGPU-v1`` (time inside ``env.step``
only) for ``small``, ``paper`` and ``azure``. PPO: stock SB3 ``PPO("MlpPolicy", env)`` (and
sb3-contrib's ``MaskablePPO`` with the env's ``action_masks()``) with identical hyperparameters
on ``CartPole-v1`` and on v1 (2 ``DummyVecEnv`` envs, n_steps 256, batch 64, 4 epochs, CPU, one
torch thread: the settings the env issue measured), and on a null env with v1's spaces and
``info`` that simulates nothing (what the shapes alone cost, under PPO and under MaskablePPO:
the ceiling of each learner on v1; and with a 2-way action in place of v1's 360: what the
action head alone costs PPO), and on a replay of ``small``'s own recorded observations,
rewards and ``info`` (what the values cost without the simulation; PPO's time outside the env
on it against on ``small`` shows what the simulator's work costs the learner's own steps,
beyond the time inside ``env.step`` and ``reset``, both reported). The learners take turns,
one rollout and update each, so a slow spell of this machine (they last seconds and move single
runs by tens of percent) hits every variant alike; a ratio is total CartPole time over total
time of the variant, also given per round. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import time

import gymnasium as gym
import numpy as np
import torch

import envs  # noqa: F401  (registers the ids)
from envs import ENV_ID
from envs.env import StepInfo

N_ENVS, N_STEPS, BATCH, EPOCHS = 2, 256, 64, 4
ROLLOUT = N_ENVS * N_STEPS  # PPO steps per learn() call: the unit of interleaving


def raw_steps_per_s(scenario: str, steps: int, seed: int = 0) -> float:
    """Env steps per second of wall time inside ``env.step`` (masked-random actions; the
    sampling and the resets are not timed)."""
    env = gym.make(ENV_ID, scenario=scenario, disable_env_checker=True)
    u = env.unwrapped
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    inside = 0.0
    for _ in range(steps):
        a = int(rng.choice(np.flatnonzero(u.action_masks())))
        t = time.perf_counter()
        _, _, term, trunc, _ = env.step(a)
        inside += time.perf_counter() - t
        if term or trunc:
            env.reset()
    return steps / inside


class StepTimer(gym.Wrapper):
    """Accumulates the wall time spent inside the wrapped env's ``step`` (and its ``reset``)."""

    def __init__(self, env):
        super().__init__(env)
        self.seconds = 0.0
        self.reset_seconds = 0.0

    def step(self, action):
        t = time.perf_counter()
        out = self.env.step(action)
        self.seconds += time.perf_counter() - t
        return out

    def reset(self, **kwargs):
        t = time.perf_counter()
        out = self.env.reset(**kwargs)
        self.reset_seconds += time.perf_counter() - t
        return out

    def action_masks(self):
        return self.env.unwrapped.action_masks()


class NullEnv(gym.Env):
    """Does nothing, with v1's spaces and ``info`` on ``small``."""

    def __init__(self) -> None:
        template = gym.make(ENV_ID, scenario="small", disable_env_checker=True)
        self.observation_space = template.observation_space
        self.action_space = template.action_space
        template.reset(seed=0)
        _, _, _, _, self._info = template.step(0)
        self._mask = np.ones(self.action_space.n, dtype=bool)
        self._obs = np.zeros(self.observation_space.shape, dtype=np.float32)
        self._n = template.unwrapped.scenario.n_steps * template.unwrapped.M
        self._t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t = 0
        return self._obs.copy(), {}

    def step(self, action):
        self._t += 1
        return self._obs.copy(), 0.0, False, self._t >= self._n, StepInfo(self._info)

    def action_masks(self):
        return self._mask


class NullEnv2(NullEnv):
    """The null env with a 2-way action (CartPole's ``Discrete(2)``) in place of v1's: PPO on it
    against the null env is what v1's action head alone costs the learner."""

    def __init__(self) -> None:
        super().__init__()
        self.action_space = gym.spaces.Discrete(2)
        self._mask = np.ones(2, dtype=bool)


class ReplayEnv(NullEnv):
    """Replays ``small``'s own observations, rewards and ``info`` (recorded over ``episodes``
    whole episodes under uniform random actions, as an untrained PPO acts) without simulating:
    PPO's time on it, against the null env's, is what the values cost; against ``small``'s,
    what simulating them costs."""

    def __init__(self, episodes: int = 4) -> None:
        super().__init__()
        env = gym.make(ENV_ID, scenario="small", disable_env_checker=True)
        rng = np.random.default_rng(0)
        self._starts = {0: env.reset(seed=0)[0]}  # step index -> first observation there
        self._rec = []  # (observation after the step, reward, truncated, info)
        while len(self._starts) <= episodes:
            obs, r, _, trunc, info = env.step(int(rng.integers(self.action_space.n)))
            self._rec.append((obs, r, trunc, info))
            if trunc:
                self._starts[len(self._rec)] = env.reset()[0]
        self._k = 0

    def reset(self, *, seed=None, options=None):
        gym.Env.reset(self, seed=seed)
        if self._k == len(self._rec):
            self._k = 0
        return self._starts[self._k].copy(), {}

    def step(self, action):
        obs, r, trunc, info = self._rec[self._k]
        self._k += 1
        return obs.copy(), r, False, trunc, StepInfo(info)


VARIANTS = {
    # name: (env, scenario, algorithm)
    "cartpole": ("CartPole-v1", None, "ppo"),
    "small_ppo": (ENV_ID, "small", "ppo"),
    "small_maskable_ppo": (ENV_ID, "small", "maskable_ppo"),
    "paper_ppo": (ENV_ID, "paper", "ppo"),
    "null_env_ppo": ("null", None, "ppo"),
    "null_env_2way_ppo": ("null2", None, "ppo"),
    "replay_small_ppo": ("replay", None, "ppo"),
    "null_env_maskable_ppo": ("null", None, "maskable_ppo"),
}


def make_learner(env_id: str, scenario: str | None, algo: str):
    """A learner with the benchmark's hyperparameters over step-timed envs, warmed up by one
    rollout and update. Returns ``(model, timers)``."""
    from sb3_contrib import MaskablePPO
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv

    timers = []

    def make():
        if env_id == "null":
            env = NullEnv()
        elif env_id == "null2":
            env = NullEnv2()
        elif env_id == "replay":
            env = ReplayEnv()
        else:
            kw = {"scenario": scenario} if scenario else {}
            env = gym.make(env_id, disable_env_checker=True, **kw)
        timers.append(StepTimer(env))
        return timers[-1]

    venv = DummyVecEnv([make] * N_ENVS)
    cls = MaskablePPO if algo == "maskable_ppo" else PPO
    model = cls("MlpPolicy", venv, n_steps=N_STEPS, batch_size=BATCH, n_epochs=EPOCHS, seed=0,
                device="cpu", verbose=0)  # fmt: skip
    model.learn(ROLLOUT)
    for t in timers:
        t.seconds = t.reset_seconds = 0.0
    return model, timers


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer steps, one round")
    p.add_argument("--rounds", type=int, default=None, help="interleaved PPO rounds (default 3)")
    a = p.parse_args()
    rounds = a.rounds if a.rounds is not None else (1 if a.quick else 3)
    if rounds < 1:
        p.error(f"--rounds must be >= 1, got {rounds}")
    torch.set_num_threads(1)
    torch.distributions.Distribution.set_default_validate_args(False)  # as train.py does
    n_raw = 1000 if a.quick else 5000
    n_ppo = 2048 if a.quick else 8192
    res: dict = {
        f"env_steps_per_s_{sc}": round(raw_steps_per_s(sc, n_raw), 1)
        for sc in ("small", "paper", "azure")
    }
    learners = {name: make_learner(*v) for name, v in VARIANTS.items()}
    wall = {k: [] for k in VARIANTS}
    per = n_ppo // ROLLOUT
    for _ in range(rounds):
        for _ in range(per):
            for name, (model, _) in learners.items():
                t = time.perf_counter()
                model.learn(ROLLOUT, reset_num_timesteps=False)
                wall[name].append(time.perf_counter() - t)
    res["rounds"] = rounds
    res["ppo_steps"] = rounds * per * ROLLOUT
    res["settings"] = {"n_envs": N_ENVS, "n_steps": N_STEPS, "batch_size": BATCH, "n_epochs": EPOCHS}
    for name in VARIANTS:
        total = sum(wall[name])
        res[f"ppo_steps_per_s_{name}"] = round(res["ppo_steps"] / total, 1)
        env_s = sum(t.seconds for t in learners[name][1])
        res[f"env_share_of_ppo_time_{name}"] = round(env_s / total, 3)
        reset_s = sum(t.reset_seconds for t in learners[name][1])
        res[f"reset_share_of_ppo_time_{name}"] = round(reset_s / total, 3)
        # PPO's own time per step (rollout outside the env, and the update)
        res[f"ppo_us_per_step_outside_env_{name}"] = round(
            (total - env_s - reset_s) / res["ppo_steps"] * 1e6, 1
        )
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
