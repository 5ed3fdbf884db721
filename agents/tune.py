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

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: the training process gets SIGTERM (it then saves a checkpoint) if the trial's
    worker dies, so a killed sweep leaves no orphan."""
    import ctypes
    import signal

    try:
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


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
    root = str(Path(__file__).resolve().parents[1])  # the project, importable in the child
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
    }
    code = "import sys; from agents.training import main; sys.argv[0] = 'train.py'; sys.exit(main(sys.argv[1:]))"
    trial_dir.mkdir(parents=True, exist_ok=True)
    with open(trial_dir / "train.log", "ab") as log:
        rc = subprocess.run(
            [sys.executable, "-c", code, *argv], stdout=log, stderr=subprocess.STDOUT, env=env,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
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
    import ray
    from ray import tune

    jobs = [_absolute(c) for c in configs]
    for j in jobs:
        job_argv(j, ".")  # validate before anything starts
    path = Path(storage_path).resolve() / name
    stored = path / CONFIGS_FILE
    restore = resume and tune.Tuner.can_restore(str(path))
    if restore and stored.is_file() and json.loads(stored.read_text()) != jobs:
        raise ValueError(f"{path} holds a sweep of other jobs; pass resume=False or another name")
    started = not ray.is_initialized()
    if started:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        if address:
            from .rllib_train import check_address

            check_address(address)
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    try:
        trainable = tune.with_resources(sb3_trainable, {"cpu": cpus_per_trial})
        if restore:
            tuner = tune.Tuner.restore(str(path), trainable, resume_errored=True)
        else:
            indexed = [{"index": i, **j} for i, j in enumerate(jobs)]
            tuner = tune.Tuner(
                trainable,
                param_space={"job": tune.grid_search(indexed), "sweep_dir": str(path)},
                run_config=tune.RunConfig(name=name, storage_path=str(path.parent), verbose=0),
            )
            path.mkdir(parents=True, exist_ok=True)
            stored.write_text(json.dumps(jobs, indent=1))
        grid = tuner.fit()
    finally:
        if started:
            ray.shutdown()
    rows: list[dict[str, Any]] = [{} for _ in jobs]
    for r in grid:
        job = dict(r.config["job"])
        i = job.pop("index")
        row = {"job": job, "status": "ERROR" if r.error else "TERMINATED"}
        row["error"] = str(r.error).strip().splitlines()[-1] if r.error else None
        row.update(
            {
                k: v
                for k, v in (r.metrics or {}).items()
                if k in (*REPORTED, "references_beaten", "references", "run_dir")
            }
        )
        rows[i] = row
    return rows
