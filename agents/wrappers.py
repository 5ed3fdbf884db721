"""Wrappers between :class:`envs.env.ServerlessGPUEnv` and SB3, and the env factory training uses.

* :class:`EpisodeLatencies`: puts the episode's drop-aware request latencies into the final
  step's ``info`` (for the TensorBoard latency histogram of
  :class:`agents.callbacks.ClusterMetricsCallback`).
* :class:`EnvFactory`: builds one wrapped env (picklable, so ``SubprocVecEnv`` can ship it).

v1's own ``Discrete`` action space serves every algorithm (DQN included) and sb3-contrib's
MaskablePPO (``action_masks()``); v0's composite-action wrapper is gone with v0.
"""

from __future__ import annotations

import multiprocessing
import signal
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
from sb3_contrib.common.wrappers import ActionMasker
from stable_baselines3.common.monitor import Monitor

from envs import ENV_ID


def episode_latencies(sim, max_values: int = 2048) -> np.ndarray:
    """The drop-aware latencies of the requests of ``sim``'s window (float32, sorted), at most
    ``max_values`` of them: longer arrays are summarised by evenly spaced order statistics."""
    from envs.sim.metrics import latencies

    lat = np.sort(latencies(sim)).astype(np.float32)
    if lat.size > max_values:
        lat = lat[np.linspace(0, lat.size - 1, max_values).round().astype(np.int64)]
    return lat


class EpisodeLatencies(gym.Wrapper):
    """Adds ``info["latencies_s"]`` (float32, at most ``max_values`` values) on the final step.

    The latencies are the drop-aware latencies of the requests that arrived in the episode's
    window (:func:`envs.sim.metrics.latencies`: a dropped request counts at the timeout). Longer
    arrays are summarised by ``max_values`` evenly spaced order statistics, which keeps the
    distribution's shape (what a histogram shows) and bounds what ``SubprocVecEnv`` sends.
    """

    def __init__(self, env: gym.Env, max_values: int = 2048) -> None:
        super().__init__(env)
        self.max_values = int(max_values)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if terminated or truncated:
            info["latencies_s"] = episode_latencies(self.env.unwrapped.sim, self.max_values)
        return obs, reward, terminated, truncated, info


def _mask_fn(env: gym.Env) -> np.ndarray:
    return env.unwrapped.action_masks()


@dataclass
class EnvFactory:
    """Builds one env: ``gym.make`` -> :class:`EpisodeLatencies` -> ``Monitor`` ->
    (``ActionMasker``).

    Attributes:
        scenario: Preset name or YAML path.
        split: ``"train"`` or ``"eval"``.
        overrides: Scenario keyword overrides (``{"episode_s": 300}``).
        masked: Wrap in ``ActionMasker`` (MaskablePPO).
    """

    scenario: str = "small"
    split: str = "train"
    overrides: dict = field(default_factory=dict)
    masked: bool = False

    def __call__(self) -> gym.Env:
        if multiprocessing.parent_process() is not None:
            # A SubprocVecEnv worker: Ctrl-C reaches the whole process group; let the main
            # process handle it (save a checkpoint) instead of the worker dying mid-step.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        import envs  # noqa: F401  (registers the ids)

        env = gym.make(ENV_ID, scenario=self.scenario, split=self.split, **self.overrides)
        env = EpisodeLatencies(env)
        env = Monitor(env)
        if self.masked:
            env = ActionMasker(env, _mask_fn)
        return env
