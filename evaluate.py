"""Compare autoscaling policies on identical workloads and print the table.

    python evaluate.py --scenario paper --policies baseline,pool,hierarchical
    python evaluate.py --scenario small --policies all --episodes 5 --json out.json --out plots/
    python evaluate.py --policies baseline --model runs/<run> --model other.zip  # the run's scenario
    python evaluate.py --scenario paper --policies baseline,hierarchical --trace my.csv \\
        --time-col t --model-col model
    python evaluate.py --scenario paper --policies all -o workload__time_scale=0.05
    python evaluate.py --scenario small --trace sparse.csv --time-col t --model-col model \\
        --windows all    # every held-out request of a sparse trace, window after window

Every policy runs the same episodes (seeds ``--seed``, ``--seed + 1``, ...) on the same split.
``--trace`` replaces the scenario's workload by a trace file (see ``envs.workloads.traces``),
sets ``span_s`` to the trace's length and shrinks ``episode_s`` if the trace is too short for one
training and one held-out episode (said on stderr). Windows that held no request are counted
on stderr (one line); ``--windows all`` plays every window of the held-out part of a trace
(``--trace``, or a scenario whose workload is a trace) back to back instead of drawing some. The
table's footer says how many windows and requests the figures cover. Bad input (unknown scenario
or policy, a bad YAML field, an unreadable trace, ``--windows`` neither a positive integer nor
``all``, ``all`` on a synthetic workload) exits with status 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

DEFAULT_EPISODES = 20


def build_parser() -> argparse.ArgumentParser:
    from agents.cli import OneLineParser

    p = OneLineParser(
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
    a("--episodes", type=int, default=None,
      help=f"episodes per policy, in drawn windows (default: {DEFAULT_EPISODES})")  # fmt: skip
    a("--windows", metavar="N|all", default=None,
      help="N: the same as --episodes N; all: every window of the held-out part of a trace, "
      "back to back, so every held-out request is scored once (the last episode is the rest, "
      "rounded up to whole steps)")  # fmt: skip
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
    """``["k=v", ...]`` -> ``{k: value}`` (:func:`envs.yamlvalues.parse_assignments`, the
    parser ``train.py`` uses too); a malformed item raises ValueError."""
    from envs.yamlvalues import parse_assignments

    return parse_assignments(items, "--override")


def trace_overrides(args, overrides: dict) -> dict:
    """Overrides that replay ``args.trace`` (:func:`envs.scenarios.trace_overrides`); a note on
    stderr when the episode had to shrink."""
    from envs.scenarios import trace_overrides as replay

    if args.trace is None:
        if args.time_col or args.model_col:
            raise ValueError("--time-col and --model-col need --trace")
        return overrides
    try:
        out, note = replay(args.scenario, overrides, args.trace, args.time_col, args.model_col)
    except (FileNotFoundError, OSError) as e:
        raise ValueError(f"--trace: {e}") from None
    if note:
        print(f"evaluate.py: {note}", file=sys.stderr)
    return out


def check_args(args) -> None:
    """Everything about the command line that can be checked before loading anything."""
    from agents.cli import UsageError, check_output

    if args.episodes is not None and args.episodes < 1:
        raise UsageError(f"--episodes must be >= 1, got {args.episodes}")
    if args.windows is not None:
        w = args.windows.strip()
        if w != "all":
            try:
                n = int(w)
            except ValueError:
                n = 0
            if n < 1:
                raise UsageError(
                    f"--windows must be a positive integer or 'all', got {args.windows!r}"
                )
            args.windows = n
        else:
            args.windows = w
        if args.episodes is not None:
            raise UsageError(
                f"--windows {args.windows} and --episodes {args.episodes}: give one of them"
            )
        if args.windows == "all" and args.split != "eval":
            raise UsageError("--windows all tiles the held-out part of a trace; drop --split train")
    if args.episodes is None:
        args.episodes = args.windows if args.windows is not None else DEFAULT_EPISODES
    if args.seed < 0:
        raise UsageError(f"--seed must be >= 0 (numpy seeds are non-negative), got {args.seed}")
    if args.episode_s is not None and not (math.isfinite(args.episode_s) and args.episode_s > 0):
        raise UsageError(f"--episode-s must be a finite number > 0, got {args.episode_s}")
    if args.json:
        check_output(args.json, "--json", folder=False)
    if args.out:
        check_output(args.out, "--out", folder=True)


def run(args) -> int:
    from agents.evaluation import evaluate, format_table, make_env, plot_results, write_json
    from agents.windows import empty_windows_note
    from baselines import make_policy

    check_args(args)
    names = parse_policies(args.policies)
    if not names and not args.model:
        raise ValueError("nothing to evaluate: give --policies and/or --model")
    policies: dict = {n: make_policy(n) for n in names}
    agents = []
    for path in args.model:
        from agents.loading import load_agent
        from agents.rllib_policy import is_rllib_checkpoint, load_rllib_policy

        # An RLlib checkpoint (train.py --engine rllib) or an SB3 model: one predict() either way.
        agent = load_rllib_policy(path) if is_rllib_checkpoint(path) else load_agent(path)
        agents.append((path, agent))
        name = str(getattr(agent, "name", None) or Path(path).stem)
        base, k = name, 2
        while name in policies:
            name, k = f"{base}-{k}", k + 1
        policies[name] = agent
    overrides = {}
    if args.scenario is None:
        # Evaluate a trained agent where it was trained (scenario and its overrides), unless
        # told otherwise; heuristics alone default to the paper's setting.
        meta = getattr(agents[0][1], "meta", {}) if agents else {}
        args.scenario = meta.get("scenario") or "paper"
        overrides.update(meta.get("overrides") or {})
        print(f"evaluate.py: scenario {args.scenario!r}", file=sys.stderr)
    overrides.update(parse_overrides(args.override))
    if args.episode_s is not None:
        overrides["episode_s"] = args.episode_s
    overrides = trace_overrides(args, overrides)
    if args.episodes == "all":  # a trace workload only: say so before any policy runs
        from agents.cli import UsageError
        from agents.windows import tiled_windows
        from envs import load_scenario

        try:
            tiled_windows(load_scenario(args.scenario, **overrides))
        except ValueError as e:
            raise UsageError(f"--windows all: {e}") from None
    if agents:  # before any policy runs: an agent must fit the evaluated env's spaces
        from agents.loading import check_compatible

        probe = make_env(args.scenario, args.split, overrides)
        try:
            for path, agent in agents:
                if hasattr(agent, "model"):  # SB3
                    check_compatible(agent, probe.unwrapped, f"--model {path!r}")
                else:  # RLlib: bind() checks the action count and observation shape
                    agent.bind(probe.unwrapped)
        finally:
            probe.close()
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
    note = empty_windows_note(results)
    if note:
        print(f"evaluate.py: warning: {note}", file=sys.stderr)
    if args.out:  # plots first: a plot that fails leaves no JSON claiming a finished run
        paths = plot_results(results, args.out)
        print(f"plots: {', '.join(str(p) for p in paths)}", file=sys.stderr)
    if args.json:
        write_json(results, args.json)
        print(f"results: {args.json}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    from agents.cli import UsageError, one_line

    try:
        args = build_parser().parse_args(argv)
    except UsageError as e:
        print(f"evaluate.py: error: {one_line(e)}", file=sys.stderr)
        return 2
    from envs.sim.config import ConfigError

    try:
        return run(args)
    except (UsageError, ValueError, FileNotFoundError, ConfigError, OSError) as e:
        print(f"evaluate.py: error: {one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("evaluate.py: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
