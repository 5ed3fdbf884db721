"""SB3 callbacks: cluster metrics, held-out evaluation against the heuristics, the run's
hyperparameters, the latency histogram, atomic checkpoints and a clean stop on a signal.

TensorBoard keys (SB3's own ``rollout/``, ``train/``, ``time/`` are kept):

| key | what |
|---|---|
| ``cluster/<metric>`` | mean over the training episodes finished since the last log: drop-aware ``p50_latency_s``, ``p99_latency_s``, ``mean_latency_s`` (a dropped request counts at the timeout, as in ``evaluate.py`` and its JSON), ``slo_violation_rate``, ``drop_rate``, ``goodput_rps``, ``gpu_utilization``, ``requests_dropped``, ``cost_usd`` (per episode), ``cold_starts``, ``cold_starts_<tier>``, ``invalid_actions``, ``reward_<component>`` (dollars); ``cluster/episodes`` counts them |
| ``cluster/latency_s`` | histogram of those episodes' request latencies |
| ``eval/mean_reward``, ``eval/<metric>`` | the agent on held-out windows (``split="eval"``, fixed seeds) |
| ``eval/<policy>/<metric>`` | each reference heuristic on the same windows (computed once) |
| ``eval/references_beaten`` | how many references the agent's mean reward exceeds |
| ``valid/mean_reward``, ``valid/<metric>``, ``valid/<teacher>/<metric>`` | model selection (``valid_freq``): the agent and the cloned teacher on fixed training-split windows; ``valid/best_reward`` the best so far |
| ``hyperparameters`` (text) | the resolved hyperparameters and arguments, at the start |

The custom-scalars tab shows the agent's eval reward and every reference's on one chart.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import HParam, TensorBoardOutputFormat

from .loading import BEST_MODEL, save_agent
from .wrappers import ENV_ID

TIERS = ("local_mem", "remote_mem", "disk", "cloud")
EPISODE_KEYS = (
    "p50_latency_s", "p99_latency_s", "mean_latency_s", "slo_violation_rate", "drop_rate",
    "goodput_rps", "gpu_utilization", "requests_dropped", "cost_usd", "cold_starts",
    *(f"cold_starts_{t}" for t in TIERS), "invalid_actions",
)  # fmt: skip
EVAL_KEYS = ("p50_latency_s", "p99_latency_s", "slo_violation_rate", "drop_rate", "goodput_rps",
             "cost_usd", "requests_dropped")  # fmt: skip
NOT_SCALAR = ("stdout", "log", "json", "csv")  # formats that cannot show text or histograms


def _nanmean(values: Sequence[float]) -> float:
    a = np.asarray(values, dtype=np.float64)
    a = a[~np.isnan(a)]
    return float(a.mean()) if a.size else float("nan")


def _tb_writer(logger) -> Any:
    for fmt in logger.output_formats:
        if isinstance(fmt, TensorBoardOutputFormat):
            return fmt.writer
    return None


# ----------------------------------------------------------------------- cluster metrics ----
class ClusterMetricsCallback(BaseCallback):
    """Logs ``cluster/*`` from the final-step ``info`` of training episodes (see module table).

    Values are averaged over the episodes finished since SB3 last wrote the logs (detected by
    the logger having been cleared), so each point is a fresh average, whatever the algorithm's
    logging rhythm. Latencies come from :class:`agents.wrappers.EpisodeLatencies`.

    Args:
        max_latencies: Cap on the latencies kept for one histogram.
    """

    def __init__(self, max_latencies: int = 50_000, verbose: int = 0) -> None:
        super().__init__(verbose)
        self.max_latencies = max_latencies
        self._values: dict[str, list[float]] = {}
        self._latencies: list[np.ndarray] = []
        self.episodes_seen = 0

    def _on_step(self) -> bool:
        for info in self.locals.get("infos", ()):
            if "p99_latency_s" not in info:
                continue
            if "cluster/episodes" not in self.logger.name_to_value:  # logged since: start afresh
                self._values, self._latencies = {}, []
            self.episodes_seen += 1
            for k in EPISODE_KEYS:
                if k in info:
                    self._values.setdefault(k, []).append(float(info[k]))
            for k, v in (info.get("episode_reward_components") or {}).items():
                self._values.setdefault(f"reward_{k}", []).append(float(v))
            lat = info.get("latencies_s")
            if lat is not None and sum(a.size for a in self._latencies) < self.max_latencies:
                self._latencies.append(np.asarray(lat, dtype=np.float32))
            for k, vals in self._values.items():
                self.logger.record(f"cluster/{k}", _nanmean(vals))
            self.logger.record("cluster/episodes", len(next(iter(self._values.values()), [])))
            if self._latencies:
                lat_all = np.concatenate(self._latencies)
                if lat_all.size:
                    self.logger.record(
                        "cluster/latency_s", th.as_tensor(lat_all), exclude=NOT_SCALAR
                    )
        return True


# ---------------------------------------------------------------------- held-out rollouts ----
def run_episodes(
    policy,
    make_env: Callable[[], gym.Env],
    seeds: Sequence[int],
    deterministic: bool = True,
) -> list[dict[str, float]]:
    """Roll ``policy`` (the ``predict`` interface) through one episode per seed.

    The env is the raw env (no wrapper). Policies with ``bind(env)`` (the heuristics of
    :mod:`baselines`, :class:`agents.loading.AgentPolicy`) are bound to it once; each episode
    starts with ``episode_start=True``, which resets their per-episode state.

    Returns:
        One dict per episode: ``episode_reward``, ``episode_length`` and the final-step metrics.
    """
    env = make_env()
    out = []
    if hasattr(policy, "bind"):
        policy.bind(env)
    try:
        for seed in seeds:
            obs, _ = env.reset(seed=int(seed))
            state, start = None, np.ones((1,), dtype=bool)
            total, n, done, info = 0.0, 0, False, {}
            while not done:
                action, state = policy.predict(
                    obs, state=state, episode_start=start, deterministic=deterministic
                )
                obs, reward, terminated, truncated, info = env.step(action)
                start = np.zeros((1,), dtype=bool)
                total += float(reward)
                n += 1
                done = terminated or truncated
            ep = {"episode_reward": total, "episode_length": float(n)}
            ep.update({k: float(info[k]) for k in EVAL_KEYS if k in info})
            if "requests_arrived" in info:  # the window's requests (0: an empty window)
                ep["requests_arrived"] = float(info["requests_arrived"])
            out.append(ep)
    finally:
        env.close()
    return out


def summarize(episodes: list[dict[str, float]]) -> dict[str, float]:
    """Mean of each metric over episodes (NaN-aware)."""
    keys = episodes[0].keys() if episodes else ()
    return {k: _nanmean([e[k] for e in episodes]) for k in keys}


class HeldOutEvalCallback(BaseCallback):
    """Every ``eval_freq`` steps, evaluates the agent on held-out windows; logs ``eval/``.

    The reference policies are evaluated once, on the same windows and seeds, and their values
    logged beside the agent's at every evaluation (constant lines to overtake).

    Args:
        agent_fn: ``model -> policy`` wrapping the live model (normalisation, action mapping).
        scenario, overrides: The env, built with ``split="eval"``.
        eval_freq: Evaluate every this many total env steps (across envs); <= 0 disables.
        n_episodes: Episodes per evaluation; their seeds are ``seed, seed + 1, ...``.
        references: ``name -> policy`` (from :func:`baselines.make_policy`), may be empty.
        split: The windows' split (``"eval"``: held out).
        prefix: TensorBoard prefix of the logged values.
    """

    def __init__(
        self,
        agent_fn: Callable[[Any], Any],
        scenario: str,
        overrides: dict,
        eval_freq: int,
        n_episodes: int,
        seed: int,
        references: dict[str, Any] | None = None,
        verbose: int = 0,
        split: str = "eval",
        prefix: str = "eval",
    ) -> None:
        super().__init__(verbose)
        self.split, self.prefix = split, prefix
        self.agent_fn = agent_fn
        self.scenario = scenario
        self.overrides = dict(overrides)
        self.eval_freq = int(eval_freq)
        self.seeds = [seed + i for i in range(int(n_episodes))]
        self.references = dict(references or {})
        self.reference_results: dict[str, dict[str, float]] | None = None
        self.last_result: dict[str, float] | None = None
        self._last_eval = 0
        self._warned = False

    def make_env(self) -> gym.Env:
        import envs  # noqa: F401

        return gym.make(ENV_ID, scenario=self.scenario, split=self.split, **self.overrides)

    def _init_callback(self) -> None:
        self._last_eval = self._grid(self.model.num_timesteps)
        writer = _tb_writer(self.logger)
        if writer is not None and self.eval_freq > 0 and self.prefix == "eval":
            names = ["eval/mean_reward"] + [f"eval/{r}/episode_reward" for r in self.references]
            writer.add_custom_scalars(
                {"agent vs references (held-out windows)": {
                    "episode reward": ["Multiline", names],
                    "p99 latency (s)": ["Multiline", ["eval/p99_latency_s"] + [
                        f"eval/{r}/p99_latency_s" for r in self.references]],
                    "SLO violation rate": ["Multiline", ["eval/slo_violation_rate"] + [
                        f"eval/{r}/slo_violation_rate" for r in self.references]],
                }}
            )  # fmt: skip

    def evaluate_references(self) -> dict[str, dict[str, float]]:
        if self.reference_results is None:
            self.reference_results = {
                name: summarize(run_episodes(pol, self.make_env, self.seeds))
                for name, pol in self.references.items()
            }
        return self.reference_results

    def _warn_empty(self, episodes: list[dict]) -> None:
        """Once per run: say how many of the windows held no request (a sparse trace), whose
        latency figures are then undefined and left out of the ``/`` curves' means."""
        if self._warned:
            return
        self._warned = True
        empty = [s for s, e in zip(self.seeds, episodes, strict=True)
                 if e.get("requests_arrived") == 0]  # fmt: skip
        if empty:
            print(f"train.py: warning: {len(empty)} of {len(self.seeds)} {self.prefix}/ windows "
                  f"(episode seeds {', '.join(map(str, empty))}, split {self.split!r}) held no "
                  "request: their latency figures are undefined and the curves average the "
                  "others; more --eval-episodes, or a denser trace, give them requests",
                  file=sys.stderr)  # fmt: skip

    def _grid(self, n: int) -> int:
        """The last multiple of ``eval_freq`` at or before ``n``: evaluations stay on the grid
        of a run that never stopped, also after ``--resume`` at any step."""
        return (n // self.eval_freq) * self.eval_freq if self.eval_freq > 0 else n

    def _on_step(self) -> bool:
        if self.eval_freq > 0 and self.num_timesteps - self._last_eval >= self.eval_freq:
            self._last_eval = self._grid(self.num_timesteps)
            self.evaluate()
        return True

    def evaluate(self) -> dict[str, float]:
        t0 = time.perf_counter()
        refs = self.evaluate_references()
        episodes = run_episodes(self.agent_fn(self.model), self.make_env, self.seeds)
        self._warn_empty(episodes)  # the windows are the same every time: said once
        res = summarize(episodes)
        self.last_result = res
        pre = self.prefix
        self.logger.record(f"{pre}/mean_reward", res["episode_reward"])
        self.logger.record(f"{pre}/mean_ep_length", res["episode_length"])
        for k in EVAL_KEYS:
            if k in res:
                self.logger.record(f"{pre}/{k}", res[k])
        beaten = 0
        for name, r in refs.items():
            for k in ("episode_reward", *EVAL_KEYS):
                if k in r:
                    self.logger.record(f"{pre}/{name}/{k}", r[k])
            beaten += int(res["episode_reward"] > r["episode_reward"])
        if refs:
            self.logger.record(f"{pre}/references_beaten", beaten)
        self.on_result(res)
        self.logger.record(f"time/{pre}_s", time.perf_counter() - t0)
        self.logger.dump(self.num_timesteps)
        if self.verbose:
            print(f"{pre} @ {self.num_timesteps}: reward {res['episode_reward']:.2f}, "
                  f"beats {beaten}/{len(refs)} references")  # fmt: skip
        return res

    def on_result(self, res: dict[str, float]) -> None:
        """Hook: called with each evaluation's summary before it is written."""


class BestOnValidation(HeldOutEvalCallback):
    """Model selection: every ``eval_freq`` steps (and once at the start, before any policy
    update: the clone), evaluates the agent on fixed *training-split* windows (``split="train"``,
    seeds from ``seed``: draws that no training episode was seeded with, never the held-out
    part that the final comparison plays) and keeps the best so far as ``best_model.zip`` (with
    its statistics inside), its step and reward in ``best.json``; logs ``valid/``. The
    references (the cloned teacher) play the same windows once, as a line to beat.

    ``best.json`` is read back on ``--resume``, so a resumed run keeps its best.

    Args:
        run_dir: The run folder.
        meta: ``coldstart_meta`` of the saved model.
        Others: As :class:`HeldOutEvalCallback`.
    """

    def __init__(self, agent_fn, scenario: str, overrides: dict, eval_freq: int, n_episodes: int,
                 seed: int, run_dir: str | Path, meta: dict, references=None,
                 verbose: int = 0) -> None:  # fmt: skip
        super().__init__(agent_fn, scenario, overrides, eval_freq, n_episodes, seed, references,
                         verbose, split="train", prefix="valid")  # fmt: skip
        self.run_dir = Path(run_dir)
        self.meta = meta
        self.best: dict | None = None
        f = self.run_dir / "best.json"
        if f.is_file():
            import json

            try:
                self.best = json.loads(f.read_text())
            except (OSError, ValueError):
                self.best = None

    def _on_training_start(self) -> None:
        if self.best is None:  # the start (the clone), before any update
            self.num_timesteps = self.model.num_timesteps
            self.evaluate()

    def on_result(self, res: dict[str, float]) -> None:
        import json

        from .fileio import atomic_write

        r = float(res["episode_reward"])
        if self.best is None or r > self.best["reward"]:
            self.model.coldstart_meta = self.meta
            save_agent(self.model, self.run_dir / BEST_MODEL,
                       self.model.get_vec_normalize_env())  # fmt: skip
            refs = {k: v["episode_reward"] for k, v in (self.reference_results or {}).items()}
            self.best = {"steps": int(self.num_timesteps), "reward": r,
                         "windows": {"split": "train", "seeds": self.seeds}, "references": refs}  # fmt: skip
            text = json.dumps(self.best, indent=1)
            atomic_write(self.run_dir / "best.json", lambda fh: fh.write(text.encode()))
        self.logger.record("valid/best_reward", self.best["reward"])


# ------------------------------------------------------------------------ critic warm-up ----
class CriticWarmup(BaseCallback):
    """Trains the critic alone for the first ``steps`` env steps: every policy update whose
    rollout ends at or before ``steps`` runs with the actor's parameters frozen (the shared
    feature extractor too, when the policy shares one), so a policy that starts good (a clone
    of a heuristic) meets its first policy gradients with a fitted baseline instead of a random
    critic's advantages. Decided at each rollout's end from ``num_timesteps``, so a ``--resume``
    inside the warm-up continues it and one after it never re-enters it."""

    def __init__(self, steps: int, say: Callable[[str], None] | None = None, verbose: int = 0):
        super().__init__(verbose)
        self.steps = int(steps)
        self.say = say
        self._frozen: bool | None = None

    def _actor(self) -> list:
        pol = self.model.policy
        params = [*pol.mlp_extractor.policy_net.parameters(), *pol.action_net.parameters()]
        if getattr(pol, "share_features_extractor", True):
            params += list(pol.features_extractor.parameters())
        return params

    def _on_rollout_end(self) -> None:
        frozen = self.model.num_timesteps <= self.steps
        if frozen != self._frozen:
            for p in self._actor():
                p.requires_grad_(not frozen)
            if self._frozen and not frozen and self.say is not None:
                self.say(f"critic fitted on {self.steps} steps; the actor trains from here")
            self._frozen = frozen
        self.logger.record("train/critic_warmup", float(frozen))

    def _on_training_end(self) -> None:
        for p in self._actor():
            p.requires_grad_(True)

    def _on_step(self) -> bool:
        return True


# ----------------------------------------------------------------------- hyperparameters ----
def _cell(v: Any) -> str:
    s = repr(v) if not isinstance(v, str) else v
    return s.replace("|", "\\|").replace("\n", " ")


def _hparam(v: Any) -> Any:
    if isinstance(v, (bool, int, str)) or (isinstance(v, float) and math.isfinite(v)):
        return v
    return str(v)


class HyperparamsCallback(BaseCallback):
    """At the start of training, writes the hyperparameters and arguments as a TensorBoard text
    table (``hyperparameters``) and in the HPARAMS tab (against ``eval/mean_reward`` and
    ``rollout/ep_rew_mean``)."""

    def __init__(self, hyperparams: dict, args: dict | None = None, verbose: int = 0) -> None:
        super().__init__(verbose)
        self.hyperparams = dict(hyperparams)
        self.args = dict(args or {})

    def _on_training_start(self) -> None:
        rows = ["| hyperparameter | value |", "|---|---|"]
        rows += [f"| {k} | {_cell(v)} |" for k, v in sorted(self.hyperparams.items())]
        if self.args:
            rows += ["", "| argument | value |", "|---|---|"]
            rows += [f"| {k} | {_cell(v)} |" for k, v in sorted(self.args.items())]
        self.logger.record("hyperparameters", "\n".join(rows), exclude=NOT_SCALAR)
        hp = {k: _hparam(v) for k, v in self.hyperparams.items()}
        self.logger.record(
            "hparams",
            HParam(hp, {"eval/mean_reward": 0.0, "rollout/ep_rew_mean": 0.0}),
            exclude=NOT_SCALAR,
        )
        self.logger.dump(self.num_timesteps)

    def _on_step(self) -> bool:
        return True


# ------------------------------------------------------------------------- checkpoints ----
class AtomicCheckpointCallback(BaseCallback):
    """Every ``save_freq`` total env steps, saves ``checkpoints/model_<N>_steps.zip`` (+
    ``vecnormalize_<N>_steps.pkl``) and refreshes ``model.zip`` (+ ``vecnormalize.pkl``), each
    through :func:`agents.loading.save_agent` (atomic; the statistics also inside the zip), and
    deletes all but the ``keep`` most recent checkpoints.

    Saves fall on multiples of ``save_freq`` (the first one at or after each multiple), also
    after ``--resume``: a run resumed at step 12,345 with ``save_freq`` 5,000 saves next at
    15,000, not at 17,345.

    Args:
        run_dir: The run folder.
        save_freq: Steps between saves; <= 0 disables.
        meta: Stored in the zip as ``coldstart_meta`` (see :mod:`agents.loading`).
        keep: Checkpoints kept (the most recent by step); 0 keeps every one.
    """

    def __init__(
        self, run_dir: str | Path, save_freq: int, meta: dict, verbose: int = 0, keep: int = 5
    ) -> None:
        super().__init__(verbose)
        self.run_dir = Path(run_dir)
        self.save_freq = int(save_freq)
        self.meta = meta
        self.keep = int(keep)
        self._last = 0

    def _init_callback(self) -> None:
        n = self.model.num_timesteps
        self._last = (n // self.save_freq) * self.save_freq if self.save_freq > 0 else n

    def save(self, checkpoint: bool = True) -> Path:
        """Save now; returns the path of ``model.zip``."""
        from .loading import stats_path

        self.model.coldstart_meta = self.meta
        vn = self.model.get_vec_normalize_env()
        n = self.num_timesteps
        if checkpoint:
            save_agent(self.model, self.run_dir / "checkpoints" / f"model_{n}_steps.zip", vn)
        path = save_agent(self.model, self.run_dir / "model.zip", vn)
        if checkpoint and self.keep > 0:
            old = sorted(
                (int(p.stem.split("_")[1]), p)
                for p in (self.run_dir / "checkpoints").glob("model_*_steps.zip")
                if p.stem.split("_")[1].isdigit()
            )
            for _, p in old[: -self.keep]:
                for f in (p, stats_path(p)):
                    f.unlink(missing_ok=True)
        if self.verbose:
            print(f"saved {path} at {n} steps")
        return path

    def _on_step(self) -> bool:
        if self.save_freq > 0 and self.num_timesteps - self._last >= self.save_freq:
            self._last = (self.num_timesteps // self.save_freq) * self.save_freq
            self.save()
        return True


class StopOnSignal(BaseCallback):
    """Stops training at the next step once :attr:`requested` is set (by a signal handler)."""

    def __init__(self) -> None:
        super().__init__(0)
        self.requested: str | None = None

    def _on_step(self) -> bool:
        return self.requested is None
