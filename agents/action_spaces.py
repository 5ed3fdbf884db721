"""Candidate action spaces over ``coldstart/ServerlessGPU-v1``, as thin wrappers, for comparison.

The env's own space (``native``) is one ``Discrete`` decision per focused model per step over
scale delta x placement x source x cache (:mod:`envs.layout`). The env issue asked to measure the
alternatives a designer would consider; each is a wrapper, so the env stays one definition and
every candidate acts through the env's own ``step``:

| name | space | per step | what it can learn |
|---|---|---|---|
| ``native`` | ``Discrete(360)`` (the env's) | one focused model | scaling, placement, source, caching |
| ``scale`` | ``Discrete(len(scale_deltas))`` | one focused model | scaling only (rules and cache kept) |
| ``target`` | ``Discrete(1 + len(TARGET_LEVELS))`` | one focused model | an instance-count target (Decima-style, one model at a time) |
| ``joint`` | ``MultiDiscrete([len(scale_deltas)] * M)`` | every model at once | scaling only, one step per control interval (v0's shape) |

``scale`` and ``target`` leave placement at the standing rule, the source at the nearest copy and
the memory pool to the platform (``hold``); ``joint`` plays the env's M focused steps inside one
step, with every model's features in its observation. Masks: ``action_masks()`` on each (the
env's, projected), so MaskablePPO runs on all four.

    python -m benchmarks.action_spaces --quick     # the comparison (learning curves, steps/s)
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs import layout as L

HOLD = L.CACHE_CHOICES.index("hold")
KEEP = 0  # the "keep" choice of the placement and source entries
# Absolute instance-count targets of the ``target`` space, after index 0 = keep the count. Up to
# 8: the largest fleet one model needs in the presets (azure's busiest deployment at peak).
TARGET_LEVELS = (0, 1, 2, 3, 4, 6, 8)


class _Focused(gym.Wrapper):
    """Shared by the one-model-per-step candidates: maps a small action to a native index."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.u = env.unwrapped
        self.layout = self.u.layout

    def native(self, a: int) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def step(self, action):
        a = int(np.asarray(action).reshape(()))
        if not 0 <= a < self.action_space.n:
            raise ValueError(f"action must be in [0, {self.action_space.n - 1}], got {a}")
        return self.env.step(self.native(a))

    def _scale_ok(self) -> np.ndarray:
        return self.u.entry_masks(self.u.focus)[0]


class ScaleOnly(_Focused):
    """``Discrete(len(scale_deltas))``: the focused model's scale delta; noop = delta 0."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.action_space = spaces.Discrete(len(self.layout.deltas))
        self.noop = self.layout.zero_delta

    def native(self, a: int) -> int:
        return self.layout.encode(a, KEEP, KEEP, HOLD)

    def action_masks(self) -> np.ndarray:
        return self._scale_ok().copy()


class TargetLevels(_Focused):
    """``Discrete(1 + len(TARGET_LEVELS))``: 0 keeps the focused model's instance count, ``i``
    asks for ``TARGET_LEVELS[i - 1]`` instances (warm + loading), reached by the largest scale
    delta that does not overshoot (so a far target takes several intervals)."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.action_space = spaces.Discrete(1 + len(TARGET_LEVELS))
        self.noop = 0
        d = self.layout.deltas
        self._order = np.argsort(d)

    def delta_index(self, a: int, current: int) -> int:
        """The scale choice that moves ``current`` instances toward target ``a``."""
        if a == 0:
            return self.layout.zero_delta
        gap = TARGET_LEVELS[a - 1] - current
        d = self.layout.deltas
        ok = (d * gap >= 0) & (np.abs(d) <= abs(gap))  # same direction, no overshoot
        return int(np.flatnonzero(ok)[np.argmax(np.abs(d[ok]))])

    def _current(self) -> int:
        idle, busy, loading = self.u.sim.counts(self.u.focus)
        return idle + busy + loading

    def native(self, a: int) -> int:
        return self.layout.encode(self.delta_index(a, self._current()), KEEP, KEEP, HOLD)

    def action_masks(self) -> np.ndarray:
        ok, cur = self._scale_ok(), self._current()
        return np.array([ok[self.delta_index(a, cur)] for a in range(self.action_space.n)])


class JointScale(gym.Wrapper):
    """``MultiDiscrete([len(scale_deltas)] * M)``: every model's scale delta in one step (one
    control interval); observation = every model's features, then the cluster features.
    The reward is the interval's (the env pays it on the last model's step)."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.u = u = env.unwrapped
        self.layout = u.layout
        nd = len(self.layout.deltas)
        self.action_space = spaces.MultiDiscrete([nd] * u.M)
        n = u.M * len(L.MODEL_FEATURES) + len(L.CLUSTER_FEATURES)
        self.observation_space = spaces.Box(0.0, L.OBS_HIGH, shape=(n,), dtype=np.float32)
        self.noop = [self.layout.zero_delta] * u.M

    def _obs(self) -> np.ndarray:
        u = self.u
        rows = [u.model_features(m) for m in range(u.M)]
        return np.concatenate([*rows, np.asarray(u.cluster_features(), dtype=np.float32)])

    def reset(self, **kwargs):
        _, info = self.env.reset(**kwargs)
        return self._obs(), info

    def step(self, action):
        act = np.asarray(action).reshape(-1)
        if act.shape != (self.u.M,) or act.dtype.kind not in "iu":
            raise ValueError(f"action must be {self.u.M} integers, got {action!r}")
        if ((act < 0) | (act >= len(self.layout.deltas))).any():
            raise ValueError(f"action entries must be in [0, {len(self.layout.deltas) - 1}]")
        total, info, done = 0.0, {}, (False, False)
        for m in range(self.u.M):
            assert self.u.focus == m
            _, r, term, trunc, info = self.env.step(
                self.layout.encode(int(act[m]), KEEP, KEEP, HOLD)
            )
            total += float(r)
            done = (term, trunc)
        return self._obs(), total, done[0], done[1], info

    def action_masks(self) -> np.ndarray:
        """Per-entry masks concatenated (sb3-contrib's MultiDiscrete layout)."""
        return np.concatenate([self.u.entry_masks(m)[0] for m in range(self.u.M)])


SPACES = {"native": None, "scale": ScaleOnly, "target": TargetLevels, "joint": JointScale}


def wrap(env: gym.Env, name: str) -> gym.Env:
    """``env`` (the raw or made v1 env) under candidate ``name``; ``native`` returns it as is."""
    if name not in SPACES:
        raise ValueError(f"unknown action space {name!r}; valid: {', '.join(SPACES)}")
    cls = SPACES[name]
    return env if cls is None else cls(env)


def noop(env: gym.Env) -> list[int]:
    """The no-op of a candidate (``wrap``'s result), as ``apply_action_prior`` takes it: the
    index on a ``Discrete`` space, one choice per entry on ``joint``."""
    if isinstance(env, (ScaleOnly, TargetLevels, JointScale)):
        return list(np.atleast_1d(env.noop))
    return [env.unwrapped.layout.noop]
