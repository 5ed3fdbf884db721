"""How far a study entry's drop-aware p99 is from flipping: requests in the tail, counted.

    python -m benchmarks.tail_margin STUDY_DIR --entry paper
    python -m benchmarks.tail_margin STUDY_DIR --entry trace-azure2019 --threshold 9.3

Replays, with :func:`agents.evaluation.evaluate` exactly as the study did (its cached evaluation
files name the scenario, overrides, windows and each seed's model), the best heuristic of the
entry and every seed's agent, and counts the requests whose drop-aware latency exceeds
``--threshold`` (default: the best heuristic's p99 in ``study.json``) by more than float noise
(:func:`agents.stats.exceeds`, the verdict's own tie rule: a request of the threshold's own
cold-start class, whose latency another policy reaches by another sum of the same times, is
not above it) against the 1% of
requests that a p99 leaves above it. A p99 set by cold starts is a step function: it stays at
one cold-start class while fewer requests than that 1% wait longer, and jumps to the next class
past it. Also: the most frequent latency above the threshold, and cold starts per episode by
source. ``--by-model`` adds, per model, the requests above the threshold and the cold starts
an episode of each policy (which deployments set the tail; every model is in the JSON either
way). Needs the study's folder (its ``runs/`` and ``evals/``), not only its ``study.json``.

Then the statistic the study's "p99 no worse" compares, with its resolution: the agents'
drop-aware p99 (each seed's over its windows pooled, averaged over seeds, as the study reports
it) minus the best heuristic's, and a 95% bootstrap interval over windows (drawn alike for
both) and seeds (:func:`agents.stats.percentile_excess_interval`, the study's bootstrap seed, so
the figure is its report's): an interval that straddles 0 says these windows cannot tell the
two tails apart. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from agents.stats import exceeds

_SOURCES = ("local_mem", "remote_mem", "disk", "cloud")


def tail(row: dict, latencies: np.ndarray, threshold: float) -> dict:
    """One policy's tail on the replayed windows (``evaluate``'s row and pooled latencies)."""
    above = latencies[exceeds(latencies, threshold)]
    vals, counts = np.unique(np.round(above, 2), return_counts=True)
    eps = row["per_episode"]
    return {
        "requests": int(latencies.size),
        "one_percent": latencies.size / 100.0,
        "above": int(above.size),
        "p99_latency_s": float(row["p99_latency_s"]),
        "mode_above_s": [float(vals[counts.argmax()]), int(counts.max())] if above.size else None,
        "cold_starts_per_episode": {s: float(np.mean([e[f"cold_starts_{s}"] for e in eps]))
                                    for s in _SOURCES},  # fmt: skip
    }


def by_model(row: dict, model_latencies: dict, threshold: float) -> dict:
    """Per model: its requests, how many lie above ``threshold`` and its cold starts an episode
    (``evaluate``'s per-model row and ``_raw`` per-model latencies)."""
    return {
        name: {
            "requests": int(lat.size),
            "above": int(exceeds(lat, threshold).sum()),
            "cold_starts_per_episode": float(row["models"][name]["cold_starts"]),
        }
        for name, lat in model_latencies.items()
    }


def _print_by_model(policies: dict) -> None:
    names = list(policies)
    models = [m for m in next(iter(policies.values()))["models"]
              if any(p["models"][m]["above"] for p in policies.values())]  # fmt: skip
    print("\nPer model, the models with a request above the threshold: requests above (cold "
          "starts an episode)")  # fmt: skip
    print("| model | requests | " + " | ".join(names) + " |")
    print("|---|---:|" + "---:|" * len(names))
    for m in models:
        cells = [f"{p['models'][m]['above']} ({p['models'][m]['cold_starts_per_episode']:.1f})"
                 for p in policies.values()]  # fmt: skip
        n = next(iter(policies.values()))["models"][m]["requests"]
        print(f"| {m} | {n} | " + " | ".join(cells) + " |")


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m benchmarks.tail_margin", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("study_dir", help="a study folder (python -m agents.study --out DIR)")
    p.add_argument("--entry", required=True, help="a scenario entry of its study.json")
    p.add_argument("--threshold", type=float, default=None,
                   help="seconds (default: the entry's best heuristic's p99)")  # fmt: skip
    p.add_argument("--by-model", action="store_true",
                   help="also print the per-model table (which deployments set the tail)")
    p.add_argument("--reps", type=int, default=None,
                   help="bootstrap replications of the p99 excess (default: agents.stats')")
    a = p.parse_args(argv)
    if a.reps is not None and a.reps < 1:
        p.error(f"--reps must be an integer >= 1, got {a.reps}")
    from agents import stats
    from agents.evaluation import evaluate
    from agents.loading import load_agent
    from agents.study_report import BOOT_SEED
    from agents.training import FINAL_EVAL_SEED
    from baselines import make_policy

    folder = Path(a.study_dir)
    try:
        sc = json.loads((folder / "study.json").read_text())["scenarios"][a.entry]
        best = sc["verdict"]["best_heuristic"]
        evals = {f: json.loads(f.read_text()) for f in (folder / "evals" / a.entry).glob("*.json")}
    except (OSError, ValueError, KeyError) as e:
        p.error(f"{folder}: no study entry {a.entry!r} with its evaluations ({e})")
    threshold = sc["policies"][best]["p99_latency_s"] if a.threshold is None else a.threshold
    policies = {}
    for f, ev in sorted(evals.items()):
        if ev.get("run") and ev.get("model"):  # an agent: runs/<entry>/seed<k>/<run>/<model>
            seed = f.stem.split("_")[0]
            path = folder / "runs" / a.entry / seed / ev["run"] / ev["model"]
            policies[seed] = (ev, lambda path=path: load_agent(path))
        elif f.stem.startswith(best + "_w"):
            policies[best] = (ev, lambda: make_policy(best))
    out = {"study": str(folder), "entry": a.entry, "threshold_s": threshold, "policies": {}}
    windows = {}  # policy -> each window's latencies
    print(f"{a.entry}: requests above {threshold:.2f} s (the 1% line: a p99 stays below it "
          f"while 'above' < '1%')")  # fmt: skip
    print("| policy | requests | 1% | above | p99 s | most frequent above (s x n) | cold starts "
          "an episode (local mem / remote mem / disk / cloud) |")
    print("|---|---:|---:|---:|---:|---|---|")
    for name, (ev, make) in policies.items():
        st = ev["settings"]
        res = evaluate(st["scenario"], {name: make()}, episodes=st["windows"], seed=FINAL_EVAL_SEED,
                       split="eval", overrides=st["overrides"], progress=False,
                       record_timeline=False)  # fmt: skip
        raw = res["_raw"][name]
        windows[name] = raw["episode_latencies"]
        t = out["policies"][name] = tail(res["policies"][name], raw["latencies"], threshold)
        t["models"] = by_model(res["policies"][name], raw["model_latencies"], threshold)
        mode = f"{t['mode_above_s'][0]:.2f} x {t['mode_above_s'][1]}" if t["mode_above_s"] else "-"
        cs = " / ".join(f"{v:.1f}" for v in t["cold_starts_per_episode"].values())
        print(f"| {name} | {t['requests']} | {t['one_percent']:.1f} | {t['above']} | "
              f"{t['p99_latency_s']:.2f} | {mode} | {cs} |", flush=True)  # fmt: skip
    if a.by_model and out["policies"]:
        _print_by_model(out["policies"])
    seeds = [n for n in windows if n != best]
    if best in windows and seeds:
        reps = a.reps or stats.DEFAULT_REPS
        point, ci = stats.percentile_excess_interval([windows[s] for s in seeds], windows[best],
                                                     99.0, reps=reps, seed=BOOT_SEED)  # fmt: skip
        out["p99_excess"] = {"reference": best, "seeds": seeds, "point_s": point,
                             "ci_s": list(ci), "reps": reps}  # fmt: skip
        print(f"\nAgents' p99 minus {best}'s: {point:+.4f} s, 95% CI [{ci[0]:+.4f}, {ci[1]:+.4f}] "
              f"(windows and seeds resampled, {reps} reps)")  # fmt: skip
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
