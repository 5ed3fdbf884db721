"""Compare autoscaling policies on identical workloads and print the table.

    python evaluate.py --scenario paper --policies baseline,pool,hierarchical
    python evaluate.py --scenario small --policies all --episodes 5 --json out.json --out plots/
    python evaluate.py --policies baseline --model runs/<run> --model other.zip  # the run's scenario
    python evaluate.py --scenario paper --policies baseline,hierarchical --trace my.csv \\
        --time-col t --model-col model
    python evaluate.py --scenario paper --policies all -o workload__time_scale=0.05

Every policy runs the same episodes (seeds ``--seed``, ``--seed + 1``, ...) on the same split.
``--trace`` replaces the scenario's workload by a trace file (see ``envs.workloads.traces``),
sets ``span_s`` to the trace's length and shrinks ``episode_s`` if the trace is too short for one
training and one held-out episode (said on stderr). Bad input (unknown scenario or policy, a bad
YAML field, an unreadable trace) exits with status 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

DEFAULT_EPISODES = 20


def _one_line(e: BaseException) -> str:
    msg = " ".join(str(e).split()) or type(e).__name__
    return msg


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="evaluate.py",
        description="Compare autoscaling policies (reference heuristics and trained agents) on "
        "identical workloads of a coldstart-gym scenario.",
    )
    a = p.add_argument
    a(
        "--scenario",
        default=None,
        help="preset name or YAML path (default: the scenario the first --model was trained on, "
        "else paper)",
    )
    a("--policies", default="baseline,pool,hierarchical",
      help="comma-separated policy names, or 'all' (default: baseline,pool,hierarchical)")  # fmt: skip
    a("--episodes", type=int, default=DEFAULT_EPISODES,
      help=f"episodes per policy (default: {DEFAULT_EPISODES})")  # fmt: skip
    a("--seed", type=int, default=0, help="seed of the first episode (default: 0)")
    a("--split", choices=("eval", "train"), default="eval",
      help="workload windows: held-out 'eval' (default) or 'train'")  # fmt: skip
    a("--model", action="append", default=[], metavar="PATH",
      help="a trained agent (model zip or run folder); repeatable")  # fmt: skip
    a("--trace", metavar="PATH", help="replay this trace file instead of the scenario's workload")
    a("--time-col", metavar="C", help="with --trace: column of request times")
    a("--model-col", metavar="C", help="with --trace: column naming the function/model")
    a("--json", metavar="PATH", help="write the results as JSON here")
    a("--out", metavar="DIR", help="write the plots (PNG) into this folder")
    a("--episode-s", type=float, metavar="X", help="override the scenario's episode length (s)")
    a("-o", "--override", action="append", default=[], metavar="KEY=VALUE",
      help="scenario override, repeatable (YAML values): workload__time_scale=0.05, "
      "features__keep_alive_s=600")  # fmt: skip
    a("--no-progress", action="store_true", help="no progress bar")
    return p


def parse_policies(spec: str) -> list[str]:
    """Policy names from ``"a,b,c"`` or ``"all"``; unknown names raise ValueError."""
    from baselines import POLICIES, check_policy_name

    names = [s.strip() for s in spec.split(",") if s.strip()]
    if names == ["all"]:
        return list(POLICIES)
    for n in names:
        check_policy_name(n)
    if len(set(names)) != len(names):
        raise ValueError(f"--policies names a policy twice: {spec!r}")
    return names


def parse_overrides(items: list[str]) -> dict:
    """``["k=v", ...]`` -> ``{k: yaml value}``; a malformed item raises ValueError."""
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--override needs KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise ValueError(f"--override {item!r}: not a YAML value ({e})") from None
    return out


def trace_overrides(args, overrides: dict) -> dict:
    """Overrides that replay ``args.trace``: workload, span_s, and a shorter episode if needed."""
    from envs.scenarios import load_scenario
    from envs.workloads import load_trace

    if args.trace is None:
        if args.time_col or args.model_col:
            raise ValueError("--time-col and --model-col need --trace")
        return overrides
    trace = load_trace(args.trace, time_col=args.time_col, model_col=args.model_col)
    base = load_scenario(args.scenario, **overrides)
    dur = float(trace.duration_s)
    f = base.held_out_fraction
    fit = dur * min(f, 1 - f) if f > 0 else dur
    episode_s = base.episode_s
    if episode_s > fit:
        episode_s = math.floor(fit / base.step_s) * base.step_s
        if episode_s < base.step_s:
            raise ValueError(
                f"trace {args.trace!r} lasts {dur:g} s: too short for one {base.step_s:g} s step in "
                f"both its training and held-out parts (held_out_fraction {f:g})"
            )
        print(
            f"evaluate.py: trace {args.trace!r} lasts {dur:g} s; episode_s shrunk from "
            f"{base.episode_s:g} to {episode_s:g} s to fit its training and held-out parts "
            f"(held_out_fraction {f:g})",
            file=sys.stderr,
        )
    workload = {"kind": "trace", "path": str(args.trace)}
    if args.time_col:
        workload["time_col"] = args.time_col
    if args.model_col:
        workload["model_col"] = args.model_col
    return {**overrides, "workload": workload, "span_s": dur, "episode_s": episode_s}


def run(args) -> int:
    from agents.evaluation import evaluate, format_table, plot_results, write_json
    from baselines import make_policy

    if args.episodes < 1:
        raise ValueError(f"--episodes must be >= 1, got {args.episodes}")
    names = parse_policies(args.policies)
    if not names and not args.model:
        raise ValueError("nothing to evaluate: give --policies and/or --model")
    policies: dict = {n: make_policy(n) for n in names}
    agents = []
    for path in args.model:
        try:
            from agents.loading import load_agent
        except ImportError as e:
            raise ValueError(f"--model needs agents.loading.load_agent, unavailable: {e}") from None
        agent = load_agent(path)
        agents.append(agent)
        name = str(getattr(agent, "name", None) or Path(path).stem)
        base, k = name, 2
        while name in policies:
            name, k = f"{base}-{k}", k + 1
        policies[name] = agent
    overrides = {}
    if args.scenario is None:
        # Evaluate a trained agent where it was trained (scenario and its overrides), unless
        # told otherwise; heuristics alone default to the paper's setting.
        meta = getattr(agents[0], "meta", {}) if agents else {}
        args.scenario = meta.get("scenario") or "paper"
        overrides.update(meta.get("overrides") or {})
        print(f"evaluate.py: scenario {args.scenario!r}", file=sys.stderr)
    overrides.update(parse_overrides(args.override))
    if args.episode_s is not None:
        overrides["episode_s"] = args.episode_s
    overrides = trace_overrides(args, overrides)
    results = evaluate(
        args.scenario,
        policies,
        episodes=args.episodes,
        seed=args.seed,
        split=args.split,
        overrides=overrides,
        progress=not args.no_progress,
        record_timeline=args.out is not None,
    )
    print(format_table(results, baseline="baseline"))
    if args.json:
        write_json(results, args.json)
        print(f"results: {args.json}", file=sys.stderr)
    if args.out:
        paths = plot_results(results, args.out)
        print(f"plots: {', '.join(str(p) for p in paths)}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # argparse errors exit with status 2
    from envs.sim.config import ConfigError

    try:
        return run(args)
    except (ValueError, FileNotFoundError, ConfigError, OSError) as e:
        print(f"evaluate.py: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("evaluate.py: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
