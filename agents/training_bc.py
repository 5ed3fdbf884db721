"""train.py's start from the best heuristic: behaviour cloning (with DAgger rounds and
sharpening) before RL, and the model selection that picks what the final comparison plays.

Configured by a hyperparameter block's ``bc_*`` and ``valid_*`` keys (``maskable_ppo.yml``'s
``coldstart/ServerlessGPU-v1:paper``); the steps themselves are :mod:`agents.imitation`'s.
"""

from __future__ import annotations

import time

import numpy as np

from .loading import AgentPolicy
from .train_args import VALID_SEED


def resolve_teacher(cfg) -> None:
    """``bc_teacher: best``: every reference policy but ``random`` plays the model-selection
    windows (``valid_episodes`` training-split windows, seeds ``VALID_SEED`` on: never the
    held-out part); the one with the highest mean reward becomes the teacher."""
    bc = cfg.hp.bc
    if bc["teacher"] != "best":
        return
    import baselines

    from .evaluation import evaluate

    names = [n for n in baselines.POLICIES if n != "random"]
    t0 = time.perf_counter()
    res = evaluate(cfg.args["scenario"], {n: baselines.make_policy(n) for n in names},
                   episodes=cfg.hp.valid_episodes, seed=VALID_SEED, split="train",
                   overrides=cfg.overrides, progress=False, record_timeline=False)  # fmt: skip
    scores = {n: res["policies"][n]["episode_reward"] for n in names}
    bc["teacher"] = max(names, key=lambda n: scores[n])  # the first of a tie, in POLICIES order
    ranked = ", ".join(f"{n} {scores[n]:.1f}" for n in sorted(names, key=lambda n: -scores[n]))
    print(f"Teacher: {bc['teacher']}, the best heuristic on {cfg.hp.valid_episodes} training-split "
          f"windows (seeds {VALID_SEED}+; {time.perf_counter() - t0:.0f} s): {ranked}",
          flush=True)  # fmt: skip


def clone_start(cfg, model, venv) -> None:
    """Clone ``cfg.hp.bc``'s teacher into the new ``model``; with observation normalisation,
    ``venv``'s statistics become the teacher data's, frozen (its ``blind`` features hidden)."""
    data = behaviour_data(cfg)
    if cfg.hp.normalize is not None and venv.norm_obs:
        from envs import layout

        from .imitation import data_stats

        names = (*layout.MODEL_FEATURES, *layout.CLUSTER_FEATURES)
        blind = tuple(names.index(b) for b in cfg.hp.bc["blind"])
        venv.obs_rms = data_stats(data[0], blind)  # frozen: the clone's statistics
    behaviour_clone(cfg, model, venv, data)


def behaviour_data(cfg):
    """The teacher's ``(observations, actions, masks)`` on ``bc_episodes`` training windows
    (episode seeds ``seed * bc_episodes`` on: each training seed its own windows)."""
    from .imitation import collect

    bc, seed = cfg.hp.bc, cfg.args["seed"]
    t0 = time.perf_counter()
    params = ", ".join(f"{k}={v!r}" for k, v in bc["teacher_params"].items())
    print(f"Behaviour cloning: {bc['teacher']}{f'({params})' if params else ''} plays "
          f"{bc['episodes']} training windows (seeds {seed * bc['episodes']}+) ...",
          flush=True)  # fmt: skip
    data = collect(cfg.args["scenario"], bc["teacher"], bc["episodes"], cfg.overrides,
                   seed=seed * bc["episodes"], teacher_params=bc["teacher_params"])  # fmt: skip
    print(f"  {len(data[1])} steps in {time.perf_counter() - t0:.0f} s", flush=True)
    return data


def behaviour_clone(cfg, model, venv, data) -> None:
    """Clone the teacher into ``model``'s policy (:func:`agents.imitation.fit`) on the data's
    observations normalised as ``venv`` normalises them (its frozen statistics)."""
    from .imitation import agreement, fit, relabel, sharpen

    bc, (obs, actions, masks) = cfg.hp.bc, data
    t0 = time.perf_counter()
    norm = venv if hasattr(venv, "normalize_obs") else None
    x = norm.normalize_obs(obs) if norm is not None else obs
    say = (lambda m: print(f"  {m}", flush=True)) if cfg.args["verbose"] else None  # noqa: E731
    loss = fit(model, x, actions, masks, bc["epochs"], cfg.args["seed"], bc["weight_exponent"], say)
    agree = agreement(model, norm, obs, actions, masks)
    print(f"  cloned in {bc['epochs']} epochs ({time.perf_counter() - t0:.0f} s): weighted "
          f"cross-entropy {loss:.3f}, the teacher's action on {agree:.1%} of its steps",
          flush=True)  # fmt: skip
    seed = cfg.args["seed"]
    pick = _RoundPicker(cfg, model) if bc["dagger_select"] and bc["dagger_rounds"] else None
    if pick is not None:
        pick.score(0)
    for r in range(bc["dagger_rounds"]):
        t1 = time.perf_counter()
        first = 100_000 + seed * 1000 + r * bc["dagger_episodes"]
        o2, a2, m2 = relabel(model, norm.normalize_obs if norm is not None else (lambda o: o),
                             cfg.args["scenario"], bc["teacher"], bc["dagger_episodes"],
                             cfg.overrides, seed=first,
                             teacher_params=bc["teacher_params"])  # fmt: skip
        on_own = agreement(model, norm, o2, a2, m2)
        obs, actions, masks = (np.concatenate([obs, o2]), np.concatenate([actions, a2]),
                               np.concatenate([masks, m2]))  # fmt: skip
        x = norm.normalize_obs(obs) if norm is not None else obs
        loss = fit(model, x, actions, masks, bc["dagger_epochs"], seed + r + 1,
                   bc["weight_exponent"], say)  # fmt: skip
        print(f"  DAgger round {r + 1}/{bc['dagger_rounds']} ({time.perf_counter() - t1:.0f} s): "
              f"the clone played {bc['dagger_episodes']} training windows (seeds {first}+), "
              f"taking the teacher's action on {on_own:.1%} of its own steps; refitted on "
              f"{len(actions)} steps, weighted cross-entropy {loss:.3f}", flush=True)  # fmt: skip
        if pick is not None:
            pick.score(r + 1)
    if pick is not None:
        pick.keep_best()
    if bc.get("sharpen"):
        k, before, after = sharpen(model, x, masks, bc["sharpen"])
        print(f"  sharpened: logits x {k:.2f}, mean probability of the greedy action "
              f"{before:.3f} -> {after:.3f} (bc_sharpen {bc['sharpen']})", flush=True)  # fmt: skip


class _RoundPicker:
    """``bc_dagger_select``: the clone of each round plays the model-selection windows (those
    of :class:`agents.callbacks.BestOnValidation`: ``valid_episodes`` training-split windows,
    seeds ``VALID_SEED`` on, the same score as its step 0) and the best round's policy is put
    back at the end (the first of a tie)."""

    def __init__(self, cfg, model) -> None:
        self.cfg, self.model = cfg, model
        self.rewards: list[float] = []
        self.best_state = None

    def score(self, round_: int) -> float:
        import copy
        import functools

        import gymnasium as gym

        import envs  # noqa: F401
        from envs import ENV_ID

        from .callbacks import run_episodes
        from .loading import AgentPolicy
        from .training import _meta

        cfg, t0 = self.cfg, time.perf_counter()
        policy = AgentPolicy(self.model, cfg.spec, vecnormalize=self.model.get_vec_normalize_env(),
                             meta=_meta(cfg))  # fmt: skip
        make_env = functools.partial(gym.make, ENV_ID, scenario=cfg.args["scenario"],
                                     split="train", **cfg.overrides)  # fmt: skip
        seeds = [VALID_SEED + i for i in range(cfg.hp.valid_episodes)]
        reward = float(np.mean([e["episode_reward"] for e in run_episodes(policy, make_env, seeds)]))
        if not self.rewards or reward > max(self.rewards):
            self.best_state = copy.deepcopy(self.model.policy.state_dict())
        self.rewards.append(reward)
        what = "the first clone" if round_ == 0 else f"round {round_}'s clone"
        print(f"  {what}: reward {reward:.1f} on the {len(seeds)} model-selection windows "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)  # fmt: skip
        return reward

    def keep_best(self) -> None:
        best = int(np.argmax(self.rewards))
        self.model.policy.load_state_dict(self.best_state)
        print(f"  DAgger selection (bc_dagger_select): round {best} kept, reward "
              f"{self.rewards[best]:.1f} (rounds 0-{len(self.rewards) - 1}: "
              f"{', '.join(f'{r:.1f}' for r in self.rewards)})", flush=True)  # fmt: skip


def selected_agent(cfg, agent: AgentPolicy) -> AgentPolicy:
    """With model selection (``valid_freq``), the run's ``best_model.zip`` (said in one line);
    else ``agent``, the final model."""
    import json

    from .loading import BEST_MODEL, load_agent

    best = cfg.run_dir / BEST_MODEL
    if cfg.hp.valid_freq <= 0 or not best.is_file():
        return agent

    info = json.loads((cfg.run_dir / "best.json").read_text())
    refs = ", ".join(f"{k} {v:.1f}" for k, v in (info.get("references") or {}).items())
    print(f"Model selection: {best} (step {info['steps']}; reward {info['reward']:.1f} on "
          f"{len(info['windows']['seeds'])} training-split windows, seeds {VALID_SEED}+"
          + (f"; {refs}" if refs else "") + ")")  # fmt: skip
    return load_agent(best, name=cfg.spec.name)
