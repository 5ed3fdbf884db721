"""The study's statistics, ``study.json``, ``report.md`` and plots (from :mod:`agents.study`).

Scores are episode rewards, a matrix ``(runs, windows)`` per policy: the agent has one run per
training seed, a heuristic one run (it is deterministic, so further seeds would repeat it). Per
policy (:mod:`agents.stats`, 95% percentile bootstrap):

* ``reward_iqm`` -- IQM of every (run, window) score;
* ``reward_ci`` -- the hierarchical bootstrap: windows drawn with replacement, then seeds within
  each drawn window; for a heuristic that is the bootstrap over windows. The same scheme for every
  row, so the intervals compare (variation over windows and over training seeds);
* ``reward_ci_seeds`` (agent only) -- rliable's stratified bootstrap: seeds resampled within each
  window, windows fixed: the spread due to training seeds alone, on these windows;
* ``prob_agent_better`` (heuristics only) -- P(agent's score > the heuristic's on the same window),
  ties 1/2, averaged over windows; ``prob_ci`` with the hierarchical scheme (the same windows drawn
  for both), ``prob_ci_seeds`` with rliable's (windows fixed);
* ``drop_rate``, ``p99_latency_s``, ``goodput_rps``, ``slo_attainment``, ``cost_usd`` -- through
  ``agents.study_metrics.METRICS`` from each evaluation (pooled over its windows), for the agent the mean
  over seeds (each seed's values under ``per_seed``);
* ``p99_excess_s``, ``p99_excess_ci`` (heuristics only) -- the agent's ``p99_latency_s`` minus the
  heuristic's, and its bootstrap interval over windows (drawn alike for both) and seeds
  (:func:`agents.stats.percentile_excess_intervals`): how well these windows resolve the
  verdict's "p99 no worse" (absent where the evaluations were cached without their latencies).

A cross-trace entry (``"<source>-><trace>"``, with ``trained_on`` and ``trace``) has the same
statistics; ``report.md`` gives it the heading "trained on X, evaluated on Y" and gathers every
cross-trace entry in one table of where the agents still lose to the best heuristic there.
``windows`` is the number of windows evaluated (``--windows all``: the back-to-back windows of
the held-out part), ``coverage`` what they held (requests, empty windows), ``held_out_windows``
how many back-to-back windows a trace's held-out part holds (None for a synthetic workload).
"""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from . import stats
from .study_jobs import training_segments
from .training import FINAL_EVAL_SEED

BOOT_SEED = 0  # seed of every bootstrap in the study (same inputs, same intervals)
PROFILE_POINTS = 101  # thresholds of the performance profile


def _row(scores: np.ndarray, reps: int) -> dict:
    point, ci = stats.iqm_interval(scores, scheme="hierarchical", reps=reps, seed=BOOT_SEED)
    return {"reward_iqm": point, "reward_ci": list(ci), "runs": int(scores.shape[0])}


def _metrics(entries: list[dict]) -> dict:
    names = entries[0]["metrics"]
    out = {m: float(np.mean([e["metrics"][m] for e in entries])) for m in names}
    if len(entries) > 1:
        out["per_seed"] = {m: [e["metrics"][m] for e in entries] for m in names}
    return out


def _above(x: float, y: float) -> bool:
    """``x > y`` by more than float noise (:func:`agents.stats.exceeds`)."""
    return bool(stats.exceeds(x, y))


def judge(pols: dict, agent: str) -> dict:
    """The study's verdict for one entry: the best heuristic (highest reward IQM) and whether
    the agent beats it: its reward CI's lower bound above that IQM, a drop rate no higher and a
    drop-aware p99 no worse. Figures equal up to float noise are a tie (an agent that plays
    exactly as the heuristic does is not above it on reward, and no worse on the rest)."""
    heur = [n for n in pols if n != agent]
    best = max(heur, key=lambda n: pols[n]["reward_iqm"])
    a, b = pols[agent], pols[best]
    verdict = {
        "best_heuristic": best,
        "reward_ci_low_above_best_iqm": _above(a["reward_ci"][0], b["reward_iqm"]),
        "drop_rate_no_higher": not _above(a["drop_rate"], b["drop_rate"]),
        "p99_no_worse": not _above(a["p99_latency_s"], b["p99_latency_s"]),
    }
    verdict["agent_beats_best"] = all(verdict[k] for k in list(verdict)[1:])
    return verdict


def scenario_stats(ev: dict, agent: str, reps: int) -> dict:
    """The ``scenarios[label]`` entry of study.json from one entry's evaluations (a scenario,
    or a cross-trace evaluation). ``windows``: the number evaluated (every evaluation of an
    entry plays the same ones)."""
    seeds = sorted(ev["agent"])
    a_entries = [ev["agent"][k] for k in seeds]
    A = np.array([e["rewards"] for e in a_entries])
    windows = int(A.shape[1])
    row = _row(A, reps)
    row["reward_ci_seeds"] = list(
        stats.iqm_interval(A, scheme="stratified", reps=reps, seed=BOOT_SEED)[1]
    )
    pols = {agent: {**row, **_metrics(a_entries), "seeds": seeds, "scores": A.tolist()}}
    for name, e in ev["heuristics"].items():
        H = np.array([e["rewards"]])
        p, ci = stats.probability_of_improvement_interval(
            A, H, scheme="hierarchical", reps=reps, seed=BOOT_SEED
        )
        ci_s = stats.probability_of_improvement_interval(
            A, H, scheme="stratified", reps=reps, seed=BOOT_SEED
        )[1]
        pols[name] = {**_row(H, reps), "prob_agent_better": p, "prob_ci": list(ci),
                      "prob_ci_seeds": list(ci_s), **_metrics([e]),
                      "privileged": e["privileged"], "scores": H.tolist()}  # fmt: skip
    for name, (point, ci) in _p99_excess(ev, seeds, windows, reps).items():
        pols[name].update(p99_excess_s=point, p99_excess_ci=list(ci))
    verdict = judge(pols, agent)
    cov = a_entries[0].get("coverage") or {}  # arrivals do not depend on the policy
    return {"agent": agent, "windows": windows, "seeds": len(seeds), "policies": pols,
            "window_starts_s": a_entries[0]["window_starts_s"], "verdict": verdict,
            "coverage": {k: cov[k] for k in ("mode", "requests", "empty", "empty_ranges_s",
                                             "part_s", "played_s") if k in cov}}  # fmt: skip


def _p99_excess(ev: dict, seeds: list, windows: int, reps: int) -> dict:
    """``{heuristic: (point, (lo, hi))}``: the agent's drop-aware p99 minus each heuristic's,
    with its bootstrap interval (:func:`agents.stats.percentile_excess_intervals`), from each
    evaluation's window latencies; ``{}`` when an evaluation has none (cached before they were
    kept)."""
    from .study_eval import window_latencies

    def lat(entry):
        path = entry.get("_latency_path")
        return window_latencies(path, windows) if path else None

    agent = [lat(ev["agent"][k]) for k in seeds]
    refs = {name: lat(e) for name, e in ev["heuristics"].items()}
    if any(x is None for x in (*agent, *refs.values())):
        return {}
    return stats.percentile_excess_intervals(agent, refs, 99.0, reps=reps, seed=BOOT_SEED)


def build(args, plan: dict, jobs: list, evals: dict, command: str, wall_s: dict) -> dict:
    """The whole ``study.json`` document."""
    from .study_metrics import METRICS

    reps = args.reps or stats.DEFAULT_REPS
    scen, sources = {}, {}
    for label, ev in evals.items():
        spec = plan[label]
        scen[label] = scenario_stats(ev, args.algo, reps)
        scen[label].update(scenario=spec["scenario"], trace=spec["trace"],
                           overrides=spec["overrides"], episode_s=spec["episode_s"],
                           held_out_windows=spec["held_out_windows"])  # fmt: skip
        if spec.get("trained_on"):
            scen[label].update(trained_on=spec["trained_on"], note=spec.get("note"))
        for e in [*ev["heuristics"].values(), *ev["agent"].values()]:
            for m, s in e["sources"].items():
                sources.setdefault(m, set()).add(s)
    train_wall, segments = {}, {}
    for j in jobs:
        done = json.loads((Path(j.folder) / "done.json").read_text())
        train_wall[j.key] = done["wall_s"]
        segments[j.key] = training_segments(j)
        scen[j.scenario]["train_steps"] = done["target_steps"]
    for sc in scen.values():
        if sc.get("trained_on"):
            sc["train_steps"] = scen[sc["trained_on"]]["train_steps"]
    return {
        "command": command,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "algo": args.algo,
        "timesteps": args.timesteps,  # None: the hyperparameter file's (train_steps per scenario)
        "eval": {"split": "eval", "first_seed": FINAL_EVAL_SEED},
        "bootstrap": {"reps": reps, "confidence": stats.DEFAULT_CONFIDENCE, "seed": BOOT_SEED,
                      "reward_ci": "hierarchical: windows, then seeds within each window",
                      "reward_ci_seeds": "stratified (rliable): seeds within each window"},
        "metric_sources": {m: sorted(s) for m, s in sources.items()},
        "metric_keys": {m: v[0] for m, v in METRICS.items()},
        "wall_s": {**wall_s, "training": train_wall},
        # train.py processes per agent: a resumed run (> 1) continues on fresh windows, so it is
        # not bit for bit the run one uninterrupted process would have trained
        "training_segments": segments,
        "scenarios": scen,
    }  # fmt: skip


# ------------------------------------------------------------------------------- writing ----
def _safe(label: str) -> str:
    """A label as part of a file name (``azure->azure_llm_2023``: ``azure_on_azure_llm_2023``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", label.replace("->", "_on_"))


def _f(x: float, nd: int = 1) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.{nd}f}"


def _segments_line(segments: dict) -> str:
    resumed = {k: n for k, n in segments.items() if n > 1}
    if not resumed:
        return "Every agent trained in one uninterrupted process (`segments.jsonl`)."
    return ("Resumed agents (train.py processes; a resumed run continues on fresh windows, so it is "
            "not the run one process would have trained): "
            + ", ".join(f"{k} {n}" for k, n in resumed.items()) + ".")


def markdown(study: dict) -> str:
    w = study["wall_s"]
    lines = ["# Study", "", f"Command: `{study['command']}`", "",
             f"Wall time: {w['all_invocations']:.0f} s over {w['invocations']} invocation(s) "
             f"of the study, {w['this_invocation']:.0f} s for this one (finished jobs and cached "
             "evaluations are not redone). Training wall time per agent (all its "
             "processes): " + ", ".join(f"{k} {v:.0f} s"
                                        for k, v in study["wall_s"]["training"].items()),
             _segments_line(study.get("training_segments", {})), ""]  # fmt: skip
    b = study["bootstrap"]
    lines += [f"Intervals: 95% percentile bootstrap, {b['reps']} reps; reward CI {b['reward_ci']} "
              f"(for a heuristic, one run: over windows); agent's seed-only CI {b['reward_ci_seeds']}. "
              "P(agent better): per window P(agent seed > heuristic), ties 1/2, mean over windows.",
              "", "Metric sources: " + "; ".join(f"{m}: {', '.join(s)}"
                                                 for m, s in study["metric_sources"].items()), ""]  # fmt: skip
    head = "| policy | reward IQM [95% CI] | P(agent better) [CI] | drop rate | p99 s | goodput rps | SLO att. | cost $ |"
    cross = {k: sc for k, sc in study["scenarios"].items() if sc.get("trained_on")}
    if cross:
        lines += cross_summary(study, cross)
    for label, sc in study["scenarios"].items():
        if sc.get("trained_on"):
            title = (f"## {label}: trained on `{sc['trained_on']}`, evaluated on "
                     f"`{sc['trace']}`")  # fmt: skip
            what = (f"{study['algo']}, {sc['train_steps']} steps per seed on `{sc['trained_on']}` "
                    f"(no training here); the trace replayed on scenario `{sc['scenario']}`'s "
                    "cluster")  # fmt: skip
        else:
            title = f"## {label}"
            what = (f"{study['algo']}, {sc['train_steps']} steps per seed; scenario "
                    f"`{sc['scenario']}`" + (f", trace `{sc['trace']}`" if sc["trace"] else ""))
        lines += [title, "", what + "; " + windows_sentence(sc), "", head, "|" + "---|" * 8]
        for name, r in sc["policies"].items():
            lo, hi = r["reward_ci"]
            p = (f"{r['prob_agent_better']:.2f} [{r['prob_ci'][0]:.2f}, {r['prob_ci'][1]:.2f}]"
                 if "prob_agent_better" in r else "-")  # fmt: skip
            star = " *" if r.get("privileged") else ""
            nm = f"**{name}**" if name == sc["agent"] else name + star
            lines.append(f"| {nm} | {_f(r['reward_iqm'])} [{_f(lo)}, {_f(hi)}] | {p} | "
                         f"{100 * r['drop_rate']:.2f}% | {_f(r['p99_latency_s'], 2)} | "
                         f"{_f(r['goodput_rps'], 3)} | {100 * r['slo_attainment']:.1f}% | "
                         f"{_f(r['cost_usd'], 2)} |")  # fmt: skip
        v = sc["verdict"]
        a, best = sc["policies"][sc["agent"]], sc["policies"][v["best_heuristic"]]
        lines += ["", f"Agent's seed-only CI: [{_f(a['reward_ci_seeds'][0])}, "
                  f"{_f(a['reward_ci_seeds'][1])}]. Best heuristic: {v['best_heuristic']} "
                  f"(IQM {_f(best['reward_iqm'])}). Agent's CI lower bound above it: "
                  f"{'yes' if v['reward_ci_low_above_best_iqm'] else 'no'}; drop rate no higher: "
                  f"{'yes' if v['drop_rate_no_higher'] else 'no'}; p99 no worse: "
                  f"{'yes' if v['p99_no_worse'] else 'no'}{_excess_note(best)}.", ""]  # fmt: skip
        if "scores" in a and "scores" in best:
            lines += [paired_sentence(a["scores"], best["scores"], v["best_heuristic"]), ""]
    if any(
        r.get("privileged") for sc in study["scenarios"].values() for r in sc["policies"].values()
    ):
        lines.append("\\* privileged: reads the simulator's state, not just the observation.")
    return "\n".join(lines) + "\n"


def _excess_note(best: dict) -> str:
    """`` (the agent's p99 minus the best heuristic's: +x s, 95% CI [lo, hi] ...)`` or ``""``."""
    if "p99_excess_s" not in best:
        return ""
    lo, hi = best["p99_excess_ci"]
    return (f" (agent's p99 minus the best heuristic's: {best['p99_excess_s']:+.3f} s, 95% CI "
            f"[{lo:+.3f}, {hi:+.3f}] over windows and seeds)")  # fmt: skip


def paired_sentence(agent_scores, best_scores, best: str) -> str:
    """Window by window against the best heuristic (:func:`agents.stats.paired_gain`): each
    seed's mean over the windows, and the seed-averaged agent's gain per window."""
    g = stats.paired_gain(agent_scores, best_scores)
    seeds = ", ".join(_f(m) for m in g["run_means"])
    return (f"Paired with {best} on the same windows: the agent's mean over them by seed {seeds} "
            f"({best} {_f(g['y_mean'])}); averaged over seeds, ahead on {g['tasks_better']} of "
            f"{g['tasks']} windows, by {_f(g['mean'])} a window ({_f(g['min'])} to "
            f"{_f(g['max'])}).")


def windows_sentence(sc: dict) -> str:
    """The windows an entry's figures cover, its episode length, and what to mind about them
    (overlapping drawn windows, windows without a request, a shrunk episode)."""
    cov = sc.get("coverage") or {}
    ep = sc.get("episode_s")
    n, tiles = sc["windows"], sc.get("held_out_windows")
    if cov.get("mode") == "all":
        out = f"{sc['seeds']} seed(s) x all {n} back-to-back windows of the held-out part"
    else:
        out = f"{sc['seeds']} seed(s) x {n} held-out windows drawn at random"
    if ep:
        out += f", episodes of {ep:g} s"
    if "requests" in cov:
        out += f", {cov['requests']:,} requests"
    out += "."
    starts = sc.get("window_starts_s") or []
    if cov.get("mode") == "all" and cov.get("played_s") and len(starts) > 1:
        full, last = starts[1] - starts[0], cov["played_s"][1] - starts[-1]
        if last < full * (1 - 1e-9):
            out += (f" The last window is the part's rest, {last:g} of {full:g} trace seconds: "
                    "its reward is on a smaller scale.")  # fmt: skip
    if cov.get("mode") != "all" and tiles is not None and n > tiles:
        out += (f" The held-out part holds only {tiles} back-to-back window(s): the {n} drawn "
                "windows overlap, so they are not independent samples (`--windows all` / "
                "`--cross-windows all` plays each part once).")  # fmt: skip
    if cov.get("empty"):
        out += (f" {cov['empty']} of the {n} windows held no request: they add cost and reward, "
                "no latency.")  # fmt: skip
    if sc.get("note"):
        out += f" Note: {sc['note']}."
    return out


def cross_summary(study: dict, cross: dict) -> list[str]:
    """The cross-trace table: per (trained on, evaluated on), the agent against the best
    heuristic there, and on what it still loses."""
    lines = ["## Cross-trace: agents evaluated on traces they were not trained on", "",
             "Each row: the agents of one studied scenario (all its seeds, no further training), "
             "and every heuristic, on the held-out windows of another trace replayed on that "
             "scenario's cluster. \"Fails to beat it on\" lists where the agent is not shown "
             "better than the best heuristic there: reward (its 95% CI's lower bound not above "
             "the heuristic's IQM; a tie counts), drop rate (higher), p99 (worse).", "",
             "| trained on | evaluated on | windows | agent IQM [95% CI] | best heuristic (IQM) "
             "| P(agent better) [CI] | drop rate agent / best | p99 s agent / best "
             "| fails to beat it on |",
             "|" + "---|" * 9]  # fmt: skip
    for sc in cross.values():
        v = sc["verdict"]
        a, b = sc["policies"][sc["agent"]], sc["policies"][v["best_heuristic"]]
        loses = [what for what, ok in (("reward", v["reward_ci_low_above_best_iqm"]),
                                       ("drops", v["drop_rate_no_higher"]),
                                       ("p99", v["p99_no_worse"])) if not ok]  # fmt: skip
        mode = "all " if (sc.get("coverage") or {}).get("mode") == "all" else ""
        lines.append(
            f"| {sc['trained_on']} | `{sc['trace']}` | {mode}{sc['windows']} | "
            f"{_f(a['reward_iqm'])} [{_f(a['reward_ci'][0])}, {_f(a['reward_ci'][1])}] | "
            f"{v['best_heuristic']} ({_f(b['reward_iqm'])}) | {b['prob_agent_better']:.2f} "
            f"[{b['prob_ci'][0]:.2f}, {b['prob_ci'][1]:.2f}] | {100 * a['drop_rate']:.2f}% / "
            f"{100 * b['drop_rate']:.2f}% | {_f(a['p99_latency_s'], 2)} / "
            f"{_f(b['p99_latency_s'], 2)} | {', '.join(loses) or 'nothing (beats it)'} |"
        )
    return [*lines, ""]


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def plots(study: dict, out: Path) -> list[Path]:
    """Per scenario: reward intervals, a performance profile, cost against p99."""
    paths = []
    for label, sc in study["scenarios"].items():
        pols = sc["policies"]
        names = sorted(pols, key=lambda n: pols[n]["reward_iqm"])
        fig = Figure(figsize=(6.5, 0.35 * len(names) + 1.2))
        ax = fig.add_subplot()
        for i, n in enumerate(names):
            r = pols[n]
            c = "C3" if n == sc["agent"] else "C0"
            ax.plot(r["reward_ci"], [i, i], color=c, lw=6, alpha=0.5, solid_capstyle="butt")
            ax.plot([r["reward_iqm"]], [i], "|", color="k", ms=12)
        ax.set_yticks(range(len(names)), names)
        ax.set_xlabel("episode reward: IQM and 95% CI")
        ax.set_title(f"{label}: {sc['seeds']} seed(s) x {sc['windows']} windows")
        paths.append(_save(fig, out / f"intervals_{_safe(label)}.png"))

        allv = np.concatenate([np.ravel(pols[n]["scores"]) for n in names])
        taus = np.linspace(allv.min(), allv.max(), PROFILE_POINTS)
        fig = Figure(figsize=(6.5, 4))
        ax = fig.add_subplot()
        reps = min(study["bootstrap"]["reps"], 2000)
        for i, n in enumerate(reversed(names)):
            prof, lo, hi = stats.performance_profile_interval(
                np.array(pols[n]["scores"]), taus, scheme="hierarchical", reps=reps, seed=BOOT_SEED
            )
            c = "C3" if n == sc["agent"] else f"C{i % 10}"
            ax.plot(taus, prof, color=c, lw=2.5 if n == sc["agent"] else 1, label=n)
            ax.fill_between(taus, lo, hi, color=c, alpha=0.08, lw=0)
        ax.set_xlabel("episode reward threshold tau")
        ax.set_ylabel("fraction of (seed, window) scores > tau")
        ax.set_title(f"{label}: performance profile")
        ax.legend(fontsize=7)
        paths.append(_save(fig, out / f"profile_{_safe(label)}.png"))

        fig = Figure(figsize=(6, 4))
        ax = fig.add_subplot()
        for n in names:
            r = pols[n]
            ax.scatter(r["p99_latency_s"], r["cost_usd"], color="C3" if n == sc["agent"] else "C0")
            ax.annotate(n, (r["p99_latency_s"], r["cost_usd"]), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")  # fmt: skip
        ax.set_xlabel("p99 latency, s (drops counted, see metric_sources)")
        ax.set_ylabel("cost per window, $")
        ax.set_title(f"{label}: cost against p99")
        paths.append(_save(fig, out / f"cost_p99_{_safe(label)}.png"))
    return paths


def write(study: dict, out: Path) -> list[Path]:
    """``study.json``, ``report.md`` and the plots into ``out``; returns the plot paths."""
    from .evaluation import write_json

    paths = plots(study, out)
    write_json(study, out / "study.json")
    (out / "report.md").write_text(markdown(study))
    return paths


def main(argv: list[str] | None = None) -> int:
    """``python -m agents.study_report STUDY_JSON``: print the report of a ``study.json`` again
    (e.g. a committed one, after the report gained a line), without the study's run folders."""
    import argparse
    import sys

    p = argparse.ArgumentParser(prog="python -m agents.study_report", description=main.__doc__)
    p.add_argument("study_json", help="a study.json written by python -m agents.study")
    a = p.parse_args(argv)
    try:
        text = markdown(json.loads(Path(a.study_json).read_text()))
    except (OSError, ValueError, KeyError, TypeError) as e:
        what = f"missing key {e}" if isinstance(e, KeyError) else str(e).splitlines()[0]
        print(f"python -m agents.study_report: error: {a.study_json}: not a readable study.json "
              f"({what})", file=sys.stderr)  # fmt: skip
        return 2
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
