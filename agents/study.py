"""A study: agents trained over several seeds per scenario, against every heuristic, with statistics.

    python -m agents.study --scenarios small,paper,azure --seeds 5 --windows 20 --out DIR
    python -m agents.study --scenarios paper --seeds 3 --windows 10 --out DIR --timesteps 400000 \\
        --jobs 2 --trace azure_llm_2023 --trace-scenario paper
    python -m agents.study --scenarios azure --seeds 5 --out DIR --cross-trace azure_llm_2023 \\
        --cross-windows all
    python -m agents.study --scenarios small --seeds 5 --out DIR --ray --jobs 2
    python -m agents.study --scenarios paper --seeds 8 --out /shared/DIR --address HEAD:6379 -j 8

1. Train one agent per (scenario, seed) with ``train.py`` (seeds 0 .. S-1; jobs in
   :mod:`agents.study_jobs`, up to ``--jobs`` processes at once; with ``--ray`` or ``--address``
   as Ray Tune trials, :mod:`agents.study_ray`). A finished job is never retrained; an
   interrupted or failed one resumes from its checkpoint when the study is run again.
2. Evaluate, with :func:`agents.evaluation.evaluate`, every heuristic of ``baselines.POLICIES``
   once per scenario and every agent, on the same ``--windows`` held-out windows (split
   ``eval``, episode seeds 10000 ..., those of train.py's final comparison), up to ``--jobs``
   processes at once (:mod:`agents.study_eval`). Each evaluation is cached in ``DIR/evals/`` as
   soon as it ends.
3. Cross-trace (``--cross-trace PATH[,PATH...]``, ``--cross-from LABEL``, default ``azure``):
   no training; every agent of the source scenario (all its seeds) and every heuristic on the
   held-out windows of each trace replayed on the source's cluster (the ``--trace`` mechanism,
   ``envs.scenarios.trace_overrides``), each an entry ``"<source>-><trace>"`` of study.json
   with ``trained_on`` and ``trace``, cached and resumed like any evaluation.
4. Write ``DIR/study.json``, ``DIR/report.md`` and the plots (:mod:`agents.study_report`).

``--windows all`` (``--cross-windows all`` for the cross-trace entries only) plays every window
of a trace's held-out part back to back (:func:`agents.windows.tiled_windows`); a scenario with
a synthetic workload has no such set of windows and is refused. ``--trace-override KEY=VALUE``
applies to the ``--trace`` entry alone (``workload__mapping=sample``: one trace function per
model, which a synthetic scenario's workload has no field for).

Ctrl-C (or SIGTERM) stops the training processes after their checkpoint, keeps every finished
job and evaluation, and prints the command that continues the study. Bad input (an unknown
scenario or algorithm, ``--seeds``/``--windows``/``--jobs`` < 1, an unwritable ``--out``, a bad
trace, a folder trained or evaluated with other settings, ``--address`` where no Ray cluster
answers, a cross-trace the source's agents cannot act on) exits with status 2 and one line,
having written nothing.

Metric values come from evaluate()'s per-policy results by key, through :data:`METRICS` only
(defined in :mod:`agents.study_metrics`, which the report and the evaluations import, so that
they never import this module, which runs as ``__main__``, a second time).
Where evaluate() does not report a key, the value is derived as the table says and the JSON's
``metric_sources`` marks it ``derived``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import sys
import time
import warnings
from pathlib import Path

from . import study_eval, study_jobs
from .cli import OneLineParser
from .hyperparams import trace_label
from .study_metrics import METRICS, REWARD_KEY, metric_values  # noqa: F401  (re-exported)
from .training import UsageError, one_line, scenario_overrides

PROG = "python -m agents.study"


# ------------------------------------------------------------------------------ arguments ----
def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog=PROG, description=__doc__.split("\n\n")[0])
    a = p.add_argument
    a("--scenarios", default="small,paper,azure", help="comma-separated presets or YAML paths")
    a("--seeds", type=int, default=5, help="training seeds per scenario: 0 .. S-1 (default: 5)")
    a("--windows", default="20", metavar="N|all",
      help="held-out evaluation windows (default: 20); 'all': every window of a trace "
      "scenario's held-out part, back to back (trace-driven scenarios only)")  # fmt: skip
    a("--out", "-d", required=True, metavar="DIR", help="study folder (created; reused to resume)")
    a("--timesteps", type=int, help="training steps per agent (default: the hyperparameter file)")
    a("--jobs", "-j", type=int, default=1,
      help="training jobs at once: processes, or Ray Tune trials (default: 1)")  # fmt: skip
    a("--algo", default="maskable_ppo", help="algorithm of train.py (default: maskable_ppo)")
    a("--backend", choices=sorted(study_jobs.BACKENDS),
      help="where training jobs run: local processes (default) or Ray Tune trials")  # fmt: skip
    a("--ray", action="store_true", help="--backend ray: training jobs as Ray Tune trials on a "
      "local Ray instance (the ray extra)")  # fmt: skip
    a("--address", metavar="HOST:PORT", help="--backend ray on the Ray cluster there "
      "(`ray start --head`; or auto); --out must be on storage every node sees")  # fmt: skip
    a("--n-envs", type=int, help="train.py --n-envs")
    a("--hp", action="append", default=[], metavar="KEY=VALUE", help="train.py --hp, repeatable")
    a("-o", "--override", action="append", default=[], metavar="KEY=VALUE",
      help="scenario override for every scenario, repeatable: episode_s=600")  # fmt: skip
    a("--reps", type=int, default=None, help="bootstrap replications (default: agents.stats)")
    a("--no-progress", action="store_true", help="no evaluation progress bars")
    g = p.add_argument_group("trace-driven scenario (added to --scenarios)")
    g.add_argument("--trace", metavar="PATH", help="CSV trace or shipped name (azure2019, ...)")
    g.add_argument("--trace-scenario", default="paper", metavar="S",
                   help="scenario whose cluster replays the trace (default: paper)")  # fmt: skip
    g.add_argument("--time-col", metavar="C", help="with --trace: column of request times")
    g.add_argument("--model-col", metavar="C", help="with --trace: column naming the model")
    g.add_argument("--trace-override", action="append", default=[], metavar="KEY=VALUE",
                   help="scenario override for the --trace entry only (after -o), repeatable: "
                   "workload__mapping=sample")  # fmt: skip
    g = p.add_argument_group("cross-trace evaluation (no training: a studied scenario's agents "
                             "on other traces)")  # fmt: skip
    g.add_argument("--cross-trace", metavar="PATH[,PATH...]",
                   help="traces (shipped names: azure2019, azure_llm_2023; or CSV paths) whose "
                   "held-out windows the --cross-from scenario's agents and every heuristic play, "
                   "on that scenario's cluster")  # fmt: skip
    g.add_argument("--cross-from", metavar="LABEL",
                   help="the studied scenario whose agents are evaluated (default: azure)")
    g.add_argument("--cross-windows", metavar="N|all",
                   help="windows per cross-trace evaluation (default: --windows)")
    g.add_argument("--cross-time-col", metavar="C", help="column of request times, every "
                   "--cross-trace")  # fmt: skip
    g.add_argument("--cross-model-col", metavar="C", help="column naming the model, every "
                   "--cross-trace")  # fmt: skip
    return p


def _windows(value: str, flag: str) -> int | str:
    """``--windows``/``--cross-windows``: a positive integer or ``"all"``."""
    w = str(value).strip()
    if w == "all":
        return w
    try:
        n = int(w)
    except ValueError:
        raise UsageError(f"{flag} must be a positive integer or 'all', got {value!r}") from None
    if n < 1:
        raise UsageError(f"{flag} must be >= 1, got {n}")
    return n


def parse(argv: list[str]) -> tuple[argparse.Namespace, dict[str, dict]]:
    """Validate everything before anything is written.

    Returns:
        The arguments and ``{label: {"scenario", "train_args", "overrides", "ctx"}}``.

    Raises:
        UsageError: Any bad input (one line).
    """
    import envs

    from .algos import get_algo

    args = build_parser().parse_args(argv)
    args.windows = _windows(args.windows, "--windows")
    for k in ("seeds", "jobs", "timesteps", "n_envs", "reps"):
        v = getattr(args, k)
        if v is not None and v < 1:
            raise UsageError(f"--{k.replace('_', '-')} must be >= 1, got {v}")
    try:
        args.algo = get_algo(args.algo).name
    except ValueError as e:
        raise UsageError(f"--algo: {e}") from None
    _check_backend(args)
    names = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    if not names and not args.trace:
        raise UsageError("--scenarios names no scenario")
    if len(set(names)) != len(names):
        raise UsageError(f"--scenarios names a scenario twice: {args.scenarios!r}")
    if (args.time_col or args.model_col or args.trace_override) and not args.trace:
        raise UsageError("--time-col/--model-col/--trace-override need --trace")
    common = ["--algo", args.algo, *(x for o in args.override for x in ("-o", o)),
              *(x for h in args.hp for x in ("--hp", h))]  # fmt: skip
    if args.timesteps:
        common += ["--timesteps", str(args.timesteps)]
    if args.n_envs:
        common += ["--n-envs", str(args.n_envs)]
    plan = {}
    specs = [(Path(n).stem if n.endswith((".yaml", ".yml")) else n, n, None) for n in names]
    if args.trace:
        specs.append((trace_label(args.trace), args.trace_scenario, args.trace))
    for label, scen, trace in specs:
        if label in plan:
            raise UsageError(f"two scenarios share the label {label!r}")
        given = [*args.override, *(args.trace_override if trace else [])]
        targs = {"scenario": scen, "override": given, "trace": trace,
                 "time_col": args.time_col if trace else None,
                 "model_col": args.model_col if trace else None}  # fmt: skip
        overrides = scenario_overrides(targs)  # UsageError for a bad scenario/override/trace
        sc = envs.load_scenario(scen, **overrides)
        extra = []
        if trace:
            extra = ["--trace", trace, *(x for o in args.trace_override for x in ("-o", o))]
        for k in ("time_col", "model_col"):
            if targs[k]:
                extra += [f"--{k.replace('_', '-')}", targs[k]]
        if args.windows == "all":
            _tiles(sc, "--windows all")
        plan[label] = {
            "scenario": scen,
            "trace": trace,
            "overrides": overrides,
            "train_args": ["--scenario", scen, *common, *extra],
            "windows": args.windows,
            "eval_dir": label,
            **_facts(sc),
        }  # fmt: skip
    plan.update(_cross_plan(args, plan))
    _check_out(Path(args.out))
    _check_evals(Path(args.out), plan)
    from .training import prepare

    for spec in (s for s in plan.values() if s["train_args"] is not None):  # train.py's own
        # checks (hyperparameters...); writes nothing
        prepare([*spec["train_args"], "--logdir", str(Path(args.out) / "runs"), "--no-progress"])
    return args, plan


def _facts(sc) -> dict:
    """What a plan entry records of its scenario: the metrics' context, the episode length, and
    for a trace how many back-to-back windows its held-out part holds."""
    from .windows import tiled_windows

    try:
        tiles = len(tiled_windows(sc))
    except ValueError:  # a synthetic workload: windows are drawn from an unbounded process
        tiles = None
    return {"ctx": {"episode_s": float(sc.episode_s),
                    "timeout_s": float(sc.sim.features.request_timeout_s)},
            "episode_s": float(sc.episode_s), "held_out_windows": tiles}  # fmt: skip


def _tiles(sc, flag: str) -> int:
    from .windows import tiled_windows

    try:
        return len(tiled_windows(sc))
    except ValueError as e:
        raise UsageError(f"{flag}: {e}") from None


def _cross_plan(args: argparse.Namespace, plan: dict) -> dict:
    """The cross-trace entries: ``{"<source>-><trace>": spec}``, evaluated, never trained.

    Each replays one ``--cross-trace`` on the ``--cross-from`` scenario's cluster, with the
    study's ``-o`` overrides, by the same ``trace_overrides`` that ``--trace`` uses (so an
    ``episode_s`` that was not given shrinks to fit a short trace). The agents' spaces do not
    depend on the workload (v1: one focused model per step, a fixed feature vector), so the
    source's agents act on it whatever the trace's number of functions or models: its functions
    are mapped onto the cluster's models. Checked here by building both envs and comparing their
    spaces, and by one reset of the trace's env (a mapping the trace cannot feed fails there).
    """
    import envs
    from envs.scenarios import trace_overrides

    from .evaluation import make_env
    from .training import FINAL_EVAL_SEED, parse_assignments

    extra = {"--cross-from": args.cross_from, "--cross-windows": args.cross_windows,
             "--cross-time-col": args.cross_time_col,
             "--cross-model-col": args.cross_model_col}  # fmt: skip
    if args.cross_trace is None:
        given = [k for k, v in extra.items() if v is not None]
        if given:
            raise UsageError(f"{'/'.join(given)} need(s) --cross-trace")
        return {}
    paths = [t.strip() for t in args.cross_trace.split(",") if t.strip()]
    if not paths:
        raise UsageError(f"--cross-trace names no trace: {args.cross_trace!r}")
    if len(set(paths)) != len(paths):
        raise UsageError(f"--cross-trace names a trace twice: {args.cross_trace!r}")
    src = args.cross_from
    if src is None:
        if "azure" not in plan:
            raise UsageError("--cross-trace needs --cross-from LABEL: no 'azure' scenario is "
                             f"studied (studied: {', '.join(plan)})")  # fmt: skip
        src = args.cross_from = "azure"
    if src not in plan:
        raise UsageError(f"--cross-from {src!r} is not a studied scenario (studied: "
                         f"{', '.join(plan)})")  # fmt: skip
    windows = args.windows if args.cross_windows is None else _windows(
        args.cross_windows, "--cross-windows")  # fmt: skip
    source = plan[src]
    try:
        base = parse_assignments(args.override, "--override")
    except ValueError as e:
        raise UsageError(e) from None
    spaces = _spaces(make_env(source["scenario"], "eval", source["overrides"]))
    out = {}
    for path in paths:
        flag = f"--cross-trace {path!r}"
        stem = Path(path).name.split(".")[0]
        label = f"{src}->{stem}"
        if label in out:
            raise UsageError(f"--cross-trace: two traces share the name {stem!r}")
        try:
            with warnings.catch_warnings(record=True) as caught:  # one line on a bad input
                warnings.simplefilter("always")
                overrides, note = trace_overrides(source["scenario"], base, path,
                                                  args.cross_time_col, args.cross_model_col)  # fmt: skip
                sc = envs.load_scenario(source["scenario"], **overrides)
                sc.window_bounds("eval")
                env = make_env(source["scenario"], "eval", overrides)
                try:
                    env.reset(seed=FINAL_EVAL_SEED)  # builds the trace workload on the cluster
                    got = _spaces(env)
                finally:
                    env.close()
        except (OSError, ValueError, TypeError) as e:
            raise UsageError(f"{flag}: {one_line(e)}") from None
        notes = [note] if note else []
        notes += sorted({one_line(w.message) for w in caught if issubclass(w.category, UserWarning)})
        if got != spaces:
            raise UsageError(
                f"{flag}: {src!r}'s agents act on {spaces[1]} actions and observations of shape "
                f"{spaces[0]}, the trace's env on {got[1]} and {got[0]}: they cannot act on it"
            )
        if windows == "all":
            _tiles(sc, f"{flag} with --cross-windows all")
        out[label] = {
            "scenario": source["scenario"],
            "trace": path,
            "overrides": overrides,
            "train_args": None,  # evaluated only
            "trained_on": src,
            "note": "; ".join(notes) or None,  # a shrunk episode, a trace sorted on loading
            "windows": windows,
            "eval_dir": f"{src}/on-{stem}",
            **_facts(sc),
        }
    return out


def _spaces(env) -> tuple:
    """(observation shape, number of actions) of a raw env, which is closed."""
    try:
        return tuple(env.observation_space.shape), int(env.action_space.n)
    finally:
        env.close()


def _check_evals(out: Path, plan: dict) -> None:
    """Refuse a folder whose cached evaluations were made with other scenario overrides (for
    a cross-trace entry: another trace of the same name, other columns...)."""
    from .study_eval import settings

    for spec in plan.values():
        folder = out / "evals" / spec["eval_dir"]
        want = settings(spec)
        for f in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            try:
                have = json.loads(f.read_text()).get("settings")
            except (OSError, ValueError):
                continue  # written atomically, so not torn; run_task reports it
            if have is not None and {**have, "windows": None} != {**want, "windows": None}:
                raise UsageError(f"{f} was evaluated with other settings ({json.dumps(have)}); "
                                 "use another --out or the same flags")  # fmt: skip


def _check_backend(args: argparse.Namespace) -> None:
    """Resolve ``--backend``/``--ray``/``--address`` into ``args.backend``; with Ray, check the
    extra is installed and something listens at ``--address`` (before anything is written)."""
    import importlib.util

    ray = args.ray or args.address is not None
    if args.backend == "local" and ray:
        raise UsageError(f"--backend local with {'--ray' if args.ray else '--address'}: "
                         "those run the jobs on Ray")  # fmt: skip
    args.backend = args.backend or ("ray" if ray else "local")
    if args.backend != "ray":
        return
    if args.address is not None:  # checked first: a bad address is bad with or without Ray
        from .rllib_train import check_address

        check_address(args.address)  # UsageError: malformed, or no cluster answers there
    if importlib.util.find_spec("ray") is None:
        raise UsageError("the Ray backend needs the ray extra: pip install -e '.[ray]'")


def _check_out(out: Path) -> None:
    import os

    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {str(out)!r} exists and is not a folder")
    parent = out
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"--out {str(out)!r}: {str(parent)!r} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"--out {str(out)!r}: {str(parent)!r} is not writable")


# ------------------------------------------------------------------------------------ main ----
def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _log_invocation(out: Path, cmd: str, status: str, wall_s: float) -> dict:
    """Append this invocation to ``DIR/invocations.jsonl``; return the wall-time totals."""
    f = out / "invocations.jsonl"
    with open(f, "a") as fh:
        fh.write(json.dumps({"command": cmd, "status": status, "wall_s": wall_s}) + "\n")
    runs = [json.loads(line) for line in f.read_text().splitlines() if line]
    return {"this_invocation": wall_s, "all_invocations": sum(r["wall_s"] for r in runs),
            "invocations": len(runs)}  # fmt: skip


def run(argv: list[str]) -> int:
    from . import study_report

    t0 = time.perf_counter()
    args, plan = parse(argv)
    out = Path(args.out)
    jobs = [study_jobs.make_job(label, k, spec["train_args"], out)
            for label, spec in plan.items() if spec["train_args"] is not None
            for k in range(args.seeds)]  # fmt: skip
    try:
        hp_now: dict[str, dict] = {}  # per scenario: the seed changes no hyperparameter
        for j in jobs:
            if j.scenario not in hp_now and study_jobs.run_folder(j) is not None:
                hp_now[j.scenario] = study_jobs.resolved_hyperparams(j)
            study_jobs.check_job_folder(j, hp_now.get(j.scenario))
    except study_jobs.JobError as e:
        raise UsageError(e) from None
    cmd = shlex.join([*PROG.split(), *argv])
    for label, spec in plan.items():
        if spec.get("note"):
            print(f"{PROG}: {label}: {spec['note']}", file=sys.stderr)
    old = signal.signal(signal.SIGTERM, _interrupt)
    # Ctrl-C must reach us even when started from a shell that made background jobs ignore
    # SIGINT (a non-interactive shell's `cmd &`): Python keeps an inherited SIG_IGN.
    old_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    status = "interrupted"
    try:
        out.mkdir(parents=True, exist_ok=True)
        failed = study_jobs.BACKENDS[args.backend](jobs, args.jobs, out=out, address=args.address)
        if failed:
            status = "failed"
            print(f"{PROG}: {len(failed)} training job(s) failed: "
                  + "; ".join(f"{k}: {v}" for k, v in failed.items())
                  + f". Finished jobs are kept; the same command resumes the others from their "
                  f"last checkpoint:\n  {cmd}", file=sys.stderr)  # fmt: skip
            return 1
        evals = study_eval.evaluate_all(args, plan, jobs, out)
        status = "done"
        total = _log_invocation(out, cmd, status, time.perf_counter() - t0)
        study = study_report.build(args, plan, jobs, evals, cmd, total)
        paths = study_report.write(study, out)
    except KeyboardInterrupt:
        print(f"\n{PROG}: interrupted; finished jobs and evaluations are kept in {out}. "
              f"Continue with:\n  {cmd}", file=sys.stderr)  # fmt: skip
        return 130
    finally:
        signal.signal(signal.SIGTERM, old)
        signal.signal(signal.SIGINT, old_int)
        if status != "done" and out.is_dir():
            _log_invocation(out, cmd, status, time.perf_counter() - t0)
    print(f"study: {out / 'study.json'}, report: {out / 'report.md'}, {len(paths)} plots")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return run(argv)
    except UsageError as e:
        print(f"{PROG}: error: {one_line(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
