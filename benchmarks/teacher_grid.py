"""Teacher grid: one reference policy's parameter swept on training-split windows, the best kept.

    python -m benchmarks.teacher_grid --scenario paper --policy histogram --param range_s \\
        --values 300,600,900,1200,1800,14400
    python -m benchmarks.teacher_grid --scenario azure --policy keepalive --param keep_alive_s \\
        --values 60,120,300,600 --json grid.json

Behaviour cloning starts an agent from a teacher (``--hp bc_teacher=NAME``, its keyword
arguments in ``--hp 'bc_teacher_params=dict(...)'``); a teacher's parameters are tuned like any
other hyperparameter: on training time only. Each value of ``--param`` builds the policy
(:func:`baselines.make_policy`) and plays ``--windows`` windows of the *training* split, seeds
40000 on (:data:`GRID_SEED`: apart from the training resets, seeds 0 on; model selection's,
30000 on; and the held-out windows', 10000 on, which this never plays). Per value: the mean
reward over the windows (the criterion, as model selection and ``bc_teacher: best`` use), the
IQM with the study's interval over windows, drop rate, drop-aware p99 and cost. The best value
by mean reward is kept (ties: the first listed), and the ``--hp`` flags that make it the teacher
are printed. ``--heldout N`` then plays the kept value, and only it, on the first ``N`` held-out
windows the study plays (seeds 10000 on; 20 in the study): the teacher's own row beside the
study's, after the choice, so that an agent's margin over the best heuristic can be split into
what the tuned teacher brings and what training adds. The last line is JSON (``--json PATH``
also writes it to a file).

A benchmark, not a test: about 15 s a value on ``paper`` here.
"""

from __future__ import annotations

import math

from agents.cli import ExitingParser
from benchmarks.policy_rows import check_json_path, emit, policy_row

GRID_SEED = 40_000  # training-split windows of the grid: 40000, 40001, ...


def _values(text: str) -> list[float]:
    """``--values``: comma-separated finite numbers, at least one, none twice."""
    out = []
    for part in text.split(","):
        try:
            v = float(part)
        except ValueError:
            raise ValueError(f"--values must be comma-separated numbers, got {part.strip()!r} "
                             f"in {text!r}") from None  # fmt: skip
        if not math.isfinite(v):
            raise ValueError(f"--values must be finite numbers, got {part.strip()!r}")
        if v in out:
            raise ValueError(f"--values lists {part.strip()} twice")
        out.append(v)
    return out


def _label(v: float) -> str:
    return f"{v:g}"


def main(argv=None) -> dict:
    import baselines
    from agents.evaluation import evaluate
    from agents.hyperparams import parse_assignments
    from agents.training import FINAL_EVAL_SEED
    from envs.scenarios import trace_overrides

    p = ExitingParser(prog="python -m benchmarks.teacher_grid", label="benchmarks.teacher_grid",
                      description=__doc__.split("\n")[0])  # fmt: skip
    p.add_argument("--scenario", default="paper")
    p.add_argument("--policy", required=True, help="a reference policy's name (the teacher)")
    p.add_argument("--param", required=True, help="the keyword argument to sweep")
    p.add_argument("--values", required=True, help="comma-separated values of --param")
    p.add_argument("--windows", type=int, default=20, help="training-split windows (default 20)")
    p.add_argument("--heldout", type=int, default=0, metavar="N",
                   help="then play the kept value on N held-out windows (default 0: none)")  # fmt: skip
    p.add_argument("--trace", default=None, help="replay this trace (a shipped name or a path)")
    p.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the JSON here")
    a = p.parse_args(argv)
    if a.windows < 1:
        p.error(f"--windows must be >= 1, got {a.windows}")
    if a.heldout < 0:
        p.error(f"--heldout must be >= 0, got {a.heldout}")
    check_json_path(p, a.json)
    try:
        values = _values(a.values)
        pols = {_label(v): baselines.make_policy(a.policy, **{a.param: v}) for v in values}
        overrides = parse_assignments(a.override, "-o")
        if a.trace:
            overrides, _ = trace_overrides(a.scenario, overrides, a.trace)
        res = evaluate(a.scenario, pols, episodes=a.windows, seed=GRID_SEED, split="train",
                       overrides=overrides, progress=False)  # fmt: skip
        out = {"scenario": a.scenario, "policy": a.policy, "param": a.param, "split": "train",
               "windows": a.windows, "seed": GRID_SEED, "overrides": overrides,
               "values": {label: policy_row(r) for label, r in res["policies"].items()}}  # fmt: skip
        best = max(out["values"], key=lambda k: out["values"][k]["mean_reward"])  # (first on ties)
        out["best"] = best
        if a.heldout:  # (after the choice: the kept value alone)
            kept = {best: baselines.make_policy(a.policy, **{a.param: float(best)})}
            held = evaluate(a.scenario, kept, episodes=a.heldout, seed=FINAL_EVAL_SEED,
                            split="eval", overrides=overrides, progress=False)  # fmt: skip
            out["heldout"] = {"windows": a.heldout, "seed": FINAL_EVAL_SEED, "value": best,
                              **policy_row(held["policies"][best])}  # fmt: skip
    except (OSError, ValueError) as e:
        p.error(str(e))
    out["hp"] = [f"bc_teacher={a.policy}", f"bc_teacher_params=dict({a.param}={best})"]
    print(f"{a.scenario}: {a.policy}'s {a.param} on {a.windows} training-split windows "
          f"(seeds {GRID_SEED}..)")  # fmt: skip
    print("| value | mean reward | reward IQM [95% CI] | drop rate | p99 s | cost $ |")
    print("|---|---:|---|---:|---:|---:|")
    for label, r in out["values"].items():
        mark = " (kept)" if label == best else ""
        print(f"| {label}{mark} | {r['mean_reward']:.1f} | {r['reward_iqm']:.1f} "
              f"[{r['reward_ci'][0]:.1f}, {r['reward_ci'][1]:.1f}] | {100 * r['drop_rate']:.2f}% "
              f"| {r['p99_latency_s']:.2f} | {r['cost_usd']:.2f} |")  # fmt: skip
    print("teacher: " + " ".join(f"--hp '{h}'" for h in out["hp"]))
    if a.heldout:
        h = out["heldout"]
        print(f"kept value {best} on {a.heldout} held-out windows (seeds {FINAL_EVAL_SEED}..): "
              f"mean {h['mean_reward']:.1f}, IQM {h['reward_iqm']:.1f} [{h['reward_ci'][0]:.1f}, "
              f"{h['reward_ci'][1]:.1f}], drops {100 * h['drop_rate']:.2f}%, p99 "
              f"{h['p99_latency_s']:.2f} s, ${h['cost_usd']:.2f}")  # fmt: skip
    return emit(out, a.json)


if __name__ == "__main__":
    main()
