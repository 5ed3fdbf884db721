"""SB3 training jobs as Ray Tune trials: sweeps of seeds, scenarios, algorithms, hyperparameters.

:func:`run_sweep` runs one Tune trial per job config (a grid over the given list), locally or on
a cluster (``address``), and resumes an interrupted sweep from its folder with
``Tuner.restore``; Tune schedules, retries and records the trials (no scheduler of our own).
Each trial is :func:`sb3_trainable`: one ``train.py`` run (:func:`agents.training.main`, in a
child process of the trial), with its run folder in ``<sweep folder>/job_<i>/runs/``. A trial that was
interrupted mid-run continues its run folder with ``train.py --resume`` (from the last SB3
checkpoint, ``checkpoint_freq``) instead of starting over.

A job config (a dict; every key optional)::

    {"algo": "maskable_ppo", "scenario": "small", "seed": 0, "timesteps": 100000,
     "n_envs": 4, "eval_freq": 0, "eval_episodes": 5, "checkpoint_freq": 50000,
     "normalize": True, "hp": {"learning_rate": 1e-4}, "override": {"episode_s": 600}}

A trial reports the agent's final held-out metrics (``results.json`` of the run: ``episode_reward``,
``p99_latency_s``, ``slo_violation_rate``, ``cost_usd``...), ``references_beaten`` and ``run_dir``.
On a multi-node cluster ``storage_path`` must be on storage every node sees (Tune's rule).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .cli import UsageError, one_line

FLAGS = {  # job key -> train.py flag
    "algo": "--algo", "scenario": "--scenario", "seed": "--seed", "timesteps": "--timesteps",
    "n_envs": "--n-envs", "eval_freq": "--eval-freq", "eval_episodes": "--eval-episodes",
    "checkpoint_freq": "--checkpoint-freq", "vec_env": "--vec-env",
}  # fmt: skip
FIXED_ON_RESUME = ("algo", "scenario", "seed", "n_envs", "normalize", "hp", "override")
JOB_KEYS = (*FLAGS, "normalize", "hp", "override")
REPORTED = ("episode_reward", "episode_reward_std", "p50_latency_s", "p99_latency_s",
            "slo_violation_rate", "cost_usd", "requests_dropped", "cold_starts")  # fmt: skip
CONFIGS_FILE = "sweep_jobs.json"
ROOT = Path(__file__).resolve().parents[1]  # the project, importable in a training child


def job_argv(job: dict, logdir: str | Path, resume: Path | None = None) -> list[str]:
    """The ``train.py`` arguments of one job (``--resume`` form when ``resume`` is a run folder).

    Raises:
        ValueError: An unknown key, or ``hp``/``override`` that is not a mapping.
    """
    unknown = sorted(set(job) - set(JOB_KEYS))
    if unknown:
        raise ValueError(f"sweep job {job}: unknown key(s) {unknown}; expected {list(JOB_KEYS)}")
    argv = ["--no-progress"]
    if resume is not None:
        argv += ["--resume", str(resume)]
    for key, flag in FLAGS.items():
        if key in job and not (resume is not None and key in FIXED_ON_RESUME):
            argv += [flag, str(job[key])]
    if resume is None:
        argv += ["--logdir", str(logdir)]
        if "normalize" in job:
            argv.append("--normalize" if job["normalize"] else "--no-normalize")
        for key, flag in (("hp", "--hp"), ("override", "-o")):
            items = job.get(key) or {}
            if not isinstance(items, dict):
                raise ValueError(
                    f"sweep job {job}: {key!r} must map names to values, got {items!r}"
                )
            for k, v in items.items():
                argv += [flag, f"{k}={v}"]
    return argv


PARENT_DEATH = "SIGUSR1"  # what the kernel sends a training child when its parent thread ends


def train_command(argv: list[str]) -> list[str]:
    """The command line of a training child process: train.py's ``argv`` through
    :func:`train_child` (``argv`` from index 3 on)."""
    return [sys.executable, "-c", "from agents.tune import train_child; train_child()", *argv]


def train_child() -> None:  # pragma: no cover - the child's entry point
    """``agents.training.main`` with the parent-death signal relayed, once, as SIGINT.

    :func:`child_setup` asks the kernel for SIGUSR1 when the thread that started this process
    ends (a trial's worker that dies, a study killed), so that train.py checkpoints and exits
    instead of training on orphaned. The kernel sends it again each time the next thread of a
    dying worker ends; train.py would take a third SIGINT in its checkpoint's write as
    KeyboardInterrupt, so only the first becomes a SIGINT.
    """
    import signal

    def relay(signum, frame):
        signal.signal(signum, signal.SIG_IGN)
        os.kill(os.getpid(), signal.SIGINT)

    signal.signal(getattr(signal, PARENT_DEATH), relay)
    from agents.training import main

    sys.exit(main(sys.argv[1:]))


def child_setup():
    """The ``preexec_fn`` of a training child process (:func:`train_command`).

    In the child, before exec: SIGINT back to its default and SIGINT/SIGTERM unblocked (a study
    started as a background job inherits an ignored SIGINT, a Ray worker's thread a blocked
    one; either would swallow the SIGINT that asks train.py to checkpoint), and on Linux
    ``PR_SET_PDEATHSIG`` (:data:`PARENT_DEATH`, see :func:`train_child`). Everything is resolved
    here, in the parent: the forked child of a threaded process must not import.
    """
    import ctypes
    import signal

    prctl = None
    if sys.platform.startswith("linux"):
        try:
            prctl = ctypes.CDLL(None).prctl
        except (OSError, AttributeError):
            pass
    death = int(getattr(signal, PARENT_DEATH))
    sigint, both = signal.SIGINT, (signal.SIGINT, signal.SIGTERM)

    def setup() -> None:
        signal.signal(sigint, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, both)
        if prctl is not None:
            prctl(1, death)  # PR_SET_PDEATHSIG

    return setup


def child_env() -> dict[str, str]:
    """The environment of a training child: this project importable, output unbuffered."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}


def error_line(err: BaseException) -> str:
    """One line for a trial's error: the trainable's own exception (not Ray's traceback), or
    the first line of Ray's (a worker that died: ``RayActorError``)."""
    cause = getattr(err, "cause", None)  # RayTaskError: the exception the trainable raised
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {one_line(cause)}"
    first = next((ln.strip() for ln in str(err).splitlines() if ln.strip()), "")
    return f"{type(err).__name__}: {first}" if first else type(err).__name__


@contextlib.contextmanager
def ray_session(address: str | None = None):
    """Join ``address`` (``host:port`` or ``auto``) or start a new local Ray instance (one CPU
    per core), unless this process is already connected; disconnect (a local instance: stop
    it) at the end.

    Raises:
        UsageError: Nothing listens at ``address``, or Ray refuses it (one line).
    """
    import logging

    import ray

    if ray.is_initialized():
        yield
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # At verbose=0 only Tune's older reporter is silent (the newer one prints its tables).
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    kw = dict(log_to_driver=False, logging_level=logging.WARNING)
    if address:
        from .rllib_train import check_address

        check_address(address)
        try:
            ray.init(address=address, **kw)
        except (ConnectionError, RuntimeError) as e:
            raise UsageError(f"--address {address}: {one_line(e)}") from None
    else:
        # "local": a new instance, even where `ray start` left a cluster that ray.init()
        # would join.
        ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, **kw)
    logging.getLogger("ray.tune").setLevel(logging.WARNING)
    try:
        yield
    finally:
        ray.shutdown()


def sb3_trainable(config: dict) -> None:
    """Ray Tune function trainable: one SB3 training run; reports its final evaluation.

    The run is ``agents.training.main`` in a child process of the trial's worker: Tune calls a
    function trainable in a thread, where the run's signal handlers (Ctrl-C and SIGTERM save a
    checkpoint) cannot be installed. Its output goes to ``train.log`` in the trial folder.
    """
    import subprocess

    from ray import tune

    job = dict(config["job"])
    # The job's own folder in the sweep folder (not Tune's per-session trial folder), so that a
    # restored sweep finds the run an interrupted trial left and resumes it.
    trial_dir = Path(config["sweep_dir"]) / f"job_{job.pop('index'):03d}"
    logdir = trial_dir / "runs"
    runs = sorted(p.parent for p in logdir.glob("*/args.yml"))
    argv = job_argv(job, logdir, resume=runs[-1] if runs else None)
    trial_dir.mkdir(parents=True, exist_ok=True)
    with open(trial_dir / "train.log", "ab") as log:
        rc = subprocess.run(
            train_command(argv), stdout=log, stderr=subprocess.STDOUT, env=child_env(),
            preexec_fn=child_setup(),
        ).returncode  # fmt: skip
    if rc != 0:
        lines = (trial_dir / "train.log").read_text(errors="replace").strip().splitlines()
        raise RuntimeError(
            f"train.py {' '.join(argv)} exited with status {rc}: {lines[-1] if lines else ''}"
        )
    run_dir = sorted(p.parent for p in logdir.glob("*/args.yml"))[-1]
    results = json.loads((run_dir / "results.json").read_text())
    pols = results["policies"]
    agent_name, agent = next(iter(pols.items()))  # the agent comes first, then the references
    beaten = sum(
        (r.get("episode_reward") or -float("inf")) < (agent.get("episode_reward") or -float("inf"))
        for n, r in pols.items()
        if n != agent_name
    )
    metrics: dict[str, Any] = {k: agent[k] for k in REPORTED if agent.get(k) is not None}
    metrics.update(references_beaten=beaten, references=len(pols) - 1, run_dir=str(run_dir))
    tune.report(metrics)


def _absolute(job: dict) -> dict:
    """Job with a scenario file path made absolute (trials run in their own folder)."""
    job = dict(job)
    sc = job.get("scenario")
    if isinstance(sc, str) and os.path.exists(sc):
        job["scenario"] = str(Path(sc).resolve())
    return job


def grid_tuner(trainable, jobs: list[dict], fixed: dict, path: Path, max_concurrent: int = 0):
    """A Tuner with one trial per entry of ``jobs`` (``config["job"]``; ``fixed`` beside it),
    its experiment folder ``path`` (``<storage>/<name>``), trials at once capped at
    ``max_concurrent`` (0: as many as the cluster's CPUs allow)."""
    from ray import tune

    return tune.Tuner(
        trainable,
        param_space={"job": tune.grid_search(jobs), **fixed},
        tune_config=tune.TuneConfig(max_concurrent_trials=max_concurrent or None),
        run_config=tune.RunConfig(name=path.name, storage_path=str(path.parent), verbose=0),
    )


def run_sweep(
    configs: Sequence[dict],
    address: str | None = None,
    storage_path: str | Path = "runs/tune",
    resume: bool = True,
    name: str = "sweep",
    cpus_per_trial: float = 1.0,
) -> list[dict[str, Any]]:
    """Run every job of ``configs`` as a Tune trial; returns one row per job, in order.

    Args:
        configs: Job configs (see the module docstring).
        address: A Ray cluster to run on (``host:port`` or ``auto``); None: a local instance.
        storage_path: Parent of the sweep folder ``<storage_path>/<name>``.
        resume: When that folder holds a sweep of the same jobs, restore it (finished trials are
            kept, unfinished and errored ones run again) instead of starting afresh.
        name: The sweep folder's name.
        cpus_per_trial: Ray CPUs each trial reserves (SB3 with ``n_envs`` dummy envs uses one).

    Returns:
        ``{"job": <config>, "status": "TERMINATED" | "ERROR", "error": str | None, **metrics}``
        per job (metrics: see :func:`sb3_trainable`).

    Raises:
        ValueError: A bad job, or ``resume`` with a sweep folder of other jobs.
    """
    from ray import tune

    jobs = [_absolute(c) for c in configs]
    for j in jobs:
        job_argv(j, ".")  # validate before anything starts
    path = Path(storage_path).resolve() / name
    stored = path / CONFIGS_FILE
    restore = resume and tune.Tuner.can_restore(str(path))
    if restore and stored.is_file() and json.loads(stored.read_text()) != jobs:
        raise ValueError(f"{path} holds a sweep of other jobs; pass resume=False or another name")
    trainable = tune.with_resources(sb3_trainable, {"cpu": cpus_per_trial})
    with ray_session(address):
        if restore:
            tuner = tune.Tuner.restore(str(path), trainable, resume_errored=True)
        else:
            indexed = [{"index": i, **j} for i, j in enumerate(jobs)]
            tuner = grid_tuner(trainable, indexed, {"sweep_dir": str(path)}, path)
            path.mkdir(parents=True, exist_ok=True)
            stored.write_text(json.dumps(jobs, indent=1))
        grid = tuner.fit()
    rows: list[dict[str, Any]] = [{} for _ in jobs]
    for r in grid:
        job = dict(r.config["job"])
        i = job.pop("index")
        row = {"job": job, "status": "ERROR" if r.error else "TERMINATED"}
        row["error"] = error_line(r.error) if r.error else None
        row.update(
            {
                k: v
                for k, v in (r.metrics or {}).items()
                if k in (*REPORTED, "references_beaten", "references", "run_dir")
            }
        )
        rows[i] = row
    return rows
