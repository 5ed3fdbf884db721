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

Every save here is atomic (:func:`agents.fileio.atomic_write`), and a model's statistics also
travel inside its zip (:data:`STATS_ENTRY`), so a model is never paired with older statistics.
"""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecNormalize

from .algos import ALGOS, AlgoSpec, get_algo
from .fileio import atomic_write

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


BEST_MODEL = "best_model.zip"  # model selection's pick (agents.callbacks.BestOnValidation)


def selected_model_path(run_dir: str | Path) -> Path:
    """The agent a run trained: its ``best_model.zip`` where model selection (``valid_freq``)
    kept one, which train.py's final comparison evaluates; else :func:`resolve_model_path`
    (``model.zip``, else the latest checkpoint)."""
    best = Path(run_dir) / BEST_MODEL
    return best if best.is_file() else resolve_model_path(run_dir)


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
STATS_ENTRY = "coldstart_vecnormalize.pkl"
"""The zip entry holding the model's own ``VecNormalize`` statistics: model and statistics are
one file, renamed in one step, so no kill can pair a model with older statistics. The
``vecnormalize*.pkl`` file beside it is a copy for SB3 / rl-zoo tools; loaders here read the
entry when the zip has one."""

_atomic_write = atomic_write  # the one atomic-write helper (agents.fileio)


def save_agent(model: BaseAlgorithm, path: str | Path, vecnormalize: VecNormalize | None) -> Path:
    """Save ``model`` (with ``model.coldstart_meta`` set) with its statistics inside the zip
    (:data:`STATS_ENTRY`), atomically; then the statistics' copy beside it."""
    path = Path(path)
    stats = None if vecnormalize is None else pickle.dumps(vecnormalize)

    def write(f) -> None:
        buf = io.BytesIO()
        model.save(buf)
        if stats is not None:
            with zipfile.ZipFile(buf, "a") as z:
                z.writestr(STATS_ENTRY, stats)
        f.write(buf.getvalue())

    _atomic_write(path, write)
    if stats is not None:
        _atomic_write(stats_path(path), lambda f: f.write(stats))
    return path


def load_stats(model_path: str | Path) -> VecNormalize:
    """The ``VecNormalize`` statistics saved with ``model_path``: the zip's own entry, else the
    ``vecnormalize*.pkl`` file beside it (models saved before the entry existed). Call
    ``set_venv`` on the result to train on.

    Raises:
        ValueError: None saved, or not a readable ``VecNormalize`` pickle (names the file).
    """
    where, data = None, None
    try:
        with zipfile.ZipFile(model_path) as z:
            if STATS_ENTRY in z.namelist():
                where, data = f"{str(model_path)!r} [{STATS_ENTRY}]", z.read(STATS_ENTRY)
    except (OSError, zipfile.BadZipFile) as e:
        raise ValueError(f"{str(model_path)!r}: cannot read the model zip ({e})") from None
    if data is None:
        sp = stats_path(model_path)
        if not sp.is_file():
            raise ValueError(
                f"{str(model_path)!r} was trained with VecNormalize but {str(sp)!r} is missing"
            )
        where = repr(str(sp))
        try:
            data = sp.read_bytes()
        except OSError as e:
            raise ValueError(f"{where}: cannot be read ({e.strerror or e})") from None
    try:
        stats = pickle.loads(data)
    except Exception as e:  # noqa: BLE001 - a corrupt pickle fails in many ways
        first = (str(e).splitlines() or [type(e).__name__])[0]
        raise ValueError(
            f"{where}: not a readable VecNormalize pickle ({type(e).__name__}: {first})"
        ) from None
    if not isinstance(stats, VecNormalize):
        raise ValueError(f"{where}: holds a {type(stats).__name__}, not VecNormalize statistics")
    return stats


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
        vecnorm = load_stats(model_path)
        vecnorm.training = False
        vecnorm.norm_reward = False
    return AgentPolicy(model, spec, name=name, vecnormalize=vecnorm, meta=meta)


def check_compatible(agent: AgentPolicy, env, label: str) -> None:
    """Check that ``agent`` can act on ``env`` (the raw env) before any episode runs.

    Raises:
        ValueError: The observation shape or the number of actions differ; the message names
            the scenario the agent was trained on and the one it is evaluated on.
    """
    obs_model = tuple(agent.model.observation_space.shape or ())
    obs_env = tuple(env.observation_space.shape or ())
    n_model = getattr(agent.model.action_space, "n", None)
    n_env = getattr(env.action_space, "n", None)
    env_id = agent.meta.get("env_id")
    ok = obs_model == obs_env and n_model == n_env
    from envs import ENV_ID

    ok = ok and (env_id is None or env_id == ENV_ID)
    if not ok:
        trained = agent.meta.get("scenario", "an unknown scenario")
        over = agent.meta.get("overrides") or {}
        trained_txt = f"{trained!r}" + (f" with overrides {over}" if over else "")
        raise ValueError(
            f"{label} was trained on {env_id or 'an unknown env'} scenario {trained_txt} "
            f"(observation {obs_model}, {n_model} actions) and cannot act on {ENV_ID} scenario "
            f"{env.scenario.name!r} (observation {obs_env}, {n_env} actions); "
            f"evaluate it on {trained!r} (leave --scenario out) or retrain it"
        )
