"""The study's training jobs: a plain job list, and a local backend that runs it in processes.

One :class:`TrainJob` per (scenario, seed) is a command line of ``agents.training.main`` (the
entry point of ``train.py``) plus the folder it trains in, so any backend can run it (here:
subprocesses; :mod:`agents.study_ray` runs the same processes as Ray Tune trials). A job's
folder ``DIR/runs/<scenario>/seed<k>/``::

    job.json     the job's command line, written at each fresh start (once a model is saved,
                 a study run with other settings, or whose command now resolves to other
                 hyperparameters than the run's config.yml, refuses to reuse the folder)
    train.log    the training process's stdout and stderr (appended on resume)
    <run>/       train.py's run folder (model.zip, checkpoints, TensorBoard events, ...)
    segments.jsonl  one line per training process: its arguments, exit status, wall time
    done.json    written last, once model.zip holds the run's n_timesteps: the job is finished

A job with a run folder but no ``done.json`` was interrupted: it continues with
``train.py --resume <run>`` (same step count, same TensorBoard curves); one with no model yet
starts again in a fresh run folder.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from .tune import child_env, child_setup, train_command

STOP_WAIT_S = 60.0  # how long a child gets to checkpoint after SIGINT (assumption; one
# held-out evaluation in progress must end first)


class JobError(Exception):
    """A job's folder does not belong to this study's settings."""


@dataclass(frozen=True)
class TrainJob:
    """One agent to train: ``agents.training.main(list(argv))``, run folder under ``folder``."""

    scenario: str  # the study's scenario label
    seed: int
    argv: tuple[str, ...]  # train.py's arguments, --logdir folder included
    folder: str

    @property
    def key(self) -> str:
        return f"{self.scenario}/seed{self.seed}"


def make_job(label: str, seed: int, train_args: list[str], root: Path) -> TrainJob:
    folder = root / "runs" / label / f"seed{seed}"
    argv = (*train_args, "--seed", str(seed), "--logdir", str(folder),
            "--no-final-eval", "--no-progress")  # fmt: skip
    return TrainJob(label, seed, tuple(argv), str(folder))


def run_folder(job: TrainJob) -> Path | None:
    """The newest train.py run folder of ``job`` (one holding ``args.yml``), or None."""
    runs = [p for p in Path(job.folder).glob("*/") if (p / "args.yml").is_file()]
    return max(runs, key=lambda p: p.stat().st_mtime) if runs else None


def is_done(job: TrainJob) -> bool:
    return (Path(job.folder) / "done.json").is_file()


def check_job_folder(job: TrainJob, hp_now: dict | None = None) -> None:
    """Raise JobError if ``job.folder`` was made by a study with another command line, or its
    run trained with other hyperparameters than ``hp_now`` (the ``config.yml`` that
    ``job.argv`` resolves to today, :func:`resolved_hyperparams`): an edited
    ``agents/hyperparams/*.yml`` must not let a study reuse agents trained with the old one."""
    f = Path(job.folder) / "job.json"
    if f.is_file() and _has_model(job):  # a job that never saved a model may start afresh
        saved = json.loads(f.read_text()).get("argv")
        if saved is not None and tuple(saved) != job.argv:
            raise JobError(
                f"{job.folder} was trained with other settings ({' '.join(saved)}); "
                "use another --out or the same flags"
            )
    run = run_folder(job)
    if hp_now is None or not _has_model(job) or not (run / "config.yml").is_file():
        return  # nothing to reuse: a job with no model yet starts a fresh run
    had = yaml.safe_load((run / "config.yml").read_text()) or {}
    diff = sorted(k for k in set(had) | set(hp_now) if had.get(k) != hp_now.get(k))
    if diff:
        k = diff[0]
        raise JobError(
            f"{run / 'config.yml'} has {k}: {had.get(k)!r} where the hyperparameters now give "
            f"{hp_now.get(k)!r} ({len(diff)} key(s) differ); use another --out, or delete "
            f"{job.folder} to train it again"
        )


def resolved_hyperparams(job: TrainJob) -> dict:
    """What train.py would write to ``config.yml`` for ``job.argv`` now (nothing is written)."""
    from .training import prepare

    return dict(prepare(list(job.argv)).hp.raw)


def _steps(model_zip: Path) -> int:
    from .training import read_steps

    return read_steps(model_zip)


def _target(run: Path) -> int:
    return int(yaml.safe_load((run / "config.yml").read_text())["n_timesteps"])


def log_segment(job: TrainJob, argv: list[str], rc: int, wall_s: float) -> float:
    """Log one training process in ``segments.jsonl``; return the job's total wall time."""
    f = Path(job.folder) / "segments.jsonl"
    with open(f, "a") as fh:
        fh.write(json.dumps({"argv": argv, "returncode": rc, "wall_s": wall_s}) + "\n")
    return sum(json.loads(line)["wall_s"] for line in f.read_text().splitlines() if line)


def training_segments(job: TrainJob) -> int:
    """How many train.py processes a job took (lines of ``segments.jsonl``; 1 is one uninterrupted
    run, more means it was resumed from a checkpoint)."""
    f = Path(job.folder) / "segments.jsonl"
    return sum(1 for line in f.read_text().splitlines() if line) if f.is_file() else 0


def finish(job: TrainJob, wall_s: float) -> bool:
    """Write ``done.json`` if the job's model holds its target steps; True if it did.

    ``wall_s``: the job's training wall time over all its processes (resumes included)."""
    run = run_folder(job)
    if run is None or not (run / "model.zip").is_file():
        return False
    steps, target = _steps(run / "model.zip"), _target(run)
    if steps < target:
        return False
    done = {"run": str(run), "steps": steps, "target_steps": target, "wall_s": wall_s}
    tmp = Path(job.folder) / "done.json.tmp"
    tmp.write_text(json.dumps(done, indent=2) + "\n")
    tmp.replace(Path(job.folder) / "done.json")
    return True


def training_wall_s(job: TrainJob) -> float:
    """A finished job's training wall time over all its processes (from ``done.json``)."""
    return float(json.loads((Path(job.folder) / "done.json").read_text())["wall_s"])


def _has_model(job: TrainJob) -> bool:
    from .loading import latest_checkpoint

    run = run_folder(job)
    return run is not None and ((run / "model.zip").is_file() or latest_checkpoint(run) is not None)


def command(job: TrainJob) -> list[str]:
    """train.py's arguments for ``job`` now: a resume if a model was saved, else a fresh run."""
    run = run_folder(job)
    if _has_model(job):
        argv = list(job.argv)
        keep = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--timesteps"]
        return ["--resume", str(run), *(["--timesteps", keep[-1]] if keep else []),
                "--no-final-eval", "--no-progress"]  # fmt: skip
    return list(job.argv)


def start(job: TrainJob) -> tuple[subprocess.Popen, float, object]:
    """Start ``command(job)`` in a child process; returns ``(process, start time, its log)``."""
    folder = Path(job.folder)
    folder.mkdir(parents=True, exist_ok=True)
    argv = command(job)
    if argv == list(job.argv):  # a fresh start: this job's settings
        (folder / "job.json").write_text(json.dumps(asdict(job), indent=2) + "\n")
    log = open(folder / "train.log", "a")  # closed when the child ends
    log.write(f"$ python train.py {' '.join(argv)}\n")
    log.flush()
    # Own session: the terminal's Ctrl-C reaches the study only, which forwards exactly one
    # SIGINT (a second one would cut a child's checkpoint short).
    proc = subprocess.Popen(
        train_command(argv), stdout=log, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, env=child_env(), start_new_session=True,
        preexec_fn=child_setup(),
    )  # fmt: skip
    return proc, time.perf_counter(), log


def _wait_all(procs: list[subprocess.Popen], seconds: float) -> list[subprocess.Popen]:
    """Wait up to ``seconds`` in all; return the processes still running."""
    deadline = time.monotonic() + seconds
    for proc in procs:
        try:
            proc.wait(timeout=max(0.05, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    return [p for p in procs if p.poll() is None]


def stop(running: dict) -> None:
    """SIGINT every child (train.py saves a checkpoint and exits), then SIGTERM (also a
    checkpoint), then SIGKILL; a second Ctrl-C here kills them at once."""
    procs = [proc for proc, _, _ in running.values()]
    try:
        for sig, wait in ((signal.SIGINT, STOP_WAIT_S), (signal.SIGTERM, STOP_WAIT_S / 2)):
            for proc in procs:
                proc.send_signal(sig)
            procs = _wait_all(procs, wait)
            if not procs:
                break
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for _, _, log in running.values():
            log.close()


def last_line(path: Path) -> str:
    lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    return lines[-1].strip() if lines else "no output"


def run_local(jobs: list[TrainJob], parallel: int, say=print, **_ray_only) -> dict[str, str]:
    """Run the unfinished ``jobs``, up to ``parallel`` at a time (processes on this machine;
    ``_ray_only``: the Ray backend's ``out`` and ``address``, not used here).

    Returns:
        ``{job key: reason}`` of the jobs that failed (empty when every job finished).

    Raises:
        KeyboardInterrupt: After Ctrl-C (or SIGTERM, if the caller maps it): every child was
            told to checkpoint and has ended; finished jobs keep their ``done.json``.
    """
    todo = [j for j in jobs if not is_done(j)]
    running: dict[str, tuple] = {}
    failed: dict[str, str] = {}
    try:
        while todo or running:
            while todo and len(running) < parallel:
                job = todo.pop(0)
                say(f"train {job.key}: {' '.join(command(job))}")
                proc, t0, log = start(job)
                running[job.key] = (proc, t0, log, job)
            time.sleep(0.2)
            for key, (proc, t0, log, job) in list(running.items()):
                if proc.poll() is None:
                    continue
                log.close()
                del running[key]
                wall = log_segment(job, proc.args[3:], proc.returncode, time.perf_counter() - t0)
                if proc.returncode == 0 and finish(job, wall):
                    say(f"done  {key} in {wall:.0f} s")
                    continue
                last = last_line(Path(job.folder) / "train.log")
                failed[key] = (f"exit status {proc.returncode} ({last}); "
                               f"see {Path(job.folder) / 'train.log'}")  # fmt: skip
                say(f"FAILED {key}: {failed[key]}")
                if proc.returncode == 2:  # train.py rejected its input: every job would
                    todo.clear()
    except KeyboardInterrupt:
        stop({k: v[:3] for k, v in running.items()})
        raise
    return failed


def run_ray(jobs: list[TrainJob], parallel: int, say=print, **kw) -> dict[str, str]:
    """The Ray backend (:func:`agents.study_ray.run_ray`; imported only when used)."""
    from .study_ray import run_ray as run

    return run(jobs, parallel, say, **kw)


# Backends: name -> run(jobs, parallel, say, out=DIR, address=ADDR|None) -> {failed job key:
# reason}, raising KeyboardInterrupt after stopping its workers. Per unfinished job (not
# is_done) a backend runs command(job) as start does, then finish(job, wall_s), which writes
# done.json.
BACKENDS = {"local": run_local, "ray": run_ray}
