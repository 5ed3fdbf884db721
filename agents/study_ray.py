"""The study's Ray backend: each unfinished training job is one Ray Tune trial.

``python -m agents.study --ray`` (a local Ray instance) or ``--address HOST:PORT`` (a cluster
started with ``ray start --head``) hands the jobs of :mod:`agents.study_jobs` to
:func:`run_ray` instead of the local process pool. Tune schedules them (at most ``--jobs``
trials at once, each reserving :data:`CPUS_PER_TRIAL`), through :mod:`agents.tune`'s Ray session
and grid Tuner; no scheduler of our own. Each trial is :func:`study_trainable`, a Tune function
trainable that runs the job exactly as the local backend does (``study_jobs.start``: the same
``train.py`` command line, ``train.log``, ``segments.jsonl``, ``done.json``), so the folders,
resume semantics, JSON and report do not depend on the backend, and a study may switch
backends between invocations.

The job folders are the record of what is done, not Tune's experiment state: every invocation
runs the jobs without ``done.json`` as a new Tune experiment in ``DIR/tune/train/``, and a job
that saved a model continues it with ``train.py --resume`` (``study_jobs.command``). That is what
``Tuner.restore`` would give (finished trials kept, unfinished ones resumed), and it also holds
when the folders changed since (a job finished by the local backend, more ``--seeds``).

Ctrl-C or SIGTERM: the driver writes ``DIR/tune/stop``; every trial then stops its training
process the local backend's way (SIGINT: a checkpoint; ``study_jobs.stop``) and ends, trials not
started yet end at once, and the study exits 130 with the command that continues it. A second
Ctrl-C stops at once: Ray ends the trials, and each training process, its parent gone, still
gets the parent-death signal and checkpoints (``agents.tune.child_setup``). A trial that
errors (``train.py`` fails, its Ray worker dies) is reported with its error; run the study again
to resume it from its last checkpoint.

On a multi-node cluster ``--out`` and the working directory must be on storage every node sees
at the same path (Tune's rule for ``storage_path``; the study also evaluates the models on the
driver).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path

from . import study_jobs
from .study_jobs import TrainJob

CPUS_PER_TRIAL = 1.0  # train.py's default DummyVecEnv steps every env in one process
POLL_S = 0.5  # how often a trial looks for the stop file
STOP_FILE = "stop"  # in DIR/tune/: the driver asks every trial to checkpoint and end
EXPERIMENT = "train"  # Tune's experiment folder DIR/tune/train/


def study_trainable(config: dict) -> None:
    """Ray Tune function trainable: one study job (``config["job"]``, a :class:`TrainJob` as a
    dict), run in ``config["cwd"]`` (the driver's working directory) as the local backend runs
    it. Reports ``{"outcome": "done" | "stopped", "wall_s"}``.

    Raises:
        RuntimeError: The training process failed (its status and last line, its log).
    """
    from ray import tune

    os.chdir(config["cwd"])  # Tune starts a trial in a folder of its own; the job's paths
    # (--out, a scenario YAML, a trace) are relative to the driver's
    job = TrainJob(**{**config["job"], "argv": tuple(config["job"]["argv"])})
    stop_file = Path(config["stop_file"])
    if study_jobs.is_done(job) or stop_file.exists():
        tune.report({"outcome": "done" if study_jobs.is_done(job) else "stopped", "wall_s": 0.0})
        return
    proc, t0, log = study_jobs.start(job)
    stopped = False
    try:
        while proc.poll() is None:
            if stop_file.exists():
                stopped = True
                study_jobs.stop({job.key: (proc, t0, log)})  # SIGINT: it checkpoints and exits
                break
            time.sleep(POLL_S)
    finally:
        log.close()
    wall = study_jobs.log_segment(job, proc.args[3:], proc.returncode, time.perf_counter() - t0)
    if proc.returncode == 0 and study_jobs.finish(job, wall):
        tune.report({"outcome": "done", "wall_s": wall})
    elif stopped:
        tune.report({"outcome": "stopped", "wall_s": wall})
    else:
        last = study_jobs.last_line(Path(job.folder) / "train.log")
        raise RuntimeError(f"train.py exited with status {proc.returncode} ({last})")


def run_ray(
    jobs: list[TrainJob], parallel: int, say=print, *, out: Path, address: str | None = None
) -> dict[str, str]:
    """Run the unfinished ``jobs`` as Tune trials, at most ``parallel`` at once, on a local Ray
    instance or the cluster at ``address``.

    Returns:
        ``{job key: reason}`` of the jobs that failed (empty when every job finished).

    Raises:
        KeyboardInterrupt: After Ctrl-C (or SIGTERM): every trial has stopped its training
            process (a checkpoint) and ended; finished jobs keep their ``done.json``.
        UsageError: Nothing answers at ``address``.
    """
    todo = {j.key: j for j in jobs if not study_jobs.is_done(j)}
    if not todo:
        return {}  # Ray not even imported
    from ray import tune

    from .tune import error_line, grid_tuner, ray_session

    exp = Path(out).resolve() / "tune" / EXPERIMENT
    stop_file = exp.parent / STOP_FILE
    exp.parent.mkdir(parents=True, exist_ok=True)
    stop_file.unlink(missing_ok=True)  # a request left by a study that was killed
    for job in todo.values():
        say(f"train {job.key}: {' '.join(study_jobs.command(job))}")
    stopping: list[str] = []

    def on_signal(signum, frame):
        if stopping:  # a second one: at once
            raise KeyboardInterrupt
        stopping.append(signal.Signals(signum).name)
        stop_file.touch()
        print(f"{signal.Signals(signum).name}: every trial checkpoints and ends "
              "(again to stop at once)", file=sys.stderr)  # fmt: skip

    old_env = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # ours below, not Tune's
    try:
        with ray_session(address):
            # After ray.init, which sets a SIGTERM handler of its own (it aborts the driver).
            old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
            try:
                trainable = tune.with_resources(study_trainable, {"cpu": CPUS_PER_TRIAL})
                fixed = {"cwd": os.getcwd(), "stop_file": str(stop_file)}
                configs = [asdict(j) for j in todo.values()]
                results = list(grid_tuner(trainable, configs, fixed, exp, parallel).fit())
            finally:
                for s, h in old.items():
                    signal.signal(s, h)
    finally:
        if old_env is None:
            os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
        else:
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = old_env
        stop_file.unlink(missing_ok=True)
    failed: dict[str, str] = {}
    for r in results:
        c = r.config["job"]
        job = todo[f"{c['scenario']}/seed{c['seed']}"]
        log_path = Path(job.folder) / "train.log"
        if study_jobs.is_done(job):
            say(f"done  {job.key} in {study_jobs.training_wall_s(job):.0f} s")
        elif r.error:
            failed[job.key] = f"{error_line(r.error)} (log: {log_path})"
        elif (r.metrics or {}).get("outcome") == "done":
            failed[job.key] = (f"its trial finished, but {job.folder} holds no done.json here: "
                               "--out must be on storage every node sees")  # fmt: skip
        elif not stopping:
            failed[job.key] = f"its trial ended without finishing (log: {log_path})"
        if job.key in failed:
            say(f"FAILED {job.key}: {failed[job.key]}")
    if stopping:
        raise KeyboardInterrupt
    return failed
