"""Wrappers between :class:`envs.env.ServerlessGPUEnv` and SB3, and the env factory training uses.

* :class:`DiscreteActions`: a ``Discrete`` action space of composite actions (what DQN needs,
  and the shipped default of every algorithm: ``actions: composite`` in the hyperparameters).
* :class:`EpisodeLatencies`: puts the episode's request latencies into the final step's ``info``
  (for the TensorBoard latency histogram of :class:`agents.callbacks.ClusterMetricsCallback`).
* :class:`EnvFactory`: builds one wrapped env (picklable, so ``SubprocVecEnv`` can ship it).
"""

from __future__ import annotations

import multiprocessing
import signal
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from sb3_contrib.common.wrappers import ActionMasker
from stable_baselines3.common.monitor import Monitor

ENV_ID = "coldstart/ServerlessGPU-v0"

# Entries of one model's MultiDiscrete block (see the env docstring).
SCALE, PLACE, SOURCE, CACHE = range(4)
LOCALITY, NEAREST = 0, 0  # first placement rule, first source
CACHE_RELEASE, CACHE_HOLD, CACHE_KEEP, CACHE_PREFETCH = range(4)


def discrete_table(env: gym.Env) -> tuple[np.ndarray, list[str]]:
    """The composite actions of :class:`DiscreteActions` for ``env``.

    Returns:
        ``(table, names)``: ``table`` has shape ``(n_actions, 4 * max_models)``, one full
        MultiDiscrete action per row; ``names`` labels each row (``"noop"``,
        ``"bert-base:scale+2"``, ``"gpt2-xl:cache=prefetch"``...).
    """
    base = env.unwrapped
    deltas = [int(d) for d in base.deltas]
    zero = deltas.index(0)
    noop = np.tile(np.array([zero, LOCALITY, NEAREST, CACHE_HOLD], dtype=np.int64), base.K)
    rows, names = [noop], ["noop"]
    model_names = [m.name for m in base.scenario.sim.models]
    for m in range(base.M):
        for i, d in enumerate(deltas):
            if d != 0:
                row = noop.copy()
                row[4 * m + SCALE] = i
                rows.append(row)
                names.append(f"{model_names[m]}:scale{d:+d}")
        for c, label in (
            (CACHE_RELEASE, "release"),
            (CACHE_KEEP, "keep"),
            (CACHE_PREFETCH, "prefetch"),
        ):
            row = noop.copy()
            row[4 * m + CACHE] = c
            rows.append(row)
            names.append(f"{model_names[m]}:cache={label}")
    return np.stack(rows), names


def composite_mask(table: np.ndarray, env_mask: np.ndarray, nvec_model) -> np.ndarray:
    """Which composite actions use only valid choices, from the env's flat ``action_masks()``.

    Args:
        table: ``(n_actions, 4 * K)`` composite actions (:func:`discrete_table`).
        env_mask: The env's mask, shape ``(K * sum(nvec_model),)`` or ``(n_envs, ...)``.
        nvec_model: Choices of one model's four entries.

    Returns:
        Shape ``(n_actions,)`` (or ``(n_envs, n_actions)``); the no-op (row 0) is always valid.
    """
    table = np.asarray(table, dtype=np.int64)
    nvec = np.asarray(nvec_model, dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(nvec)[:-1]])
    n, K = len(table), table.shape[1] // 4
    m = np.asarray(env_mask, dtype=bool)
    batch = m.reshape(-1, K, int(nvec.sum()))  # (n_envs, K, block)
    idx = table.reshape(n, K, 4) + offsets  # column of each choice inside its model's block
    ok = np.stack([np.take_along_axis(b[None].repeat(n, 0), idx, axis=2).all(axis=(1, 2))
                   for b in batch])  # fmt: skip
    ok[:, 0] = True
    return ok[0] if m.ndim == 1 else ok


class DiscreteActions(gym.Wrapper):
    """Exposes a ``Discrete`` space of composite actions: one decision per step.

    Action ``0`` is the no-op (every model: scale delta 0, cache ``hold``). Then, for each real
    model ``m`` (padding slots are left out) in order:

    * one action per non-zero scale delta (default -4, -1, +1, +2, +4): scale model ``m`` by it,
      new instances placed by the ``locality`` rule and loaded from the ``nearest`` source, cache
      ``hold``; every other model no-op;
    * three cache actions: ``release``, ``keep``, ``prefetch`` for model ``m`` with scale 0.

    So ``1 + n_models * (len(scale_deltas) - 1 + 3)`` actions: 25 on the ``small`` scenario
    (3 models). Explicit host placement and the ``cloud`` source are not exposed: the env's rules
    (locality, nearest tier) are what a good policy picks almost always, and the full product is
    far too large for a Q-network head: ``(6 * (3 + hosts) * 2 * 4) ** max_models`` joint choices
    (``240 ** 4``, about 3.3e9 on ``small``). One change per 10-s step is enough to follow the
    load, and keeps DQN's argmax over a few dozen outputs.

    An action that uses a masked choice (``env.action_masks()``: scale-in with no instance,
    scale-out with no GPU that fits, prefetch with nowhere to put it) is replaced by the no-op;
    ``info["masked_to_noop"]`` counts them over the episode. :meth:`action_masks` gives the
    ``Discrete`` mask, so MaskablePPO works on this space too.

    Why it is the default (``actions: composite``) for every algorithm, not only DQN: under the
    full ``MultiDiscrete`` a uniform initial policy changes every model's count, placement, source
    and cache every step, and PPO needs many samples to learn that most of those should be left
    alone; measured on ``small`` it learns several times faster here (numbers in
    ``agents/hyperparams/*.yml``), and one categorical head is ~3x cheaper than 16.
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.table, self.names = discrete_table(env)
        self.action_space = spaces.Discrete(len(self.table))
        self._nvec = env.unwrapped.nvec_model
        self.masked_to_noop = 0
        # Flat mask column of every choice of every composite action, shape (n_actions, 4 * K):
        # an action is valid when all its columns are (one fancy-index per step).
        nvec = np.asarray(self._nvec, dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(nvec)[:-1]])
        n, k = len(self.table), self.table.shape[1] // 4
        block = np.arange(k, dtype=np.int64)[:, None] * int(nvec.sum()) + offsets  # (K, 4)
        self._cols = (self.table.reshape(n, k, 4) + block).reshape(n, -1)

    def reset(self, **kwargs):
        self.masked_to_noop = 0
        return self.env.reset(**kwargs)

    def action_masks(self) -> np.ndarray:
        """Boolean mask over the ``Discrete`` actions (the no-op is always valid)."""
        ok = self.env.unwrapped.action_masks()[self._cols].all(axis=1)
        ok[0] = True
        return ok

    def step(self, action):
        i = int(np.asarray(action).reshape(()))
        if not 0 <= i < len(self.table):
            raise ValueError(f"action {i} is outside Discrete({len(self.table)})")
        if i and not self.env.unwrapped.action_masks()[self._cols[i]].all():
            self.masked_to_noop += 1
            i = 0
        obs, reward, terminated, truncated, info = self.env.step(self.table[i])
        info["masked_to_noop"] = self.masked_to_noop
        return obs, reward, terminated, truncated, info


class EpisodeLatencies(gym.Wrapper):
    """Adds ``info["latencies_s"]`` (float32, at most ``max_values`` values) on the final step.

    The latencies are those of the requests completed in the episode
    (:func:`envs.sim.metrics.latencies`). Longer arrays are summarised by ``max_values`` evenly
    spaced order statistics, which keeps the distribution's shape (what a histogram shows) and
    bounds what ``SubprocVecEnv`` sends between processes.
    """

    def __init__(self, env: gym.Env, max_values: int = 2048) -> None:
        super().__init__(env)
        self.max_values = int(max_values)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if terminated or truncated:
            from envs.sim.metrics import latencies

            lat = np.sort(latencies(self.env.unwrapped.sim)).astype(np.float32)
            if lat.size > self.max_values:
                lat = lat[np.linspace(0, lat.size - 1, self.max_values).round().astype(np.int64)]
            info["latencies_s"] = lat
        return obs, reward, terminated, truncated, info


def _mask_fn(env: gym.Env) -> np.ndarray:
    return env.get_wrapper_attr("action_masks")()


@dataclass
class EnvFactory:
    """Builds one env: ``gym.make`` -> :class:`EpisodeLatencies` -> (:class:`DiscreteActions`)
    -> ``Monitor`` -> (``ActionMasker``).

    Attributes:
        scenario: Preset name or YAML path.
        split: ``"train"`` or ``"eval"``.
        overrides: Scenario keyword overrides (``{"episode_s": 300}``).
        discrete: Wrap in :class:`DiscreteActions` (DQN).
        masked: Wrap in ``ActionMasker`` (MaskablePPO).
    """

    scenario: str = "small"
    split: str = "train"
    overrides: dict = field(default_factory=dict)
    discrete: bool = False
    masked: bool = False

    def __call__(self) -> gym.Env:
        if multiprocessing.parent_process() is not None:
            # A SubprocVecEnv worker: Ctrl-C reaches the whole process group; let the main
            # process handle it (save a checkpoint) instead of the worker dying mid-step.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        import envs  # noqa: F401  (registers the ids)

        env = gym.make(ENV_ID, scenario=self.scenario, split=self.split, **self.overrides)
        env = EpisodeLatencies(env)
        if self.discrete:
            env = DiscreteActions(env)
        env = Monitor(env)
        if self.masked:
            env = ActionMasker(env, _mask_fn)
        return env
