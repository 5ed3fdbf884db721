"""The cold-start env as RLlib's action-masking RLModule expects it: one factory, one wrapper.

RLlib's ``ActionMaskingTorchRLModule`` (``ray.rllib.examples.rl_modules.classes.
action_masking_rlm``) reads a ``Dict`` observation ``{"action_mask": Box(0, 1, (n,)),
"observations": <the env's observation space>}`` and adds ``log(mask)`` (clamped to the
smallest float) to the action logits, so a masked action has probability exactly 0.
:class:`ActionMaskObservation` builds that ``Dict`` from any env with a ``Discrete(n)`` action
space and ``action_masks() -> bool[n]``; the env itself is unchanged.

Every env the Ray path uses (RLlib's env runners, the benchmark) comes from :func:`make_env`:
``coldstart/ServerlessGPU-v1``, whose own ``Discrete`` space and ``action_masks()`` are what the
module needs (no action wrapper).
"""

from __future__ import annotations

from collections.abc import Mapping

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs import ENV_ID

from .wrappers import EpisodeLatencies

RLLIB_ENV_NAME = "coldstart_masked"  # the name registered with ray.tune.registry.register_env
CONFIG_KEYS = ("scenario", "split", "overrides", "normalize_reward")


class ActionMaskObservation(gym.Wrapper):
    """Observation ``Dict(action_mask=Box(0, 1, (n,), float32), observations=<env's space>)``.

    Args:
        env: An env with a ``Discrete(n)`` action space and ``action_masks() -> bool[n]``.

    ``info["masked_actions_taken"]`` counts, over the episode, the actions received that the
    mask of the observation they answered had ruled out (0 under the masking RLModule; the test
    of the Ray path asserts it on every sampled episode). The final step's
    ``info["episode_reward"]`` is the episode's return in the env's own units.
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        if not isinstance(env.action_space, spaces.Discrete):
            raise TypeError(
                f"ActionMaskObservation needs a Discrete action space, got {env.action_space}"
            )
        try:
            self._masks_fn = env.get_wrapper_attr("action_masks")
        except AttributeError:
            raise TypeError(f"ActionMaskObservation needs action_masks() on {env}") from None
        n = int(env.action_space.n)
        self.observation_space = spaces.Dict(
            {
                "action_mask": spaces.Box(0.0, 1.0, (n,), np.float32),
                "observations": env.observation_space,
            }
        )
        self._mask = np.ones(n, dtype=bool)
        self.masked_actions_taken = 0
        self.episode_reward = 0.0

    def action_masks(self) -> np.ndarray:
        return self._masks_fn()

    def _observe(self, obs) -> dict:
        self._mask = np.asarray(self._masks_fn(), dtype=bool)
        return {"action_mask": self._mask.astype(np.float32), "observations": obs}

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.masked_actions_taken = 0
        self.episode_reward = 0.0
        return self._observe(obs), info

    def step(self, action):
        a = int(np.asarray(action).reshape(()))
        if 0 <= a < self._mask.size and not self._mask[a]:
            self.masked_actions_taken += 1
        obs, reward, terminated, truncated, info = self.env.step(a)
        info["masked_actions_taken"] = self.masked_actions_taken
        self.episode_reward += float(reward)
        if terminated or truncated:
            info["episode_reward"] = self.episode_reward  # the env's, whatever scales it above
        return self._observe(obs), reward, terminated, truncated, info


def env_config(
    scenario: str = "small",
    split: str = "train",
    overrides: Mapping | None = None,
    normalize_reward: bool = False,
) -> dict:
    """The ``env_config`` dict :func:`make_env` takes (what RLlib ships to its env runners)."""
    return {"scenario": scenario, "split": split, "overrides": dict(overrides or {}),
            "normalize_reward": bool(normalize_reward)}  # fmt: skip


def make_env(config: Mapping | None = None) -> gym.Env:
    """The env of the Ray path: ``gym.make(ENV_ID)`` -> ``EpisodeLatencies`` -> discrete view ->
    :class:`ActionMaskObservation` (-> ``NormalizeReward`` with ``normalize_reward``).

    Args:
        config: :func:`env_config`'s keys (``scenario``, ``split``, ``overrides``,
            ``normalize_reward``); RLlib passes
            an ``EnvContext`` (a dict with the runner's index), whose other attributes are unused.

    Raises:
        ValueError: An unknown key in ``config``.
    """
    cfg = dict(config or {})
    unknown = sorted(set(cfg) - set(CONFIG_KEYS))
    if unknown:
        raise ValueError(f"env config: unknown key(s) {unknown}; expected {list(CONFIG_KEYS)}")
    import envs  # noqa: F401  (registers the ids)

    env = gym.make(
        ENV_ID,
        scenario=cfg.get("scenario", "small"),
        split=cfg.get("split", "train"),
        **dict(cfg.get("overrides") or {}),
    )
    env = ActionMaskObservation(EpisodeLatencies(env))
    if cfg.get("normalize_reward"):
        # Running scale of the discounted return (what SB3's VecNormalize(norm_reward) does),
        # per env; training only: it changes what the learner sees, not what the policy reads.
        env = gym.wrappers.NormalizeReward(env, gamma=0.99)
    return env


def register() -> str:
    """Register :func:`make_env` with Ray under :data:`RLLIB_ENV_NAME`; returns the name."""
    from ray.tune.registry import register_env

    register_env(RLLIB_ENV_NAME, make_env)
    return RLLIB_ENV_NAME
