"""Evaluate policies side by side on identical workloads: metrics, a table, JSON and plots.

Every policy (a heuristic from :mod:`baselines` or a trained agent: anything with SB3's
``predict``) runs the same episodes: episode ``i`` is ``env.reset(seed=seed + i)`` on the same
split of the same scenario, so the workload window and every arrival are identical across
policies (the simulator draws no randomness from the policy's actions).

Aggregation over episodes (:func:`evaluate`):

* latency percentiles and mean: **drop-aware**, over every request that arrived in every
  episode's window, pooled (``envs.sim.metrics.latencies``: a dropped request counts at the
  request timeout, so a policy dropping more than 1% of its requests has a p99 at or above it);
* ``slo_violation_rate`` (1 - SLO attainment), ``drop_rate``: over arrived requests, pooled;
  ``goodput_rps``: SLO-meeting requests per second of window, pooled;
* counts and money (``requests_*``, ``cold_starts*``, ``cost_usd``, ``gpu_seconds``,
  ``invalid_actions``): means per episode;
* ``models``: the same request metrics per model, pooled over episodes;
* ``episode_reward``: mean episode return (``episode_reward_std`` its standard deviation).

Per-episode values are kept under ``per_episode``; the latencies (pooled, per episode, per
model) and the first episode's timeline (for the plots) under the private key
``results["_raw"]``, which :func:`write_json` drops.

Windows: ``episodes=N`` draws N windows at random from the split's part of the scenario's span
(the env's reset); ``episodes="all"`` (a trace workload, held-out split) plays every window of
the held-out part back to back (:func:`tiled_windows`), so every held-out request is scored in
exactly one episode. ``results["windows"]`` says how many windows and requests the figures
cover and which windows held no request (:func:`empty_windows_note` words it for stderr).
"""

from __future__ import annotations

import inspect
import json
import math
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

from envs import ENV_ID
from envs.sim.metrics import percentiles

from .windows import coverage, coverage_line, tiled_windows

DROP_FLAG = 0.01  # the table marks a policy that drops more than 1% of its requests
METRICS = (
    "p50_latency_s",
    "p90_latency_s",
    "p99_latency_s",
    "mean_latency_s",
    "slo_violation_rate",
    "drop_rate",
    "goodput_rps",
    "requests_arrived",
    "requests_completed",
    "requests_dropped",
    "cold_starts",
    "cold_starts_local_mem",
    "cold_starts_remote_mem",
    "cold_starts_disk",
    "cold_starts_cloud",
    "cost_usd",
    "gpu_seconds",
    "gpu_utilization",
    "episode_reward",
    "episode_reward_std",
    "invalid_actions",
    "wall_s",
)
_MEAN_KEYS = (
    "requests_arrived",
    "requests_completed",
    "requests_dropped",
    "cold_starts",
    "cold_starts_local_mem",
    "cold_starts_remote_mem",
    "cold_starts_disk",
    "cold_starts_cloud",
    "autostarts",
    "cost_usd",
    "gpu_seconds",
    "invalid_actions",
)


def make_env(scenario: str, split: str = "eval", overrides: dict | None = None) -> gym.Env:
    """The raw env (no wrappers) for ``scenario``; errors in the scenario raise ConfigError."""
    import envs  # noqa: F401  (registers the id)

    return gym.make(
        ENV_ID, scenario=scenario, split=split, disable_env_checker=True, **(overrides or {})
    ).unwrapped


def _accepts_masks(policy) -> bool:
    try:
        params = inspect.signature(policy.predict).parameters
    except (TypeError, ValueError):
        return False
    return "action_masks" in params


def _snapshot(env) -> tuple[float, float, int, int, int]:
    """(t, arrivals so far, instances, warm instances, queued) of the env's simulator now."""
    sim = env.sim
    arrived = float((sim.arrived - sim.offsets[:-1]).sum())
    inst = warm = queue = 0
    for m in range(sim.M):
        idle, busy, loading = sim.counts(m)
        inst += idle + busy + loading
        warm += idle + busy
        queue += sim.queue_len(m)
    return float(sim.now), arrived, inst, warm, queue


_EPISODE_KEYS = (
    "p50_latency_s", "p90_latency_s", "p99_latency_s", "mean_latency_s", "slo_attainment",
    "slo_violation_rate", "drop_rate", "goodput_rps", "requests_arrived", "requests_completed",
    "requests_dropped", "cold_starts", "cold_starts_local_mem", "cold_starts_remote_mem",
    "cold_starts_disk", "cold_starts_cloud", "autostarts", "cost_usd", "gpu_seconds",
    "gpu_utilization",
)  # fmt: skip


def run_episode(
    env, policy, seed: int, record_timeline: bool = False, bar=None, start_s: float | None = None
) -> dict:
    """One episode of ``policy`` on ``env`` (raw env) from ``env.reset(seed=seed)``, in the
    window that starts at ``start_s`` (source seconds) if given, else in one the env draws.

    Returns the episode's metrics, its drop-aware latencies per model under
    ``"_model_latencies"`` and, with
    ``record_timeline``, per-step arrays under ``"_timeline"``.
    """
    from envs.sim.metrics import latencies, summary

    t0 = time.perf_counter()
    if hasattr(policy, "bind"):
        policy.bind(env)
    obs, _ = env.reset(seed=int(seed), options=None if start_s is None else {"start_s": start_s})
    masks = _accepts_masks(policy)
    state, start = None, np.ones((1,), dtype=bool)
    total, done, info = 0.0, False, {}
    rows = [_snapshot(env)] if record_timeline else None
    while not done:
        kw = {"action_masks": env.action_masks()} if masks else {}
        action, state = policy.predict(
            obs, state=state, episode_start=start, deterministic=True, **kw
        )
        obs, reward, terminated, truncated, info = env.step(action)
        start = np.zeros((1,), dtype=bool)
        total += float(reward)
        done = terminated or truncated
        if info.get("focus", 0) == 0:  # time advanced: one control interval
            if rows is not None:
                rows.append(_snapshot(env))
            if bar is not None:
                bar.update(1)
    sim = env.sim
    s = summary(sim, per_model=True)
    ep = {k: s[k] for k in _EPISODE_KEYS}
    ep.update(
        slo_met=round(s["slo_attainment"] * s["requests_arrived"]),
        window_s=s["window_s"],
        episode_reward=total,
        invalid_actions=int(info.get("invalid_actions", 0)),
        start_s=float(getattr(env, "start_s", 0.0)),
        seed=int(seed),
        wall_s=time.perf_counter() - t0,
        models=s["models"],
    )
    ep["_model_latencies"] = [latencies(sim, m) for m in range(sim.M)]
    if rows is not None:
        a = np.array(rows, dtype=float)
        dt = np.diff(a[:, 0], prepend=a[0, 0])
        rate = np.divide(np.diff(a[:, 1], prepend=0.0), dt, out=np.zeros(len(a)), where=dt > 0)
        ep["_timeline"] = {
            "t_s": a[:, 0],
            "demand_rps": rate,
            "instances": a[:, 2],
            "warm": a[:, 3],
            "queue": a[:, 4],
        }
    return ep


def _request_stats(lat: np.ndarray, arrived: int, dropped: int, met: int, window_s: float) -> dict:
    """Pooled drop-aware request metrics (see the module docstring)."""
    out: dict = {}
    for name, q in zip(("p50", "p90", "p99"), percentiles(lat, (50, 90, 99)), strict=True):
        out[f"{name}_latency_s"] = q
    out["mean_latency_s"] = float(lat.mean()) if lat.size else float("nan")
    out["slo_violation_rate"] = 1.0 - met / arrived if arrived else 0.0
    out["drop_rate"] = dropped / arrived if arrived else 0.0
    out["goodput_rps"] = met / window_s if window_s > 0 else 0.0
    return out


def _aggregate(eps: list[dict], privileged: bool) -> dict:
    lat = np.concatenate([np.concatenate(e["_model_latencies"]) for e in eps])
    window = sum(e["window_s"] for e in eps)
    out = _request_stats(
        lat,
        sum(e["requests_arrived"] for e in eps),
        sum(e["requests_dropped"] for e in eps),
        sum(e["slo_met"] for e in eps),
        window,
    )
    for k in _MEAN_KEYS:
        out[k] = float(np.mean([e[k] for e in eps]))
    gpu_s = sum(e["gpu_seconds"] for e in eps)
    busy = sum(e["gpu_utilization"] * e["gpu_seconds"] for e in eps)
    out["gpu_utilization"] = busy / gpu_s if gpu_s > 0 else 0.0
    rewards = [e["episode_reward"] for e in eps]
    out["episode_reward"] = float(np.mean(rewards))
    out["episode_reward_std"] = float(np.std(rewards))
    out["wall_s"] = float(sum(e["wall_s"] for e in eps))
    out["privileged"] = bool(privileged)
    models = {}
    for m, name in enumerate(eps[0]["models"]):
        rows = [e["models"][name] for e in eps]
        met = sum(round(r["slo_attainment"] * r["requests_arrived"]) for r in rows)
        models[name] = _request_stats(
            np.concatenate([e["_model_latencies"][m] for e in eps]),
            sum(r["requests_arrived"] for r in rows),
            sum(r["requests_dropped"] for r in rows),
            met,
            window,
        )
        for k in ("requests_arrived", "requests_dropped", "cold_starts"):
            models[name][k] = float(np.mean([r[k] for r in rows]))
    out["models"] = models
    out["per_episode"] = [
        {k: v for k, v in e.items() if not k.startswith("_") and k != "models"} for e in eps
    ]
    return out


def evaluate(
    scenario: str,
    policies: dict[str, object],
    episodes: int | str = 3,
    seed: int = 0,
    split: str = "eval",
    overrides: dict | None = None,
    progress: bool = True,
    record_timeline: bool = True,
) -> dict:
    """Run every policy for ``episodes`` episodes (seeds ``seed .. seed + episodes - 1``).

    Args:
        scenario: Preset name or YAML path.
        policies: ``name -> policy`` (anything with ``predict``; ``bind(env)`` is called before
            each episode when present; ``action_masks`` is passed when ``predict`` accepts it).
        episodes: Episodes per policy (>= 1), in windows the env draws; or ``"all"``: every
            window of the held-out part of a trace, back to back (:func:`tiled_windows`;
            needs ``split="eval"``).
        seed: Seed of the first episode.
        split: ``"eval"`` (held-out windows) or ``"train"``.
        overrides: Scenario overrides (``{"episode_s": 300}``).
        progress: Show a tqdm progress bar on stderr (when stderr is a terminal).
        record_timeline: Keep the first episode's per-step timeline for :func:`plot_results`.

    Returns:
        ``{"policies": {name: metrics}, "scenario", "split", "episodes", "seed", "overrides",
        "episode_s", "step_s", "n_steps", "windows", "_raw": {name: {"latencies",
        "episode_latencies", "model_latencies", "timeline"}}}`` (``episode_latencies``: each
        episode's latencies, in episode order; ``model_latencies``: model name -> that model's
        pooled latencies); see the module docstring for the aggregation and ``windows``.

    Raises:
        ValueError: Bad arguments, scenario or overrides (``ConfigError`` is a ``ValueError``).
    """
    tiled = episodes == "all"
    if not tiled and (not isinstance(episodes, int) or isinstance(episodes, bool) or episodes < 1):
        raise ValueError(f"episodes must be an integer >= 1 or 'all', got {episodes!r}")
    if tiled and split != "eval":
        raise ValueError(
            f"episodes='all' tiles the held-out part: split must be 'eval', got {split!r}"
        )
    if not policies:
        raise ValueError("evaluate() needs at least one policy")
    for name, pol in policies.items():
        if not hasattr(pol, "predict"):
            raise ValueError(f"policy {name!r} has no predict() method")
    overrides = dict(overrides or {})
    probe = make_env(scenario, split, overrides)
    sc = probe.scenario
    n_steps = sc.n_steps
    probe.close()
    plan = tiled_windows(sc) if tiled else [(None, sc.episode_s)] * episodes
    # One env per episode length: the full one, and the tiling's shorter last episode, which
    # may reach one step past the trace's end (silence).
    env_overrides = {sc.episode_s: overrides}
    for _, length in plan:
        if length != sc.episode_s:
            env_overrides[length] = {**overrides, "episode_s": length,
                                     "workload__pad_s": sc.step_s * sc.time_scale}  # fmt: skip
    results: dict = {
        "policies": {},
        "scenario": sc.name,
        "split": split,
        "episodes": len(plan),
        "seed": seed,
        "overrides": overrides,
        "episode_s": float(sc.episode_s),
        "step_s": float(sc.step_s),
        "n_steps": n_steps,
        "_raw": {},
    }
    from tqdm.auto import tqdm

    total = len(policies) * sum(round(length / sc.step_s) for _, length in plan)
    with tqdm(
        total=total, disable=None if progress else True, file=sys.stderr, unit="step", leave=False,
        desc=f"evaluate {sc.name}", mininterval=0.5,
    ) as bar:  # fmt: skip
        for name, pol in policies.items():
            bar.set_postfix_str(name)
            made = {}
            try:
                eps = []
                for i, (start, length) in enumerate(plan):
                    if length not in made:
                        made[length] = make_env(scenario, split, env_overrides[length])
                    eps.append(run_episode(
                        made[length], pol, seed + i, record_timeline and i == 0, bar, start
                    ))  # fmt: skip
            finally:
                for env in made.values():
                    env.close()
            results["policies"][name] = _aggregate(eps, getattr(pol, "privileged", False))
            per_ep = [np.concatenate(e["_model_latencies"]) for e in eps]
            results["_raw"][name] = {
                "latencies": np.concatenate(per_ep),
                "episode_latencies": per_ep,
                "model_latencies": {mn: np.concatenate([e["_model_latencies"][m] for e in eps])
                                    for m, mn in enumerate(eps[0]["models"])},  # fmt: skip
                "timeline": eps[0].get("_timeline"),
            }
            results.setdefault("windows", coverage(sc, eps, tiled))
    return results


# ================================================================================ table ========
def _fmt_s(x: float) -> str:
    if x is None or not math.isfinite(x):
        return "-"
    if x >= 100:
        return f"{x:.0f}"
    if x >= 1:
        return f"{x:.2f}"
    return f"{x:.3f}"


def _speedup(base: float, x: float) -> str:
    if not (math.isfinite(base) and math.isfinite(x)) or x <= 0:
        return "-"
    r = base / x
    return f"{r:.0f}x" if r >= 100 else f"{r:.2f}x" if r >= 0.1 else f"{r:.2g}x"


def format_table(results: dict, baseline: str | None = "baseline") -> str:
    """A Markdown table (aligned for the terminal): one row per policy.

    Columns: drop-aware p50, p99 and mean latency (s), the drop rate beside them, SLO
    violation rate, dropped requests, cold starts, cost ($) and episode reward (per-episode
    means), and, when ``baseline`` is one of the policies, the p50 and p99 speedups over it
    (baseline latency / policy latency). A policy dropping more than 1% of its requests is
    marked ``!``; privileged policies (those that read the simulator) ``*``.
    """
    pols = results["policies"]
    base = pols.get(baseline) if baseline else None
    head = ["policy", "p50 s", "p99 s", "drop %", "mean s", "SLO viol", "dropped", "cold starts",
            "cost $", "reward"]  # fmt: skip
    if base is not None:
        head += [f"p50 vs {baseline}", f"p99 vs {baseline}"]
    rows = []
    for name, r in pols.items():
        row = [
            name + (" *" if r.get("privileged") else "")
            + (" !" if r.get("drop_rate", 0.0) > DROP_FLAG else ""),
            _fmt_s(r["p50_latency_s"]),
            _fmt_s(r["p99_latency_s"]),
            f"{100 * r.get('drop_rate', 0.0):.2f}%",
            _fmt_s(r["mean_latency_s"]),
            f"{100 * r['slo_violation_rate']:.1f}%",
            f"{r['requests_dropped']:.1f}",
            f"{r['cold_starts']:.1f}",
            f"{r['cost_usd']:.2f}",
            f"{r['episode_reward']:.1f}",
        ]
        if base is not None:
            row += [
                _speedup(base["p50_latency_s"], r["p50_latency_s"]),
                _speedup(base["p99_latency_s"], r["p99_latency_s"]),
            ]
        rows.append(row)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]

    def line(cells):
        return (
            "| "
            + " | ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            )
            + " |"
        )

    sep = (
        "|"
        + "|".join(("-" * (w + 1) + ("-" if i == 0 else ":")) for i, w in enumerate(widths))
        + "|"
    )
    out = [line(head), sep, *(line(r) for r in rows)]
    notes = (
        f"{results.get('scenario')} ({results.get('split')} split), {results.get('episodes')} "
        f"episode(s) of {results.get('episode_s', float('nan')):g} s from seed {results.get('seed')}; "
        "latencies (drop-aware: a dropped request counts at the timeout) and rates pooled over "
        "episodes; counts, cost and reward are per-episode means."
    )
    out.append("")
    out.append(notes)
    cover = coverage_line(results)
    if cover:
        out.append(cover)
    if any(r.get("drop_rate", 0.0) > DROP_FLAG for r in pols.values()):
        out.append(f"! drops more than {100 * DROP_FLAG:g}% of its requests.")
    if any(r.get("privileged") for r in pols.values()):
        out.append("* privileged: reads the simulator's state, not just the observation.")
    return "\n".join(out)


# ================================================================================= json =========
def _clean(x):
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items() if not str(k).startswith("_")}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, np.ndarray):
        return [_clean(v) for v in x.tolist()]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(float(x)) else None
    if x is None or isinstance(x, str):
        return x
    return str(x)


def write_json(results: dict, path) -> None:
    """Write ``results`` without its private keys; NaN and infinities become ``null``."""
    from .fileio import atomic_write

    text = json.dumps(_clean(results), indent=2, allow_nan=False) + "\n"
    atomic_write(Path(path), lambda f: f.write(text.encode()))


def plot_results(results: dict, out_dir) -> list[Path]:
    """Write the PNGs (see :mod:`agents.plots`) and return their paths."""
    from .plots import plot_results as _plot

    return _plot(results, out_dir)
