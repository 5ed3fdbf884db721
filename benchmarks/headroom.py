"""Headroom: how far a clairvoyant policy gets past the best heuristic, on the study's windows.

    python -m benchmarks.headroom --scenario paper
    python -m benchmarks.headroom --scenario azure
    python -m benchmarks.headroom --scenario paper --trace azure2019 -o workload__mapping=sample \\
        -o workload__min_requests=144 --label trace-azure2019

Plays the nine reference policies and :class:`baselines.hindsight.Hindsight` twice, knowing the
exact arrival times (``hindsight``) and knowing only each trace minute's count
(``hindsight-minute``: what a trace of per-minute counts holds; the requests' places inside the
minute are drawn at random), on the held-out windows ``agents.study`` plays (``--windows``
episodes from ``train.py``'s evaluation seed). Reports, per policy, the reward IQM with the
study's interval for a single run (bootstrap over windows), drops, p99 and cost, and for each
clairvoyant policy the study's criterion against the best heuristic (its interval's lower bound
above the heuristic's IQM, no more drops, no worse p99) and the paired per-window gain. The
last line is JSON (``--json PATH`` also writes it to a file).

A benchmark, not a test: it takes minutes (about 2 on ``paper`` here).
"""

from __future__ import annotations

from agents.cli import ExitingParser
from benchmarks.policy_rows import check_json_path, emit, episode_scores, policy_row


def main(argv=None) -> dict:
    import baselines
    from agents.evaluation import evaluate
    from agents.hyperparams import parse_assignments
    from agents.stats import paired_gain
    from agents.study_report import judge
    from agents.training import FINAL_EVAL_SEED
    from envs.scenarios import trace_overrides

    p = ExitingParser(prog="python -m benchmarks.headroom", label="benchmarks.headroom",
                      description=__doc__.split("\n")[0])  # fmt: skip
    p.add_argument("--scenario", default="paper")
    p.add_argument("--windows", type=int, default=20, help="held-out windows (default 20)")
    p.add_argument("--trace", default=None, help="replay this trace (a shipped name or a path)")
    p.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--label", default=None, help="name of the entry in the output")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the JSON here")
    a = p.parse_args(argv)
    if a.windows < 1:
        p.error(f"--windows must be >= 1, got {a.windows}")
    check_json_path(p, a.json)
    try:
        overrides = parse_assignments(a.override, "-o")
        if a.trace:
            overrides, _ = trace_overrides(a.scenario, overrides, a.trace)
    except (OSError, ValueError) as e:
        p.error(str(e))
    pols = {n: baselines.make_policy(n) for n in baselines.POLICIES}
    for name in baselines.ORACLES:
        pols[name] = baselines.make_policy(name)
    try:
        res = evaluate(a.scenario, pols, episodes=a.windows, seed=FINAL_EVAL_SEED,
                       overrides=overrides, progress=False)  # fmt: skip
    except ValueError as e:
        p.error(str(e))
    rows = res["policies"]
    out = {"scenario": a.label or a.scenario, "windows": a.windows, "seed": FINAL_EVAL_SEED,
           "overrides": overrides, "policies": {}}  # fmt: skip
    for name, r in rows.items():
        out["policies"][name] = {**policy_row(r), "privileged": r["privileged"]}
    heur = {n: v for n, v in out["policies"].items() if n in baselines.POLICIES}
    best = max(heur, key=lambda n: heur[n]["reward_iqm"])
    out["best_heuristic"] = best
    hb = episode_scores(rows[best])
    for name in baselines.ORACLES:
        o, gain = out["policies"][name], paired_gain(episode_scores(rows[name]), hb)
        o["gain_per_window"] = {"mean": round(gain["mean"], 1), "min": round(gain["min"], 1),
                                "windows_better": gain["tasks_better"]}  # fmt: skip
        o["meets_criterion"] = judge({**heur, name: o}, name)["agent_beats_best"]  # the study's
    print(f"{out['scenario']}: {a.windows} held-out windows (seeds {FINAL_EVAL_SEED}..); "
          f"best heuristic {best}")  # fmt: skip
    print("| policy | reward IQM [95% CI] | drop rate | p99 s | cost $ |")
    print("|---|---|---|---|---|")
    for name, r in out["policies"].items():
        star = " *" if r["privileged"] else ""
        print(f"| {name}{star} | {r['reward_iqm']:.1f} [{r['reward_ci'][0]:.1f}, "
              f"{r['reward_ci'][1]:.1f}] | {100 * r['drop_rate']:.2f}% | "
              f"{r['p99_latency_s']:.2f} | {r['cost_usd']:.2f} |")  # fmt: skip
    for name in baselines.ORACLES:
        o = out["policies"][name]
        print(f"{name}: gain per window over {best} mean {o['gain_per_window']['mean']}, min "
              f"{o['gain_per_window']['min']}, better on {o['gain_per_window']['windows_better']}"
              f"/{a.windows}; meets the criterion: {o['meets_criterion']}")  # fmt: skip
    return emit(out, a.json)


if __name__ == "__main__":
    main()
