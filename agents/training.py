"""Training runs: arguments, run folders, the training loop, resume and the final comparison.

``train.py`` is a thin shim over :func:`main`. A run folder (rl-zoo3 layout)::

    runs/<env>__<algo>__<seed>__<unix time>/
        events.out.tfevents.*      TensorBoard (SB3's rollout/ train/ time/, plus cluster/ eval/)
        config.yml                 resolved hyperparameters (loadable with --hyperparams)
        args.yml, command.txt      the arguments and command line(s) (resumes append)
        model.zip                  latest model (final, interrupt or last checkpoint), with its
                                   VecNormalize statistics inside (agents.loading.STATS_ENTRY)
        vecnormalize.pkl           a copy of those statistics for SB3 tools (with --normalize)
        checkpoints/               model_<N>_steps.zip (+ vecnormalize_<N>_steps.pkl), the
                                   --keep-checkpoints most recent, N on the --checkpoint-freq grid

The folder name ends in the start time (seconds); a run that finds it taken (another run of the
same algorithm and seed started in the same second) takes ``<name>_1``, ``_2``... (exclusive
``mkdir``, :func:`claim_run_dir`).
        results.json, plots/       final evaluation against the reference heuristics
        best_model.zip, best.json  with model selection (valid_freq): the best model on the
                                   training-split validation windows, which the final
                                   evaluation plays
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .algos import AlgoSpec, apply_action_prior, get_algo, resolve_policy
from .cli import UsageError, check_device, check_output, one_line
from .hyperparams import Hyperparams, load_hyperparams, parse_assignments, resolve
from .loading import AgentPolicy, load_stats, read_meta, resolve_model_path
from .train_args import (  # noqa: F401  (re-exported: the seeds and defaults of a run)
    DEFAULTS,
    EVAL_FREQ,
    EVAL_SEED,
    FINAL_EVAL_SEED,
    FIXED_ON_RESUME,
    VALID_SEED,
    build_parser,
)
from .wrappers import ENV_ID, EnvFactory


@dataclass
class RunConfig:
    """Everything a run needs, validated."""

    args: dict
    spec: AlgoSpec
    hp: Hyperparams
    overrides: dict
    run_dir: Path
    resume_from: Path | None = None


def scenario_overrides(args: dict) -> dict:
    """The env keyword overrides from ``--override`` and the trace options.

    Raises:
        UsageError: A bad override or trace.
    """
    import envs
    from envs.scenarios import trace_overrides

    try:
        overrides = parse_assignments(args["override"], "--override")
    except ValueError as e:
        raise UsageError(e) from None
    if args["trace"]:
        try:
            overrides, note = trace_overrides(
                args["scenario"], overrides, args["trace"], args["time_col"], args["model_col"]
            )
        except (OSError, ValueError) as e:
            raise UsageError(f"--trace: {e}") from None
        if note:
            print(f"train.py: {note}", file=sys.stderr)
    elif args["time_col"] or args["model_col"]:
        raise UsageError("--time-col/--model-col need --trace")
    try:
        sc = envs.load_scenario(args["scenario"], **overrides)
        sc.window_bounds("eval")
    except (ValueError, TypeError, OSError) as e:
        raise UsageError(e) from None
    return overrides


def prepare(argv: list[str] | None) -> RunConfig:
    """Parse and validate the command line; resolve resume, hyperparameters and the run folder.

    Raises:
        UsageError: Anything wrong with the input.
    """
    ns = vars(build_parser().parse_args(argv))
    given = {k: v for k, v in ns.items() if v is not None}
    resume_from, run_dir = None, None
    meta: dict = {}
    if given.get("resume"):
        try:
            resume_from = resolve_model_path(given["resume"])
            meta = read_meta(resume_from)
        except ValueError as e:
            raise UsageError(f"--resume: {e}") from None
        run_dir = next(
            (
                d
                for d in (resume_from.parent, resume_from.parent.parent)
                if (d / "args.yml").is_file()
            ),
            None,
        )
        saved = yaml.safe_load((run_dir / "args.yml").read_text()) if run_dir else {}
        saved.setdefault("algo", meta["algo"])
        for k in FIXED_ON_RESUME:
            if k in given and k in saved and given[k] != saved[k]:
                flag = "--" + k.replace("_", "-")
                raise UsageError(f"{flag} cannot change on --resume (the run used {saved[k]!r})")
        args = {**DEFAULTS, **saved, **given}
    else:
        args = {**DEFAULTS, **given}
    try:
        spec = get_algo(args["algo"])
        args["algo"] = spec.name
        for k in ("timesteps", "n_envs", "eval_episodes", "threads", "log_interval"):
            if args[k] is not None and args[k] < 1:
                raise ValueError(f"--{k.replace('_', '-')} must be >= 1, got {args[k]}")
        if args["seed"] < 0:
            raise ValueError(f"--seed must be >= 0 (numpy seeds are non-negative), got {args['seed']}")
        for k in ("eval_freq", "checkpoint_freq", "keep_checkpoints"):
            if args[k] is not None and args[k] < 0:
                raise ValueError(f"--{k.replace('_', '-')} must be >= 0, got {args[k]}")
        hp_over = parse_assignments(args["hp"], "--hp")
        config = run_dir / "config.yml" if run_dir else None
        if config is not None and config.is_file():
            raw = yaml.safe_load(config.read_text()) or {}
            hp = resolve(spec.name, raw, str(config))
        else:
            hp = load_hyperparams(spec.name, ENV_ID, args["hyperparams"], hp_over,
                                  scenario=args["scenario"], trace=args["trace"])  # fmt: skip
        resolve_policy(spec, hp.policy)
        if hp.per_model and args["vec_env"] == "subproc":
            raise ValueError(
                "--vec-env subproc: this run trains on per-model sub-envs (per_model: true in "
                f"{hp.source}), whose simulators step in one process; use --vec-env dummy"
            )
    except (ValueError, RuntimeError) as e:
        raise UsageError(e) from None
    check_device(args["device"])
    if args["eval_freq"] is None:
        args["eval_freq"] = hp.eval_freq if hp.eval_freq is not None else EVAL_FREQ
    # Command line over the file: the budget, envs and normalisation.
    if args["timesteps"] is not None:
        hp.n_timesteps = hp.raw["n_timesteps"] = args["timesteps"]
    if args["n_envs"] is not None and resume_from is None:
        hp.n_envs = hp.raw["n_envs"] = args["n_envs"]
    if args["normalize"] is not None and resume_from is None:
        hp.normalize = (hp.normalize or {}) if args["normalize"] else None
        hp.raw["normalize"] = (
            args["normalize"] if not hp.normalize else repr_normalize(hp.normalize)
        )
    if resume_from is not None:  # the saved model says how it acts and whether it was normalised
        if not meta.get("normalize"):
            hp.normalize = None
        else:
            try:
                load_stats(resume_from)  # missing or corrupt: said now, before anything runs
            except ValueError as e:
                raise UsageError(f"--resume: {e}") from None
            if hp.normalize is None:
                hp.normalize = {}
    if resume_from is not None and hp.bc and hp.bc["teacher"] == "best":
        hp.bc["teacher"] = meta.get("imitation", {}).get("teacher", "best")  # as resolved then
    overrides = scenario_overrides(args)
    if run_dir is None:
        root = check_output(args["logdir"], "--logdir", folder=True)
        name = f"{ENV_ID.replace('/', '_')}__{spec.name}__{args['seed']}__{int(time.time())}"
        run_dir = root / name  # claimed (made unique) when the run starts: claim_run_dir
    return RunConfig(args, spec, hp, overrides, run_dir, resume_from)


def claim_run_dir(run_dir: Path) -> Path:
    """Create ``run_dir``, or ``<run_dir>_1``, ``_2``... if taken: ``mkdir`` without
    ``exist_ok`` is atomic, so two runs started in the same second (an ``--hp`` sweep started
    with ``&``) never share a folder."""
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    candidate, i = run_dir, 0
    while True:
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            i += 1
            candidate = run_dir.with_name(f"{run_dir.name}_{i}")


def repr_normalize(kwargs: dict) -> str | bool:
    if not kwargs:
        return True
    inner = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    return f"dict({inner})"


# --------------------------------------------------------------------------------- running ----
def make_vec_env(cfg: RunConfig, seed: int):
    """The training envs: ``n_envs`` wrapped envs, or with ``per_model`` one
    :class:`agents.model_vec_env.ModelsVecEnv` of ``n_envs`` simulators (a sub-env per model)."""
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    if cfg.hp.per_model:
        from .model_vec_env import ModelsVecEnv

        return ModelsVecEnv(cfg.args["scenario"], n_sims=cfg.hp.n_envs, split="train",
                            overrides=cfg.overrides, seed=seed)  # fmt: skip
    factory = EnvFactory(
        scenario=cfg.args["scenario"],
        split="train",
        overrides=cfg.overrides,
        masked=cfg.spec.masked,
    )
    fns = [factory] * cfg.hp.n_envs
    venv = SubprocVecEnv(fns) if cfg.args["vec_env"] == "subproc" else DummyVecEnv(fns)
    venv.seed(seed)
    return venv


def _meta(cfg: RunConfig) -> dict:
    env = EnvFactory(cfg.args["scenario"], "train", cfg.overrides)()
    n_actions = int(env.action_space.n)
    env.close()
    return {
        "algo": cfg.spec.name,
        "env_id": ENV_ID,
        "scenario": cfg.args["scenario"],
        "overrides": cfg.overrides,
        "normalize": cfg.hp.normalize is not None,
        "actions": cfg.hp.actions,
        "n_actions": n_actions,
        **({"per_model": True} if cfg.hp.per_model else {}),
        **({"imitation": dict(cfg.hp.bc)} if cfg.hp.bc else {}),
    }


def _write_run_files(cfg: RunConfig) -> None:
    if cfg.resume_from is None:
        cfg.run_dir = claim_run_dir(cfg.run_dir)
    d = cfg.run_dir
    d.mkdir(parents=True, exist_ok=True)
    if cfg.resume_from is None or not (d / "config.yml").exists():
        (d / "config.yml").write_text(yaml.safe_dump(dict(sorted(cfg.hp.raw.items()))))
    args = {k: v for k, v in cfg.args.items() if k != "resume"}
    (d / "args.yml").write_text(yaml.safe_dump(dict(sorted(args.items()))))
    with open(d / "command.txt", "a") as f:
        f.write(shlex.join(["python", *sys.argv]) + "\n")


def _references() -> dict[str, Any]:
    try:
        import baselines

        return {name: baselines.make_policy(name) for name in baselines.POLICIES}
    except (ImportError, AttributeError):
        return {}


def _build_model(cfg: RunConfig):
    """The vec env and the model, new or loaded to resume.

    Raises:
        UsageError: The algorithm rejects a hyperparameter value (nothing is written then).
    """
    from stable_baselines3.common.utils import set_random_seed
    from stable_baselines3.common.vec_env import VecNormalize

    args, spec, hp = cfg.args, cfg.spec, cfg.hp
    device = args["device"]
    venv = None
    try:
        if cfg.resume_from is not None:
            done = read_steps(cfg.resume_from)
            seed = args["seed"] + done  # fresh windows, not a replay of the first run's
            venv = make_vec_env(cfg, seed)
            if hp.normalize is not None:
                stats = load_stats(cfg.resume_from)
                stats.set_venv(venv)
                venv = stats
                venv.training = True
            model = spec.cls.load(cfg.resume_from, env=venv, device=device)
            set_random_seed(seed)
        else:
            seed = args["seed"]
            venv = make_vec_env(cfg, seed)
            if hp.normalize is not None:
                venv = VecNormalize(venv, **{"gamma": hp.kwargs.get("gamma", 0.99), **hp.normalize})
            policy = resolve_policy(spec, hp.policy)
            model = spec.cls(
                policy, venv, seed=seed, device=device, verbose=args["verbose"], **hp.kwargs
            )
            if any(hp.action_prior):
                probe = EnvFactory(args["scenario"], "train", cfg.overrides)()
                apply_action_prior(model, [probe.unwrapped.layout.noop], hp.action_prior)
                probe.close()
    except (TypeError, ValueError, AssertionError) as e:
        if venv is not None:
            venv.close()
        raise UsageError(f"cannot build the {spec.name} model ({hp.source}): {e}") from None
    if hp.bc and cfg.resume_from is None:  # the model is valid: now the minutes of cloning
        from .training_bc import clone_start, resolve_teacher

        resolve_teacher(cfg)
        clone_start(cfg, model, venv)
    return model, venv


class InterruptedWhileBuilding(KeyboardInterrupt):
    """A SIGINT or SIGTERM before the model exists (behaviour cloning takes a while)."""

    def __init__(self, signame: str) -> None:
        super().__init__(signame)
        self.signame = signame


_UNSAFE_DIRS = tuple(f"{os.sep}{d}{os.sep}" for d in ("llvmlite", "numba"))


def _unsafe_to_interrupt(code) -> bool:
    """Whether an exception raised in ``code`` could be lost or corrupt state: a finalizer
    (Python prints an exception from ``__del__`` and drops it), or numba/llvmlite, whose
    clean-up is not safe against an exception between two statements (llvmlite's
    ``ObjectRef.detach`` deletes ``_as_parameter_`` and only then marks itself closed, so an
    exception in between makes its ``__del__`` fail later with an ``AttributeError`` on stderr:
    seen in CI, where numba compiles while the teacher plays)."""
    return code.co_name == "__del__" or any(d in code.co_filename for d in _UNSAFE_DIRS)


def _on_build_signal(signum, frame) -> None:
    """Raise :class:`InterruptedWhileBuilding`, unless the signal landed where an exception is
    unsafe (:func:`_unsafe_to_interrupt`, anywhere up the stack): then the signal is sent again
    a moment later, to be raised outside."""
    import threading

    f = frame
    while f is not None:
        if _unsafe_to_interrupt(f.f_code):
            threading.Timer(0.05, os.kill, (os.getpid(), signum)).start()
            return
        f = f.f_back
    raise InterruptedWhileBuilding(signal.Signals(signum).name)


def _build_interruptible(cfg: RunConfig):
    """:func:`_build_model` with SIGINT and SIGTERM turned into :class:`InterruptedWhileBuilding`,
    so either ends the run with one line. SIGINT gets a handler of its own, as it does while
    learning (:func:`train`): a train.py started as a non-interactive shell's background job
    inherits an ignored SIGINT, which Python keeps, and a ``kill -INT`` would then be lost."""

    old = {s: signal.signal(s, _on_build_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return _build_model(cfg)
    except InterruptedWhileBuilding:
        raise
    except KeyboardInterrupt:
        raise InterruptedWhileBuilding("SIGINT") from None
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def train(cfg: RunConfig):
    """Build envs and model (or load them to resume), learn with every callback, save.

    Returns:
        ``(model, agent policy, interrupted)``; ``interrupted`` names the signal that stopped it.
    """
    import torch

    from .callbacks import StopOnSignal

    args = cfg.args
    torch.set_num_threads(args["threads"])
    model, venv = _build_interruptible(cfg)
    meta = _meta(cfg)  # after the build: bc_teacher best is resolved there
    _write_run_files(cfg)
    stop = StopOnSignal()

    def on_signal(signum, frame):
        stop.requested = signal.Signals(signum).name
        # A second signal is not ignored: Ctrl-C then raises KeyboardInterrupt at once.
        signal.signal(
            signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL
        )

    # From here on a SIGINT/SIGTERM (a Ctrl-C, a study stopping its jobs) asks for a checkpoint,
    # whether it comes while the callbacks' reference policies load or while the model learns.
    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return _learn(cfg, model, venv, meta, stop)
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _learn(cfg: RunConfig, model, venv, meta: dict, stop):
    """:func:`train` once the model is built and the signal handlers are set."""
    from stable_baselines3.common.callbacks import CallbackList
    from stable_baselines3.common.logger import configure

    from .callbacks import (
        AtomicCheckpointCallback,
        BestOnValidation,
        ClusterMetricsCallback,
        CriticWarmup,
        HeldOutEvalCallback,
        HyperparamsCallback,
    )

    args, spec, hp = cfg.args, cfg.spec, cfg.hp
    what = "Resuming" if cfg.resume_from else "Training"
    envs_txt = (f"{hp.n_envs} simulator(s) as {venv.num_envs} per-model sub-envs" if hp.per_model
                else f"{hp.n_envs} {args['vec_env']} envs")  # fmt: skip
    print(f"{what} {spec.name} ({hp.actions} actions) on {args['scenario']} for {hp.n_timesteps} steps "
          f"({envs_txt}, normalize={hp.normalize is not None}, "
          f"seed {args['seed']}) -> {cfg.run_dir}")  # fmt: skip
    formats = ["tensorboard"] + (["stdout"] if args["verbose"] else [])
    model.set_logger(configure(str(cfg.run_dir), formats))
    model.coldstart_meta = meta
    def agent_fn(m):
        return AgentPolicy(m, spec, vecnormalize=m.get_vec_normalize_env(), meta=meta)

    ckpt = AtomicCheckpointCallback(
        cfg.run_dir, args["checkpoint_freq"], meta, args["verbose"], keep=args["keep_checkpoints"]
    )
    callbacks = [stop, ClusterMetricsCallback(), ckpt]
    if hp.critic_warmup:
        callbacks.append(CriticWarmup(hp.critic_warmup))
    callbacks.append(HyperparamsCallback({"algo": spec.name, "policy": hp.policy, **hp.raw}, args))
    remaining = hp.n_timesteps - model.num_timesteps
    if remaining <= 0:
        print(f"{cfg.run_dir} already has {model.num_timesteps} >= {hp.n_timesteps} steps; "
              "pass a larger --timesteps to train further")  # fmt: skip
        return model, agent_fn(model), None
    try:
        if args["eval_freq"] > 0:
            callbacks.append(
                HeldOutEvalCallback(
                    agent_fn, args["scenario"], cfg.overrides, args["eval_freq"],
                    args["eval_episodes"], EVAL_SEED, _references(), verbose=args["verbose"],
                )
            )  # fmt: skip
        if hp.valid_freq > 0:
            refs = {}
            if hp.bc:
                import baselines

                refs = {hp.bc["teacher"]: baselines.make_policy(hp.bc["teacher"],
                                                                **hp.bc["teacher_params"])}
            callbacks.append(
                BestOnValidation(
                    agent_fn, args["scenario"], cfg.overrides, hp.valid_freq, hp.valid_episodes,
                    VALID_SEED, cfg.run_dir, meta, refs, verbose=args["verbose"],
                )
            )  # fmt: skip
        # A signal during set-up is seen by StopOnSignal at the first step: a checkpoint then.
        model.learn(
            total_timesteps=remaining,
            log_interval=args["log_interval"] or log_interval(spec, hp, n_envs=venv.num_envs),
            callback=CallbackList(callbacks),
            progress_bar=not args["no_progress"],
            reset_num_timesteps=cfg.resume_from is None,
        )
    except KeyboardInterrupt:
        stop.requested = "SIGINT"
    finally:
        ckpt.model = model
        ckpt.num_timesteps = model.num_timesteps
        ckpt.save(checkpoint=stop.requested is not None)
        venv.close()
    return model, agent_fn(model), stop.requested


def log_interval(spec: AlgoSpec, hp: Hyperparams, every: int = 1000, n_envs: int | None = None) -> int:
    """SB3's ``log_interval`` that writes the logs about every ``every`` env steps: on-policy
    algorithms count rollouts (``n_steps * n_envs`` steps; ``n_envs`` the vec env's, which
    ``per_model`` multiplies by the models), DQN counts episodes."""
    if spec.name == "dqn":
        return 4
    per_rollout = int(hp.kwargs.get("n_steps", 2048 if spec.name != "a2c" else 5)) * (n_envs or hp.n_envs)
    return max(1, round(every / per_rollout))


def read_steps(model_path: Path) -> int:
    import json
    import zipfile

    with zipfile.ZipFile(model_path) as z:
        return int(json.loads(z.read("data")).get("num_timesteps", 0))


def final_evaluation(cfg: RunConfig, agent: AgentPolicy) -> None:
    """Compare the agent with every reference heuristic on held-out windows and seeds."""
    args = cfg.args
    try:
        import baselines
        from agents.evaluation import evaluate, format_table, plot_results, write_json
    except ImportError as e:
        print(f"final evaluation skipped: {e}")
        return
    policies = {agent.name: agent, **_references()}
    print(f"\nEvaluating {len(policies)} policies on held-out windows "
          f"({args['eval_episodes']} episodes, seeds {FINAL_EVAL_SEED}+)...")  # fmt: skip
    results = evaluate(
        args["scenario"],
        policies,
        episodes=args["eval_episodes"],
        seed=FINAL_EVAL_SEED,
        split="eval",
        overrides=cfg.overrides,
        progress=not args["no_progress"],
    )
    print(format_table(results, baseline="baseline" if "baseline" in baselines.POLICIES else None))
    from agents.windows import empty_windows_note

    note = empty_windows_note(results)  # a sparse --trace: drawn windows may hold no request
    if note:
        print(f"train.py: warning: {note}", file=sys.stderr)
    write_json(results, cfg.run_dir / "results.json")
    plots = plot_results(results, cfg.run_dir / "plots")
    print(
        f"results: {cfg.run_dir / 'results.json'}"
        + (f", {len(plots)} plots in {cfg.run_dir / 'plots'}" if plots else "")
    )


def _engine(argv: list[str]) -> tuple[str | None, list[str]]:
    """``--engine NAME`` (or ``--engine=NAME``) taken out of ``argv``: ``(name, the rest)``."""
    rest, name, it = [], None, iter(argv)
    for a in it:
        if a == "--engine":
            name = next(it, "")
        elif a.startswith("--engine="):
            name = a.split("=", 1)[1]
        else:
            rest.append(a)
    return name, rest


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``train.py``; returns the exit status. ``--engine rllib`` hands the
    command line to :func:`agents.rllib_train.main` (RLlib PPO, the ``ray`` extra)."""
    engine, rest = _engine(list(sys.argv[1:] if argv is None else argv))
    if engine is not None:
        from .rllib_train import check_engine
        from .rllib_train import main as rllib_main

        try:
            check_engine(engine)
        except UsageError as e:
            print(f"train.py: error: {one_line(e)}", file=sys.stderr)
            return 2
        if engine == "rllib":
            return rllib_main(["--engine", "rllib", *rest])
        argv = rest
    try:
        cfg = prepare(argv)
    except UsageError as e:
        print(f"train.py: error: {one_line(e)}", file=sys.stderr)
        return 2
    args = cfg.args
    t0 = time.perf_counter()
    try:
        model, agent, interrupted = train(cfg)
    except UsageError as e:
        print(f"train.py: error: {one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # before the model existed: there is nothing to checkpoint
        name = getattr(e, "signame", "SIGINT")
        print(f"train.py: interrupted ({name}) while building the model; nothing trained",
              file=sys.stderr)  # fmt: skip
        return 128 + int(signal.Signals[name])
    dt = time.perf_counter() - t0
    print(
        f"Trained to {model.num_timesteps} steps in {dt:.0f} s; model: {cfg.run_dir / 'model.zip'}"
    )
    if interrupted:
        print(f"Stopped by {interrupted}; checkpoint saved. Resume with:\n"
              f"  python train.py --resume {cfg.run_dir}")  # fmt: skip
        return 0
    from .training_bc import selected_agent

    agent = selected_agent(cfg, agent)
    if not args["no_final_eval"]:
        try:
            final_evaluation(cfg, agent)
        except KeyboardInterrupt:
            print("final evaluation interrupted (the model is saved)")
    print(f"\nTensorBoard:\n  tensorboard --logdir {cfg.run_dir}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
