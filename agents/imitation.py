"""Behaviour cloning: a MaskablePPO policy that imitates a reference policy on v1.

    python -m agents.imitation --scenario paper --teacher histogram --episodes 10 --out runs/bc
    python evaluate.py --model runs/bc/model.zip --policies histogram,hierarchical

The teacher (a heuristic of :mod:`baselines`) plays ``--episodes`` training windows (split
``train``, seeds 0 ...); every step's observation, the teacher's action and the env's mask are
kept. The student is sb3-contrib's ``MaskablePPO`` ``MlpPolicy`` with the default block of
``agents/hyperparams/maskable_ppo.yml`` (its network), whose observation statistics are the
data's (``VecNormalize``, saved inside the zip as training saves them), trained by masked
cross-entropy. The teachers act on rare steps only (``histogram`` on ``paper``: 1% of its
actions scale, the rest hold), so each action's loss is weighted by its inverse frequency to the
power ``--weight-exponent`` (0.5): with none the student learns "always hold", which is
``noop``'s policy, not the teacher's. The result is a model like ``train.py``'s: ``evaluate.py
--model`` puts it in the table. What the clone is for (the learning issue): a start at the best
heuristic's level for RL; the README's learning section has the measured figures.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

from envs import ENV_ID

EVAL_SEED = 10000  # train.py's held-out episode seeds start here


def collect(scenario: str, teacher: str, episodes: int, overrides: dict | None = None):
    """``(observations, actions, masks)`` of ``teacher`` over ``episodes`` training windows."""
    import baselines
    import envs  # noqa: F401

    obs_l, act_l, mask_l = [], [], []
    env = gym.make(ENV_ID, scenario=scenario, split="train", disable_env_checker=True,
                   **(overrides or {})).unwrapped  # fmt: skip
    pol = baselines.make_policy(teacher)
    for ep in range(episodes):
        pol.bind(env)
        obs, _ = env.reset(seed=ep)
        done, start = False, True
        while not done:
            a, _ = pol.predict(obs, episode_start=np.array([start]), deterministic=True)
            start = False
            obs_l.append(obs)
            act_l.append(int(a))
            mask_l.append(env.action_masks())
            obs, _, term, trunc, _ = env.step(a)
            done = term or trunc
    return np.array(obs_l, dtype=np.float32), np.array(act_l), np.array(mask_l)


def clone(obs, actions, masks, scenario: str, epochs: int = 15, seed: int = 0,
          weight_exponent: float = 0.5, overrides: dict | None = None, say=None):  # fmt: skip
    """Train a MaskablePPO policy on the data; returns ``(model, vecnormalize)``."""
    import torch as th
    from sb3_contrib import MaskablePPO
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from .hyperparams import load_hyperparams

    hp = load_hyperparams("maskable_ppo", ENV_ID)
    make = lambda: gym.make(ENV_ID, scenario=scenario, disable_env_checker=True,  # noqa: E731
                            **(overrides or {}))  # fmt: skip
    vn = VecNormalize(DummyVecEnv([make]), norm_obs=True, norm_reward=True)
    vn.obs_rms.mean = obs.mean(axis=0).astype(np.float64)
    vn.obs_rms.var = obs.var(axis=0).astype(np.float64)
    vn.obs_rms.count = float(len(obs))
    th.manual_seed(seed)
    model = MaskablePPO("MlpPolicy", vn, seed=seed, device="cpu",
                        policy_kwargs=hp.kwargs.get("policy_kwargs"))  # fmt: skip
    x = th.as_tensor(vn.normalize_obs(obs), dtype=th.float32)
    y, m = th.as_tensor(actions), th.as_tensor(masks)
    count = np.bincount(actions, minlength=int(masks.shape[1])).astype(np.float64)
    w = np.where(count > 0, (count.sum() / np.maximum(count, 1.0)) ** weight_exponent, 0.0)
    w = th.as_tensor(w / w[actions].mean(), dtype=th.float32)
    opt = th.optim.Adam(model.policy.parameters(), lr=1e-3)
    gen = th.Generator().manual_seed(seed)
    for epoch in range(epochs):
        perm, total = th.randperm(len(y), generator=gen), 0.0
        for i in range(0, len(y), 512):
            b = perm[i : i + 512]
            _, logp, _ = model.policy.evaluate_actions(x[b], y[b], action_masks=m[b])
            loss = -(w[y[b]] * logp).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss) * len(b)
        if say is not None:
            say(f"epoch {epoch + 1}/{epochs}: weighted cross-entropy {total / len(y):.4f}")
    return model, vn


def agreement(model, vn, obs, actions, masks) -> float:
    """Fraction of the data's steps where the student's greedy action is the teacher's."""
    pred, _ = model.predict(vn.normalize_obs(obs), deterministic=True, action_masks=masks)
    return float(np.mean(pred == actions))


def main(argv: list[str] | None = None) -> int:
    import baselines

    from .evaluation import evaluate, format_table
    from .loading import load_agent, save_agent
    from .training import UsageError

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scenario", default="paper")
    p.add_argument("--teacher", default="histogram", help="a policy of baselines")
    p.add_argument("--episodes", type=int, default=10, help="training windows the teacher plays")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--weight-exponent", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-windows", type=int, default=3, help="held-out windows (0: none)")
    p.add_argument("--out", type=Path, required=True, help="folder for model.zip")
    a = p.parse_args(argv)
    try:
        baselines.check_policy_name(a.teacher)
        for flag, v, lo in (("--episodes", a.episodes, 1), ("--epochs", a.epochs, 1),
                            ("--eval-windows", a.eval_windows, 0)):  # fmt: skip
            if v < lo:
                raise ValueError(f"{flag} must be >= {lo}, got {v}")
        if not 0.0 <= a.weight_exponent <= 1.0:
            raise ValueError(f"--weight-exponent must be in [0, 1], got {a.weight_exponent}")
        from envs.scenarios import load_scenario

        load_scenario(a.scenario)
        if a.out.exists() and not a.out.is_dir():
            raise ValueError(f"--out {str(a.out)!r} is a file, not a folder")
    except (ValueError, OSError, UsageError) as e:
        print(f"imitation: {e}", file=sys.stderr)
        return 2
    say = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    t0 = time.perf_counter()
    obs, actions, masks = collect(a.scenario, a.teacher, a.episodes)
    say(f"{a.teacher} played {a.episodes} training windows: {len(actions)} steps "
        f"({time.perf_counter() - t0:.0f} s)")  # fmt: skip
    model, vn = clone(obs, actions, masks, a.scenario, a.epochs, a.seed, a.weight_exponent,
                      say=say)  # fmt: skip
    say(f"agreement with {a.teacher} on its own steps: {agreement(model, vn, obs, actions, masks):.3f}")
    model.coldstart_meta = {
        "algo": "maskable_ppo", "env_id": ENV_ID, "scenario": a.scenario, "overrides": {},
        "normalize": True, "actions": "native", "n_actions": int(masks.shape[1]),
        "imitation": {"teacher": a.teacher, "episodes": a.episodes, "epochs": a.epochs,
                      "weight_exponent": a.weight_exponent, "seed": a.seed},
    }  # fmt: skip
    a.out.mkdir(parents=True, exist_ok=True)
    path = save_agent(model, a.out / "model.zip", vn)
    say(f"saved {path}")
    if a.eval_windows:
        pols = {"clone": load_agent(path, name="clone"), a.teacher: baselines.make_policy(a.teacher)}
        res = evaluate(a.scenario, pols, episodes=a.eval_windows, seed=EVAL_SEED, progress=False,
                       record_timeline=False)  # fmt: skip
        print(format_table(res, baseline=None))
    say(f"done in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
