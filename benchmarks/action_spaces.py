"""Action-space candidates compared: learning curves on held-out windows and training speed.

    python -m benchmarks.action_spaces                       # small and paper, 4 spaces, 2 seeds
    python -m benchmarks.action_spaces --quick               # a smoke run (tiny budget)
    python -m benchmarks.action_spaces --scenarios paper --spaces native,target --seeds 3 \
        --intervals 20000 --evals 6 --windows 3 --out DIR

Each candidate of :mod:`agents.action_spaces` trains sb3-contrib ``MaskablePPO`` (stock
``MlpPolicy``, the masks of the candidate) with ``agents/hyperparams/maskable_ppo.yml``'s default
block, for the same amount of experience: ``--intervals`` control intervals (a focused candidate
makes one decision per model per interval, ``joint`` one for all). The discount and GAE lambda are
set per interval (the file's per-step values at ``small``'s 3 models: 0.995^3 and 0.9^3), so every
candidate looks equally far ahead in simulated time. At ``--evals`` points (the first at step 0)
the agent plays the held-out windows (split ``eval``, seeds 10000 ...) deterministically; the best
heuristic of the scenario on the same windows is the reference line. Output: one line per eval,
then JSON (last line) with per scenario and space the curve (reward, drop rate, drop-aware p99,
cost; means over seeds), training steps/s and decisions/s; ``--out DIR`` adds ``curves_<s>.png``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

import envs  # noqa: F401  (registers the id)
from agents.action_spaces import SPACES, noop, wrap
from agents.training import FINAL_EVAL_SEED as EVAL_SEED  # train.py's held-out seeds
from envs import ENV_ID
from envs.scenarios import load_scenario

INTERVAL_GAMMA, INTERVAL_LAMBDA = 0.995**3, 0.9**3  # maskable_ppo.yml's per-step values on small


def _make(scenario: str, space: str, split: str):
    def make():
        from stable_baselines3.common.monitor import Monitor

        return Monitor(wrap(gym.make(ENV_ID, scenario=scenario, split=split,
                                     disable_env_checker=True), space))  # fmt: skip

    return make


def _hyperparams(n_models: int, space: str) -> tuple[dict, dict | None, float, int]:
    """(MaskablePPO kwargs, VecNormalize kwargs, action prior, n_envs) from the yml's default."""
    from agents.hyperparams import load_hyperparams

    hp = load_hyperparams("maskable_ppo", ENV_ID)
    per = 1 if space == "joint" else n_models  # decisions per control interval
    kw = dict(hp.kwargs, gamma=INTERVAL_GAMMA ** (1 / per), gae_lambda=INTERVAL_LAMBDA ** (1 / per))
    return kw, hp.normalize, max(hp.action_prior), hp.n_envs


def evaluate_agent(model, venv, scenario: str, space: str, windows: int) -> dict:
    """Mean held-out reward, drop rate, p99 and cost of ``model`` (deterministic, masked)."""
    env = _make(scenario, space, "eval")()
    rows = []
    for i in range(windows):
        obs, _ = env.reset(seed=EVAL_SEED + i)
        total, done, info = 0.0, False, {}
        while not done:
            x = venv.normalize_obs(obs) if hasattr(venv, "normalize_obs") else obs
            masks = env.get_wrapper_attr("action_masks")()  # the candidate's, else the env's
            a, _ = model.predict(x, deterministic=True, action_masks=masks)
            obs, r, term, trunc, info = env.step(a)
            total += float(r)
            done = term or trunc
        m = info["episode_metrics"]
        rows.append((total, m["drop_rate"], m["p99_latency_s"], m["cost_usd"]))
    env.close()
    r = np.array(rows)
    return dict(
        zip(
            ("reward", "drop_rate", "p99_latency_s", "cost_usd"),
            r.mean(axis=0).tolist(),
            strict=True,
        )
    )


def heuristics(scenario: str, windows: int) -> dict:
    """Every reference policy's mean held-out reward on the same windows."""
    import baselines
    from agents.evaluation import evaluate

    res = evaluate(scenario, {n: baselines.make_policy(n) for n in baselines.POLICIES},
                   episodes=windows, seed=EVAL_SEED, progress=False, record_timeline=False)  # fmt: skip
    return {n: {"reward": p["episode_reward"], "drop_rate": p["drop_rate"],
                "p99_latency_s": p["p99_latency_s"], "cost_usd": p["cost_usd"]}
            for n, p in res["policies"].items()}  # fmt: skip


def run_one(scenario: str, space: str, seed: int, intervals: int, evals: int, windows: int,
            say=print) -> dict:  # fmt: skip
    """Train one candidate, evaluating at ``evals`` evenly spaced points. Returns its record."""
    from sb3_contrib import MaskablePPO
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from agents.algos import apply_action_prior

    probe = _make(scenario, space, "train")()
    M = probe.unwrapped.M
    kw, norm, prior, n_envs = _hyperparams(M, space)
    venv = DummyVecEnv([_make(scenario, space, "train")] * n_envs)
    if norm is not None:
        venv = VecNormalize(venv, gamma=kw["gamma"], **norm)
    model = MaskablePPO("MlpPolicy", venv, seed=seed, device="cpu", verbose=0, **kw)
    apply_action_prior(model, noop(probe.env), prior)
    probe.close()
    per = 1 if space == "joint" else M
    total = intervals * per
    points = np.linspace(0, total, evals).round().astype(int).tolist() if evals > 1 else [total]
    curve, train_s, done = [], 0.0, 0
    for p in points:
        if p > done:
            t = time.perf_counter()
            model.learn(p - done, reset_num_timesteps=False)
            train_s += time.perf_counter() - t
            done = model.num_timesteps
        e = evaluate_agent(model, venv, scenario, space, windows)
        e.update(steps=int(done), intervals=int(done // per))
        curve.append(e)
        say(f"{scenario:>6} {space:>6} seed {seed}: {done:>8} steps  reward {e['reward']:10.1f}  "
            f"drop {100 * e['drop_rate']:5.2f}%  p99 {e['p99_latency_s']:6.2f} s")  # fmt: skip
    venv.close()
    return {"curve": curve, "train_s": train_s, "steps_per_s": done / max(train_s, 1e-9),
            "decisions_per_s": done * (M if space == "joint" else 1) / max(train_s, 1e-9)}  # fmt: skip


def _mean_curve(runs: list[dict]) -> list[dict]:
    keys = ("reward", "drop_rate", "p99_latency_s", "cost_usd")
    out = []
    for pts in zip(*(r["curve"] for r in runs), strict=True):
        row = {k: float(np.mean([p[k] for p in pts])) for k in keys}
        row["reward_min"], row["reward_max"] = (float(f([p["reward"] for p in pts]))
                                                for f in (np.min, np.max))  # fmt: skip
        row.update(steps=pts[0]["steps"], intervals=pts[0]["intervals"])
        out.append(row)
    return out


def plot(result: dict, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for sc, r in result["scenarios"].items():
        fig, ax = plt.subplots(figsize=(6.5, 4))
        for space, s in r["spaces"].items():
            x = [p["intervals"] for p in s["curve"]]
            ax.plot(x, [p["reward"] for p in s["curve"]], marker="o", label=space)
            ax.fill_between(x, [p["reward_min"] for p in s["curve"]],
                            [p["reward_max"] for p in s["curve"]], alpha=0.15)  # fmt: skip
        best = r["best_heuristic"]
        ax.axhline(r["heuristics"][best]["reward"], color="k", ls="--", lw=1, label=best)
        ax.set_xlabel("control intervals of experience")
        ax.set_ylabel("held-out episode reward")
        ax.set_title(f"{sc}: action-space candidates (MaskablePPO, mean and range over seeds)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        paths.append(out / f"curves_{sc}.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths


def _csv(p: argparse.ArgumentParser, text: str, valid, flag: str) -> list[str]:
    """Comma list of names; anything else is a usage error (exit 2, one line)."""
    items = [x for x in text.split(",") if x]
    bad = [x for x in items if valid is not None and x not in valid]
    if not items or bad:
        p.error(f"{flag} {text!r}: expected a comma list of "
                f"{', '.join(valid) if valid else 'scenario names'}")  # fmt: skip
    return items


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scenarios", default="small,paper")
    p.add_argument("--spaces", default=",".join(SPACES))
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--intervals", type=int, default=None, help="experience per run (default "
                   "40,000 control intervals on small, 10,000 on others; --quick: 300)")  # fmt: skip
    p.add_argument("--evals", type=int, default=5, help="evaluation points (the first at 0)")
    p.add_argument("--windows", type=int, default=3, help="held-out windows per evaluation")
    p.add_argument("--quick", action="store_true", help="tiny budget: a smoke run")
    p.add_argument("--out", type=Path, default=None, help="folder for the plots")
    a = p.parse_args(argv)
    scenarios = _csv(p, a.scenarios, None, "--scenarios")
    spaces = _csv(p, a.spaces, list(SPACES), "--spaces")
    for sc in scenarios:
        try:
            load_scenario(sc)
        except (ValueError, OSError) as e:
            p.error(f"--scenarios: {e}")
    for flag, v in (("--seeds", a.seeds), ("--evals", a.evals), ("--windows", a.windows),
                    ("--intervals", a.intervals if a.intervals is not None else 1)):  # fmt: skip
        if v < 1:
            p.error(f"{flag} must be >= 1, got {v}")
    if a.quick:
        a.seeds, a.evals, a.windows = 1, 2, 1
    torch.set_num_threads(1)
    torch.distributions.Distribution.set_default_validate_args(False)  # as train.py does
    say = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    result: dict = {"scenarios": {}, "settings": {"seeds": a.seeds, "evals": a.evals,
                    "windows": a.windows, "algo": "maskable_ppo"}}  # fmt: skip
    t0 = time.perf_counter()
    for sc in scenarios:
        budget = a.intervals or (300 if a.quick else 40_000 if sc == "small" else 10_000)
        h = heuristics(sc, a.windows)
        best = max((n for n in h if h[n]["drop_rate"] <= 0.01), key=lambda n: h[n]["reward"],
                   default=max(h, key=lambda n: h[n]["reward"]))  # fmt: skip
        r = {"intervals": budget, "heuristics": h, "best_heuristic": best, "spaces": {}}
        for space in spaces:
            runs = [run_one(sc, space, s, budget, a.evals, a.windows, say) for s in range(a.seeds)]
            r["spaces"][space] = {
                "curve": _mean_curve(runs),
                "steps_per_s": float(np.mean([x["steps_per_s"] for x in runs])),
                "decisions_per_s": float(np.mean([x["decisions_per_s"] for x in runs])),
                "final_rewards": [x["curve"][-1]["reward"] for x in runs],
            }
        result["scenarios"][sc] = r
    result["wall_s"] = time.perf_counter() - t0
    if a.out is not None:
        a.out.mkdir(parents=True, exist_ok=True)
        result["plots"] = [str(x) for x in plot(result, a.out)]
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
