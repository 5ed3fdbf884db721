"""An RLlib checkpoint behind SB3's ``predict``, so evaluation tables it beside everything else.

A checkpoint of :mod:`agents.rllib_train` is the folder ``Algorithm.save_to_path`` writes
(``rllib_checkpoint.json``, ``algorithm_state.pkl``, ``learner_group/...``) plus
``coldstart_meta.json`` (:data:`META_FILE`): the env id, scenario, overrides, the action count
and observation shape it was trained on, and the env steps done.

:func:`load_rllib_policy` reads only the RLModule's weights
(``learner_group/learner/rl_module/default_policy``) with ``RLModule.from_checkpoint``: no Ray
cluster is started to evaluate. The returned :class:`RLlibPolicy` acts on the raw env like the
heuristics: :meth:`RLlibPolicy.bind` the env once, then ``predict(obs)`` builds the masked
``Dict`` observation of :class:`agents.rllib_env.ActionMaskObservation` from the env's live
masks and returns the env's own action.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .rllib_env import ENV_ID

META_FILE = "coldstart_meta.json"
RLLIB_FILE = "rllib_checkpoint.json"
MODULE_PATH = ("learner_group", "learner", "rl_module", "default_policy")


def _checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoint folders ``<run>/checkpoints/step_<N>`` with a completed save, by ``N``."""
    found = [p for p in Path(run_dir, "checkpoints").glob("step_*") if (p / RLLIB_FILE).is_file()]
    return sorted(found, key=lambda p: int(p.name[5:]) if p.name[5:].isdigit() else -1)


def resolve_checkpoint(path: str | Path) -> Path | None:
    """The checkpoint folder ``path`` names: itself, or a run folder's latest; None if neither."""
    p = Path(path)
    if (p / RLLIB_FILE).is_file():
        return p
    if p.is_dir():
        found = _checkpoints(p)
        return found[-1] if found else None
    return None


def is_rllib_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` is an RLlib checkpoint folder, or a run folder holding one."""
    return resolve_checkpoint(path) is not None


def read_checkpoint_meta(path: str | Path) -> tuple[Path, dict[str, Any]]:
    """``(checkpoint folder, coldstart meta)`` of ``path``.

    Raises:
        ValueError: No checkpoint there, one not written by :mod:`agents.rllib_train` (no meta:
            another env's), or one of another env id.
    """
    ckpt = resolve_checkpoint(path)
    if ckpt is None:
        raise ValueError(
            f"{str(path)!r} is not an RLlib checkpoint (no {RLLIB_FILE}, and no "
            f"checkpoints/step_*/{RLLIB_FILE} under it)"
        )
    try:
        meta = json.loads((ckpt / META_FILE).read_text())
    except FileNotFoundError:
        raise ValueError(
            f"{str(ckpt)!r} is an RLlib checkpoint without {META_FILE}: not saved by "
            f"agents.rllib_train, so not of {ENV_ID}"
        ) from None
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{str(ckpt / META_FILE)!r}: unreadable ({e})") from None
    if meta.get("env_id") != ENV_ID:
        raise ValueError(f"{str(ckpt)!r} was trained on {meta.get('env_id')!r}, not {ENV_ID}")
    return ckpt, meta


class RLlibPolicy:
    """An RLlib RLModule with SB3's ``predict(observation, state, episode_start, deterministic)``.

    Args:
        module: The trained ``ActionMaskingTorchRLModule``.
        meta: The checkpoint's coldstart meta (:data:`META_FILE`) or the live run's.
        name: Label in results tables.
    """

    privileged = False
    recurrent = False

    def __init__(self, module, meta: dict, name: str = "rllib_ppo") -> None:
        self.module = module
        self.meta = dict(meta)
        self.name = name
        self._views: list = []

    def __repr__(self) -> str:
        return f"RLlibPolicy({self.name!r}, scenario={self.meta.get('scenario')!r})"

    def bind(self, env) -> RLlibPolicy:
        """Attach the raw env(s) whose masks :meth:`predict` reads (one env or a sequence).

        Raises:
            ValueError: The env's action count or observation shape is not the checkpoint's.
        """
        envs = list(env) if isinstance(env, (list, tuple)) else [env]
        views = [getattr(e, "unwrapped", e) for e in envs]
        n, shape = int(views[0].action_space.n), list(views[0].observation_space.shape)
        want_n, want_shape = self.meta.get("n_actions"), self.meta.get("obs_shape")
        if n != want_n or shape != want_shape:
            raise ValueError(
                f"{self.name}: trained on {self.meta.get('scenario')!r} ({want_n} actions, "
                f"observation {want_shape}); this env has {n} actions, observation {shape}"
            )
        self._views = views
        return self

    def reset(self) -> None:
        """Nothing to forget: the policy is feed-forward."""

    def predict(self, observation, state=None, episode_start=None, deterministic: bool = True):
        """Actions for one observation ``(n_obs,)`` or a batch ``(n_envs, n_obs)`` (one bound
        env per row); returns ``(env actions, None)``."""
        import torch

        if not self._views:
            raise ValueError(f"{self.name}: bind(env) first (the masks come from the env)")
        obs = np.asarray(observation, dtype=np.float32)
        single = obs.ndim == 1
        obs = obs[None] if single else obs
        if obs.shape[0] > len(self._views):
            raise ValueError(
                f"{self.name}: {obs.shape[0]} observations, {len(self._views)} envs bound"
            )
        views = self._views[: obs.shape[0]]
        mask = np.stack([np.asarray(v.action_masks(), dtype=np.float32) for v in views])
        batch = {
            "obs": {"action_mask": torch.from_numpy(mask), "observations": torch.from_numpy(obs)}
        }
        with torch.no_grad():
            logits = self.module.forward_inference(batch)["action_dist_inputs"]
        if deterministic:
            idx = logits.argmax(dim=-1)
        else:
            idx = torch.distributions.Categorical(logits=logits).sample()
        acts = idx.numpy().astype(np.int64)
        return (acts[0] if single else acts), None


def load_rllib_policy(path: str | Path, name: str | None = None) -> RLlibPolicy:
    """The policy of an RLlib checkpoint folder (or a run folder's latest checkpoint).

    Raises:
        ValueError: One line naming the path and what is wrong (see :func:`read_checkpoint_meta`).
    """
    ckpt, meta = read_checkpoint_meta(path)
    from ray.rllib.core.rl_module.rl_module import RLModule

    module_dir = ckpt.joinpath(*MODULE_PATH)
    if not module_dir.is_dir():
        raise ValueError(f"{str(ckpt)!r}: no RLModule under {'/'.join(MODULE_PATH)}")
    try:
        module = RLModule.from_checkpoint(module_dir)
    except Exception as e:  # noqa: BLE001 - a torn or foreign checkpoint fails in many ways
        first = (str(e).splitlines() or [type(e).__name__])[0]
        raise ValueError(f"cannot load the RLModule of {str(ckpt)!r}: {first}") from None
    module.eval()
    return RLlibPolicy(module, meta, name=name or "rllib_ppo")
