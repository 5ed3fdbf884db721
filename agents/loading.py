"""Save and load trained agents so that they act like any other policy.

A saved agent is an SB3 zip whose data carries ``coldstart_meta`` (algorithm, env id, scenario,
number of actions, whether observations are normalised), plus, when trained with
``VecNormalize``, a statistics pickle beside it:

| model | normalisation statistics |
|---|---|
| ``<run>/model.zip`` | ``<run>/vecnormalize.pkl`` |
| ``<run>/checkpoints/model_<N>_steps.zip`` | ``<run>/checkpoints/vecnormalize_<N>_steps.pkl`` |

:func:`load_agent` takes either a zip or a run folder and returns an :class:`AgentPolicy` whose
``predict`` takes raw env observations (it normalises them itself) and returns the env's own
``Discrete`` actions, so that evaluation can put a
trained agent in the same table as the heuristics in :mod:`baselines`.

Every save here is atomic: written to a temporary file in the same folder, then ``os.replace``.
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecNormalize

from .algos import ALGOS, AlgoSpec, get_algo

META_KEY = "coldstart_meta"


# ------------------------------------------------------------------------------------ paths ----
def stats_path(model_path: str | Path) -> Path:
    """The ``VecNormalize`` pickle that belongs to ``model_path`` (see the module table)."""
    p = Path(model_path)
    stem = p.stem
    if stem.startswith("model_"):
        return p.with_name("vecnormalize_" + stem[len("model_") :] + ".pkl")
    if stem == "model":
        return p.with_name("vecnormalize.pkl")
    return p.with_name(stem + "_vecnormalize.pkl")


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The checkpoint with the most steps in ``<run_dir>/checkpoints``, or None."""
    ck = sorted(
        Path(run_dir, "checkpoints").glob("model_*_steps.zip"),
        key=lambda p: int(p.stem.split("_")[1]) if p.stem.split("_")[1].isdigit() else -1,
    )
    return ck[-1] if ck else None


def resolve_model_path(path: str | Path) -> Path:
    """A model zip from a zip path or a run folder (its ``model.zip``, else its latest checkpoint).

    Raises:
        ValueError: The path does not exist, or holds no model.
    """
    p = Path(path)
    if not p.exists():
        raise ValueError(f"agent path {str(path)!r} does not exist")
    if p.is_dir():
        if (p / "model.zip").is_file():
            return p / "model.zip"
        ck = latest_checkpoint(p)
        if ck is None:
            raise ValueError(
                f"{str(path)!r} holds no model.zip and no checkpoints/model_*_steps.zip"
            )
        return ck
    if not zipfile.is_zipfile(p):
        raise ValueError(f"{str(path)!r} is not a model zip saved by SB3 (or a run folder)")
    return p


def read_meta(model_path: str | Path) -> dict[str, Any]:
    """``coldstart_meta`` of a saved model, inferred from the policy class if absent.

    Raises:
        ValueError: Not an SB3 zip, or the algorithm cannot be told.
    """
    try:
        with zipfile.ZipFile(model_path) as z:
            data = json.loads(z.read("data"))
    except (KeyError, zipfile.BadZipFile, json.JSONDecodeError, OSError):
        raise ValueError(f"{str(model_path)!r} is not a model zip saved by SB3") from None
    meta = data.get(META_KEY)
    if isinstance(meta, dict) and meta.get("algo") in ALGOS:
        return meta
    # A zip saved elsewhere: tell the algorithm by its policy class (A2C vs PPO by clip_range).
    module = str((data.get("policy_class") or {}).get("__module__", ""))
    if "maskable" in module:
        algo = "maskable_ppo"
    elif "recurrent" in module:
        algo = "recurrent_ppo"
    elif "dqn" in module:
        algo = "dqn"
    elif module.endswith("common.policies"):
        algo = "ppo" if "clip_range" in data else "a2c"
    else:
        raise ValueError(f"{str(model_path)!r}: cannot tell which algorithm saved it")
    return {"algo": algo, "normalize": False}


# ----------------------------------------------------------------------------------- saving ----
def _atomic_write(path: Path, write) -> None:
    """Call ``write(file)`` on a temporary file next to ``path``, then rename it onto ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_agent(model: BaseAlgorithm, path: str | Path, vecnormalize: VecNormalize | None) -> Path:
    """Save ``model`` (with ``model.coldstart_meta`` set) and its statistics, both atomically."""
    path = Path(path)
    _atomic_write(path, model.save)
    if vecnormalize is not None:
        _atomic_write(stats_path(path), lambda f: pickle.dump(vecnormalize, f))
    return path


# ---------------------------------------------------------------------------------- loading ----
class AgentPolicy:
    """A trained model behind the policy interface of :mod:`baselines`.

    ``predict(obs, state, episode_start, deterministic)`` like SB3's, on the raw env: the
    observation (one, shape ``(n_obs,)``, or a batch ``(n_envs, n_obs)``) is normalised with the
    training statistics, and the action returned is the env's ``Discrete`` action (a scalar, or
    shape ``(n_envs,)``). MaskablePPO uses the env's
    ``action_masks()``: pass them as ``action_masks=`` or :meth:`bind` the env(s) once (as the
    heuristics of :mod:`baselines` are bound); the other algorithms ignore masks. Recurrent
    policies need the caller to pass back ``state`` and ``episode_start`` as SB3 does.

    Attributes:
        name: Label for results tables.
        model: The SB3 model.
        algo: The algorithm's table row.
        meta: ``coldstart_meta`` (``scenario``, ``overrides``, ``env_id``... when saved by train.py).
        vecnormalize: Observation statistics, or None.
    """

    def __init__(
        self,
        model: BaseAlgorithm,
        algo: AlgoSpec,
        *,
        name: str | None = None,
        vecnormalize: VecNormalize | None = None,
        meta: dict | None = None,
    ) -> None:
        self.model = model
        self.algo = algo
        self.name = name or algo.name
        self.vecnormalize = vecnormalize
        self.meta = dict(meta or {})
        self.privileged = False
        self.recurrent = algo.recurrent
        self._envs: list = []

    def __repr__(self) -> str:
        return f"AgentPolicy({self.name!r}, {type(self.model).__name__})"

    def bind(self, env) -> AgentPolicy:
        """Attach the env(s) whose ``action_masks()`` MaskablePPO reads: one env, a sequence
        (one per batch index) or a DummyVecEnv."""
        if hasattr(env, "envs") and not hasattr(env, "action_masks"):
            env = env.envs
        envs = list(env) if isinstance(env, (list, tuple)) else [env]
        self._envs = [getattr(e, "unwrapped", e) for e in envs]
        return self

    def reset(self) -> None:
        """Nothing to forget (recurrent state travels through ``predict``)."""

    def _masks(self, n: int | None) -> np.ndarray | None:
        if not self._envs:
            return None
        masks = [np.asarray(e.action_masks(), dtype=bool) for e in self._envs[: n or 1]]
        return masks[0] if n is None else np.stack(masks)

    def normalize(self, observation) -> np.ndarray:
        obs = np.asarray(observation, dtype=np.float32)
        if self.vecnormalize is not None:
            obs = self.vecnormalize.normalize_obs(obs).astype(np.float32)
        return obs

    def predict(
        self,
        observation,
        state=None,
        episode_start=None,
        deterministic: bool = True,
        action_masks=None,
    ):
        obs = self.normalize(observation)
        kwargs: dict[str, Any] = {}
        if self.algo.masked:
            if action_masks is None:
                action_masks = self._masks(None if obs.ndim == 1 else obs.shape[0])
            if action_masks is not None:
                kwargs["action_masks"] = np.asarray(action_masks, dtype=bool)
        action, state = self.model.predict(
            obs, state=state, episode_start=episode_start, deterministic=deterministic, **kwargs
        )
        return action, state


def load_agent(path: str | Path, name: str | None = None, device: str = "cpu") -> AgentPolicy:
    """Load a model zip or a run folder (see the module docstring) as an :class:`AgentPolicy`.

    Args:
        path: ``runs/<run>``, ``runs/<run>/model.zip`` or a checkpoint zip.
        name: Label for results (default: the algorithm name).
        device: Torch device for the policy.

    Raises:
        ValueError: A one-line message for a missing path, a file that is not an SB3 zip, an
            unknown algorithm, or missing normalisation statistics.
    """
    model_path = resolve_model_path(path)
    meta = read_meta(model_path)
    spec = get_algo(meta["algo"])
    try:
        model = spec.cls.load(model_path, device=device)
    except Exception as e:  # noqa: BLE001 - corrupt or foreign zips fail in many ways
        first = (str(e).splitlines() or [type(e).__name__])[0]
        raise ValueError(
            f"cannot load {str(model_path)!r} as {spec.cls.__name__}: {first}"
        ) from None
    vecnorm = None
    if meta.get("normalize"):
        sp = stats_path(model_path)
        if not sp.is_file():
            raise ValueError(
                f"{str(model_path)!r} was trained with VecNormalize but {str(sp)!r} is missing"
            )
        with open(sp, "rb") as f:
            vecnorm = pickle.load(f)
        vecnorm.training = False
        vecnorm.norm_reward = False
    return AgentPolicy(model, spec, name=name, vecnormalize=vecnorm, meta=meta)
