"""One simulator as M parallel sub-envs, one per model: per-model credit for a shared policy.

In ``coldstart/ServerlessGPU-v1`` a control interval has one step per model and the interval's
reward (every model's cost, lateness and drops) is paid once, so the return that scores a
model's action carries the noise of every other model's (17 others on ``paper``). This VecEnv
presents each model of each simulator as its own sub-env (parameter sharing, as PettingZoo's
SuperSuit turns agents into vector-env entries): one ``step`` takes one action per model, plays
them in catalog order through the env's own ``step`` (masks and rules as in the env), advances
one interval, and returns per model its observation (the env's, focused on it), and its own
reward: ``-scale x`` (its cost, :meth:`Simulator.cost_usd_by_model`, + the late and drop prices
of its own requests). The rewards of a simulator sum to the env's reward of the interval, so
the objective is the env's; only the credit is split. GAE then runs per model.

An episode's end is ``done`` on every sub-env of its simulator (each with its
``terminal_observation``); the episode itself is reported once, in the ``info`` of the
simulator's first sub-env: the env's final-step metrics (``p99_latency_s``, ``cost_usd``...),
its drop-aware request latencies (``latencies_s``, as :class:`agents.wrappers.EpisodeLatencies`
adds them) and SB3's ``episode`` entry with the simulator's whole return (the env's episode
reward, the sum of its models'), so ``rollout/ep_rew_mean`` and
:class:`agents.callbacks.ClusterMetricsCallback` count each episode once, on the env's scale.

    venv = ModelsVecEnv("paper", n_sims=1)          # 18 sub-envs
    model = MaskablePPO("MlpPolicy", VecNormalize(venv), n_steps=128)
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.vec_env.base_vec_env import VecEnv


class FrozenStats(RunningMeanStd):
    """Observation statistics that no longer move (``VecNormalize.obs_rms`` for fine-tuning a
    policy trained on given statistics: :func:`agents.imitation.finetune`; letting them move
    changed a clone's choices before any RL update, -537 to -750 on paper). Defined here, not in
    a module run as ``__main__``, so that saved statistics unpickle anywhere."""

    def update(self, arr) -> None:
        return None


class ModelsVecEnv(VecEnv):
    """``n_sims`` simulators of ``scenario`` (split ``split``), ``n_sims * M`` sub-envs."""

    def __init__(self, scenario: str, n_sims: int = 1, split: str = "train",
                 overrides: dict | None = None, seed: int = 0) -> None:  # fmt: skip
        from envs.env import ServerlessGPUEnv

        self.envs = [ServerlessGPUEnv(scenario, split=split, **(overrides or {}))
                     for _ in range(n_sims)]  # fmt: skip
        e = self.envs[0]
        self.M = e.M
        super().__init__(n_sims * self.M, e.observation_space, e.action_space)
        self._seed = seed
        self._episodes = [0] * n_sims
        self._ret = np.zeros(self.num_envs)
        self._len = 0
        self._prev = [None] * n_sims
        self._actions = None

    # -------------------------------------------------------------------- helpers ----
    def _obs(self, env) -> np.ndarray:
        """Each model's observation as the env shows it when that model is focused."""
        return np.stack([env.observation(m) for m in range(self.M)])

    @staticmethod
    def _totals(env) -> np.ndarray:
        """Per model: dollars so far (cost + late and drop prices), shape ``(M,)``."""
        s, p = env.sim, env.scenario.reward
        return s.cost_usd_by_model() + p.late_dollars(s.late, s.late_s) + p.drop_dollars(s.dropped)

    def _reset_one(self, i: int) -> np.ndarray:
        env = self.envs[i]
        env.reset(seed=self._seed + 1000 * i + self._episodes[i])
        self._episodes[i] += 1
        self._prev[i] = self._totals(env)
        return self._obs(env)

    # ---------------------------------------------------------------------- VecEnv ----
    def reset(self):
        self._ret[:] = 0.0
        self._len = 0
        return np.concatenate([self._reset_one(i) for i in range(len(self.envs))])

    def step_async(self, actions) -> None:
        self._actions = np.asarray(actions).reshape(-1)

    def step_wait(self):
        obs, rews, dones, infos = [], [], [], []
        for i, env in enumerate(self.envs):
            trunc, info = False, {}
            for m in range(self.M):
                _, _, _, trunc, info = env.step(int(self._actions[i * self.M + m]))
            tot = self._totals(env)
            r = -env.scenario.reward.scale * (tot - self._prev[i])
            self._prev[i] = tot
            sl = slice(i * self.M, (i + 1) * self.M)
            self._ret[sl] += r
            o = self._obs(env)
            if trunc:
                from .wrappers import episode_latencies

                sub = [{"terminal_observation": o[m], "TimeLimit.truncated": True}
                       for m in range(self.M)]  # fmt: skip
                sub[0] = {**info, **sub[0]}
                sub[0]["latencies_s"] = episode_latencies(env.sim)
                sub[0]["episode"] = {"r": float(self._ret[sl].sum()), "l": env._n_steps,
                                     "t": 0.0}  # fmt: skip
                self._ret[sl] = 0.0
                o = self._reset_one(i)
            else:
                sub = [dict(info) for _ in range(self.M)]
            obs.append(o)
            rews.append(r)
            dones.append(np.full(self.M, trunc))
            infos.extend(sub)
        return np.concatenate(obs), np.concatenate(rews).astype(np.float32), np.concatenate(dones), infos

    def action_masks(self) -> np.ndarray:
        """Each sub-env's mask at the interval's start, shape ``(num_envs, n)``."""
        out = []
        for env in self.envs:
            for m in range(self.M):
                out.append(env.layout.joint_mask(*env.entry_masks(m)))
        return np.stack(out)

    def close(self) -> None:
        for e in self.envs:
            e.close()

    def get_attr(self, attr_name, indices=None):
        return [getattr(self.envs[i // self.M], attr_name) for i in self._get_indices(indices)]

    def set_attr(self, attr_name, value, indices=None) -> None:
        for i in self._get_indices(indices):
            setattr(self.envs[i // self.M], attr_name, value)

    def env_method(self, method_name, *args, indices=None, **kwargs):
        idx = list(self._get_indices(indices))
        if method_name == "action_masks":
            masks = self.action_masks()
            return [masks[i] for i in idx]
        return [getattr(self.envs[i // self.M], method_name)(*args, **kwargs) for i in idx]

    def env_is_wrapped(self, wrapper_class, indices=None):
        return [False for _ in self._get_indices(indices)]

    def get_images(self):
        return []

    def observation_spaces_equal(self, other: spaces.Space) -> bool:  # pragma: no cover
        return other == self.observation_space
