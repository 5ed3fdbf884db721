"""Behaviour cloning: a MaskablePPO policy that imitates a reference policy on v1.

    python -m agents.imitation --scenario paper --teacher histogram --episodes 10 --out runs/bc \
        [--finetune-steps 200000]
    python evaluate.py --model runs/bc/clone.zip --policies histogram,hierarchical

The teacher (a heuristic of :mod:`baselines`) plays ``--episodes`` training windows (split
``train``, seeds 0 ...); every step's observation, the teacher's action and the env's mask are
kept. The student is sb3-contrib's ``MaskablePPO`` ``MlpPolicy`` with the default block of
``agents/hyperparams/maskable_ppo.yml`` (its network), whose observation statistics are the
data's (``VecNormalize``, saved inside the zip as training saves them), trained by masked
cross-entropy. The teachers act on rare steps only (``histogram`` on ``paper``: 1% of its
actions scale, the rest hold), so each action's loss is weighted by its inverse frequency to the
power ``--weight-exponent`` (0.5): with none the student learns "always hold", which is
``noop``'s policy, not the teacher's. The result, ``clone.zip``, is a model like ``train.py``'s:
``evaluate.py --model`` puts it in the table. ``--finetune-steps N`` then continues it with
MaskablePPO on :class:`agents.model_vec_env.ModelsVecEnv` (each model its own sub-env with its
own reward), its observation statistics frozen and its critic fitted first
(:func:`finetune`), into ``finetuned.zip``. What the clone is for (the learning issue): a start at the best
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

from .training import FINAL_EVAL_SEED as EVAL_SEED  # train.py's held-out seeds


def collect(scenario: str, teacher: str, episodes: int, overrides: dict | None = None,
            seed: int = 0, teacher_params: dict | None = None):  # fmt: skip
    """``(observations, actions, masks)`` of ``teacher`` (built with ``teacher_params``) over
    ``episodes`` training windows (episode seeds ``seed``, ``seed + 1``, ...)."""
    return _labelled(scenario, teacher, episodes, overrides, seed, teacher_params=teacher_params)


def relabel(model, normalize, scenario: str, teacher: str, episodes: int,
            overrides: dict | None = None, seed: int = 0,
            teacher_params: dict | None = None):  # fmt: skip
    """DAgger's data (Ross et al. 2011): the *student* (``model``, greedy, on observations
    normalised by ``normalize``) plays ``episodes`` training windows (seeds ``seed`` ...) while
    the teacher, bound to the same env, says at every step what it would do there; returns
    ``(observations, the teacher's actions, masks)`` of the student's states. The heuristics'
    state (a histogram's idle times) follows the env, not their own past actions, so the
    teacher can shadow another policy's episode."""

    def student(obs, mask) -> int:
        x = normalize(obs[None].astype(np.float32))
        a, _ = model.predict(x, deterministic=True, action_masks=mask[None])
        return int(np.asarray(a).reshape(-1)[0])

    return _labelled(scenario, teacher, episodes, overrides, seed, actor=student,
                     teacher_params=teacher_params)  # fmt: skip


def _labelled(scenario, teacher, episodes, overrides, seed, actor=None, teacher_params=None):
    """``(observations, teacher's actions, masks)`` at every step of ``episodes`` training
    windows played by ``actor(obs, mask) -> action`` (None: by the teacher itself)."""
    import baselines
    import envs  # noqa: F401

    obs_l, act_l, mask_l = [], [], []
    env = gym.make(ENV_ID, scenario=scenario, split="train", disable_env_checker=True,
                   **(overrides or {})).unwrapped  # fmt: skip
    pol = baselines.make_policy(teacher, **(teacher_params or {}))
    for ep in range(episodes):
        pol.bind(env)
        obs, _ = env.reset(seed=seed + ep)
        done, start = False, True
        while not done:
            a, _ = pol.predict(obs, episode_start=np.array([start]), deterministic=True)
            start = False
            mask = env.action_masks()
            obs_l.append(obs)
            act_l.append(int(a))
            mask_l.append(mask)
            obs, _, term, trunc, _ = env.step(a if actor is None else actor(obs, mask))
            done = term or trunc
    return np.array(obs_l, dtype=np.float32), np.array(act_l), np.array(mask_l)


BLIND_VAR = 1e12  # a feature normalised with this variance is ~0 whatever its value


def data_stats(obs: np.ndarray, blind: tuple[int, ...] = ()):
    """The data's observation statistics, frozen (:class:`agents.model_vec_env.FrozenStats`):
    the clone is trained on observations normalised with them, and fine-tuning keeps them.
    The features at indices ``blind`` get mean 0 and variance :data:`BLIND_VAR`, so that they
    normalise to ~0: the policy cannot read them (time of day: the training windows never
    reach the held-out hours, so a policy that reads the clock extrapolates there)."""
    from .model_vec_env import FrozenStats

    stats = FrozenStats(shape=obs.shape[1:])
    stats.mean = obs.mean(axis=0).astype(np.float64)
    stats.var = obs.var(axis=0).astype(np.float64)
    for i in blind:
        stats.mean[i], stats.var[i] = 0.0, BLIND_VAR
    stats.count = float(len(obs))
    return stats


def fit(model, x, actions, masks, epochs: int = 15, seed: int = 0,
        weight_exponent: float = 0.5, say=None) -> float:  # fmt: skip
    """Behaviour cloning in place: train ``model.policy`` (MaskablePPO) on the (already
    normalised) observations ``x`` to take ``actions`` by masked cross-entropy, each action's
    loss weighted by its inverse frequency ^ ``weight_exponent`` (Adam, lr 1e-3, batches of
    512). Returns the last epoch's mean weighted loss."""
    import torch as th

    th.manual_seed(seed)
    x = th.as_tensor(np.asarray(x, dtype=np.float32))
    y, m = th.as_tensor(actions), th.as_tensor(masks)
    count = np.bincount(actions, minlength=int(masks.shape[1])).astype(np.float64)
    w = np.where(count > 0, (count.sum() / np.maximum(count, 1.0)) ** weight_exponent, 0.0)
    w = th.as_tensor(w / w[actions].mean(), dtype=th.float32)
    opt = th.optim.Adam(model.policy.parameters(), lr=1e-3)
    gen = th.Generator().manual_seed(seed)
    total = 0.0
    model.policy.set_training_mode(True)
    for epoch in range(epochs):
        perm, total = th.randperm(len(y), generator=gen), 0.0
        for i in range(0, len(y), 512):
            b = perm[i : i + 512]
            _, logp, _ = model.policy.evaluate_actions(x[b], y[b], action_masks=m[b])
            loss = -(w[y[b]] * logp).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(b)
        if say is not None:
            say(f"epoch {epoch + 1}/{epochs}: weighted cross-entropy {total / len(y):.4f}")
    model.policy.set_training_mode(False)
    return total / max(len(y), 1)


def sharpen(model, x, masks, target: float) -> tuple[float, float, float]:
    """Scale the clone's action logits (``action_net``'s weights and bias) by the smallest
    factor ``k >= 1`` at which its greedy action's probability, averaged over the data's
    (normalised) observations ``x``, reaches ``target``. The greedy action is unchanged (a
    positive factor keeps the order of the logits); what changes is how often a *sampled*
    action leaves it. Why: the inverse-frequency weights that make the clone take the teacher's
    rare actions also flatten its distribution (entropy ~2.3 nats on paper), so the rollouts
    that PPO learns from sampled a scale action on many steps (hundreds of cold starts an
    episode against the teacher's 30) and the first updates moved the greedy policy far from
    the clone. Returns ``(k, mean greedy probability before, after)``."""
    import torch as th

    pol = model.policy
    with th.no_grad():
        obs = th.as_tensor(np.asarray(x, dtype=np.float32))
        logits = pol.get_distribution(obs).distribution.logits  # log-probabilities: softmax(k x)
        logits = th.where(th.as_tensor(masks, dtype=th.bool), logits, th.tensor(-1e8))

        def p_greedy(k: float) -> float:
            return float(th.softmax(logits * k, dim=1).max(dim=1).values.mean())

        before = p_greedy(1.0)
        lo, hi = 1.0, 1.0
        while p_greedy(hi) < target and hi < 100.0:
            lo, hi = hi, hi * 2
        for _ in range(30):
            if p_greedy(lo) >= target:
                break
            mid = (lo + hi) / 2
            lo, hi = (lo, mid) if p_greedy(mid) >= target else (mid, hi)
        k = hi if p_greedy(lo) < target else lo
        pol.action_net.weight.mul_(k)
        pol.action_net.bias.mul_(k)
    return k, before, p_greedy(k)


def clone(obs, actions, masks, scenario: str, epochs: int = 15, seed: int = 0,
          weight_exponent: float = 0.5, overrides: dict | None = None, say=None):  # fmt: skip
    """Train a new MaskablePPO policy (the default block's network) on the data; returns
    ``(model, vecnormalize)``, the statistics the data's (:func:`data_stats`)."""
    import torch as th
    from sb3_contrib import MaskablePPO
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from .hyperparams import load_hyperparams

    hp = load_hyperparams("maskable_ppo", ENV_ID)
    make = lambda: gym.make(ENV_ID, scenario=scenario, disable_env_checker=True,  # noqa: E731
                            **(overrides or {}))  # fmt: skip
    vn = VecNormalize(DummyVecEnv([make]), norm_obs=True, norm_reward=True)
    vn.obs_rms = data_stats(obs)
    th.manual_seed(seed)
    model = MaskablePPO("MlpPolicy", vn, seed=seed, device="cpu",
                        policy_kwargs=hp.kwargs.get("policy_kwargs"))  # fmt: skip
    fit(model, vn.normalize_obs(obs), actions, masks, epochs, seed, weight_exponent, say)
    return model, vn


# Fine-tuning: discount and GAE lambda per control interval (a ModelsVecEnv step is one
# interval of one model): maskable_ppo.yml's per-step values at small's 3 models, 0.995^3 and
# ~0.9 per interval; a conservative PPO step from a good start (lr 1e-4, clip 0.1, no entropy).
# train.py's pipeline takes the same from maskable_ppo.yml's paper block.
FINETUNE = dict(learning_rate=1e-4, gamma=0.985, gae_lambda=0.9, n_steps=128, batch_size=512,
                n_epochs=5, clip_range=0.1, ent_coef=0.0)  # fmt: skip


def finetune_env(scenario: str, stats, n_sims: int = 1, seed: int = 0, gamma: float = 0.985,
                 overrides: dict | None = None, normalize: dict | None = None):  # fmt: skip
    """``VecNormalize(ModelsVecEnv)`` for fine-tuning a clone: rewards normalised (unless
    ``normalize`` says otherwise), observations normalised with ``stats`` (frozen, the clone's:
    letting them move changed the clone's choices before any RL update, -537 to -750 on
    paper)."""
    from stable_baselines3.common.vec_env import VecNormalize

    from .model_vec_env import ModelsVecEnv

    kw = {"norm_obs": True, "norm_reward": True, "gamma": gamma, **(normalize or {})}
    venv = VecNormalize(ModelsVecEnv(scenario, n_sims=n_sims, overrides=overrides, seed=seed), **kw)
    venv.obs_rms = stats
    return venv


def finetune(model, vn, scenario: str, steps: int, seed: int = 0, critic_steps: int = 23_040,
             say=None):  # fmt: skip
    """Continue ``model`` (the clone) with MaskablePPO on :class:`ModelsVecEnv` (per-model
    credit), its observation statistics frozen; the first ``critic_steps`` train the critic
    alone (:class:`agents.callbacks.CriticWarmup`: the clone's actor frozen), so the first
    policy updates see a fitted baseline. Returns ``(model, vecnormalize)``."""
    import io

    from sb3_contrib import MaskablePPO

    from .callbacks import CriticWarmup

    venv = finetune_env(scenario, vn.obs_rms, seed=seed, gamma=FINETUNE["gamma"])
    buf = io.BytesIO()
    model.save(buf)
    buf.seek(0)
    model = MaskablePPO.load(buf, env=venv, device="cpu", custom_objects=FINETUNE)
    model.learn(critic_steps + steps, callback=CriticWarmup(critic_steps, say=say))
    return model, venv


def agreement(model, vn, obs, actions, masks) -> float:
    """Fraction of the data's steps where the student's greedy action is the teacher's."""
    x = vn.normalize_obs(obs) if vn is not None else obs
    pred, _ = model.predict(x, deterministic=True, action_masks=masks)
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
    p.add_argument("--finetune-steps", type=int, default=0,
                   help="then MaskablePPO on ModelsVecEnv for this many model-steps (0: none)")
    p.add_argument("--eval-windows", type=int, default=3, help="held-out windows (0: none)")
    p.add_argument("--out", type=Path, required=True, help="folder for model.zip")
    a = p.parse_args(argv)
    try:
        baselines.check_policy_name(a.teacher)
        for flag, v, lo in (("--episodes", a.episodes, 1), ("--epochs", a.epochs, 1),
                            ("--eval-windows", a.eval_windows, 0),
                            ("--finetune-steps", a.finetune_steps, 0)):  # fmt: skip
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
    meta = {
        "algo": "maskable_ppo", "env_id": ENV_ID, "scenario": a.scenario, "overrides": {},
        "normalize": True, "actions": "native", "n_actions": int(masks.shape[1]),
        "imitation": {"teacher": a.teacher, "episodes": a.episodes, "epochs": a.epochs,
                      "weight_exponent": a.weight_exponent, "seed": a.seed},
    }  # fmt: skip
    model.coldstart_meta = meta
    a.out.mkdir(parents=True, exist_ok=True)
    path = save_agent(model, a.out / "clone.zip", vn)
    say(f"saved {path}")
    pols = {"clone": path}
    if a.finetune_steps:
        t1 = time.perf_counter()
        tuned, tvn = finetune(model, vn, a.scenario, a.finetune_steps, a.seed, say=say)
        tuned.coldstart_meta = dict(meta, finetune={"steps": a.finetune_steps, **FINETUNE})
        pols["finetuned"] = save_agent(tuned, a.out / "finetuned.zip", tvn)
        say(f"saved {pols['finetuned']} ({time.perf_counter() - t1:.0f} s)")
    if a.eval_windows:
        pols = {k: load_agent(v, name=k) for k, v in pols.items()}
        pols[a.teacher] = baselines.make_policy(a.teacher)
        res = evaluate(a.scenario, pols, episodes=a.eval_windows, seed=EVAL_SEED, progress=False,
                       record_timeline=False)  # fmt: skip
        print(format_table(res, baseline=None))
    say(f"done in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
