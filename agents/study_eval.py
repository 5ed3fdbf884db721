"""The study's evaluations: one task per (entry, heuristic) and per (entry, seed).

An entry is a studied scenario, or a cross-trace evaluation (``<source>-><trace>``: the source
scenario's agents, untrained there, on another trace replayed on the source's cluster). Every
task runs :func:`agents.evaluation.evaluate` on the same held-out windows (split ``eval``,
episode seeds from train.py's ``FINAL_EVAL_SEED``; ``windows="all"``: every window of a trace's
held-out part, back to back) and caches its entry in ``DIR/evals/<scenario>/<policy>_w<N>.json``
(``_wall.json`` for every window; a cross-trace entry's files under
``DIR/evals/<source>/on-<trace>/``), each window's drop-aware latencies beside it in
``<policy>_w<N>.latencies.npz`` (the report's p99 intervals). An agent's file is keyed by its
model's step count, so a model trained further is evaluated again, and by its run folder's
name, so a model trained afresh (its folder deleted) is too, as is an agent's file from before
that field; each file records the ``settings`` it was made with (scenario, overrides,
windows), and a study with other settings refuses the folder. Tasks run in this process, or up
to ``--jobs`` at once in a ``multiprocessing`` pool (spawned workers that ignore SIGINT; the
study terminates the pool on Ctrl-C and keeps the finished files).
"""

from __future__ import annotations

import json
import multiprocessing
import signal
from pathlib import Path

from .training import FINAL_EVAL_SEED


def eval_file(out: Path, folder: str, what: str, windows: int | str) -> Path:
    return out / "evals" / folder / f"{what}_w{windows}.json"


def latency_file(path: Path) -> Path:
    """Where the evaluation cached in ``path`` keeps each window's drop-aware latencies (one
    array a window, in window order: ``arr_0``, ``arr_1``, ...)."""
    return path.with_name(path.stem + ".latencies.npz")


def window_latencies(path: Path, windows: int) -> list | None:
    """Each window's latencies of the evaluation cached in ``path``; None where the cache has
    none (made before they were kept) or not the ``windows`` expected."""
    f = latency_file(Path(path))
    if not f.is_file():
        return None
    import numpy as np

    with np.load(f) as z:
        out = [z[f"arr_{i}"] for i in range(len(z.files))]
    return out if len(out) == windows else None


def settings(spec: dict) -> dict:
    """What an evaluation of a plan entry depends on, besides the policy (JSON-plain)."""
    return json.loads(json.dumps({"scenario": spec["scenario"], "overrides": spec["overrides"],
                                  "windows": spec["windows"]}))  # fmt: skip


def tasks(args, plan: dict, jobs: list, out: Path) -> list[dict]:
    """Every evaluation of the study as a plain, picklable dict."""
    import baselines

    from . import study_jobs
    from .loading import selected_model_path

    todo = []
    for label, spec in plan.items():
        w, folder = spec["windows"], spec["eval_dir"]
        base = {"label": label, "scenario": spec["scenario"], "overrides": spec["overrides"],
                "ctx": spec["ctx"], "windows": w, "settings": settings(spec)}  # fmt: skip
        for name in baselines.POLICIES:
            path = eval_file(out, folder, name, w)
            todo.append({**base, "policy": name, "run": None, "seed": None, "path": str(path)})
        trained = spec.get("trained_on") or label
        for job in (j for j in jobs if j.scenario == trained):
            steps = json.loads((Path(job.folder) / "done.json").read_text())["steps"]
            path = eval_file(out, folder, f"seed{job.seed}_{steps}steps", w)
            run = str(study_jobs.run_folder(job))
            todo.append({**base, "policy": args.algo, "run": run, "seed": job.seed,
                         "model": selected_model_path(run).name, "path": str(path)})  # fmt: skip
    return todo


def _run_name(task: dict) -> str | None:
    """An agent task's train.py run folder name (unique per run: it ends in the start time)."""
    return Path(task["run"]).name if task["run"] else None


def cached(task: dict) -> dict | None:
    """The task's cache entry, or None if there is none or it is of another run's model, or of
    another model of the run (an entry from before the ``model`` field evaluated ``model.zip``,
    the last model, where the run's agent is its model selection's ``best_model.zip``)."""
    path = Path(task["path"])
    if not path.is_file():
        return None
    entry = json.loads(path.read_text())
    # A heuristic's entry has run and model None; an agent's from before a field is redone.
    same = entry.get("run") == _run_name(task) and entry.get("model") == task.get("model")
    return entry if same else None


def run_task(task: dict, progress: bool = False) -> dict:
    """``{"rewards": [per window], "window_starts_s", "metrics", "sources", "privileged",
    "coverage", "settings"}`` of one task, from its cache file or by evaluating (then cached).
    ``coverage``: evaluate()'s ``windows`` (how many windows and requests, which were empty)."""
    path = Path(task["path"])
    hit = cached(task)
    if hit is not None:
        return hit
    from .evaluation import evaluate
    from .study_metrics import REWARD_KEY, metric_values

    if task["run"] is None:
        from baselines import make_policy

        policy = make_policy(task["policy"])
    else:
        from .loading import load_agent

        policy = load_agent(Path(task["run"]) / task["model"])
    name = task["policy"]
    res = evaluate(task["scenario"], {name: policy}, episodes=task["windows"],
                   seed=FINAL_EVAL_SEED, split="eval", overrides=task["overrides"],
                   progress=progress, record_timeline=False)  # fmt: skip
    row = res["policies"][name]
    values, sources = metric_values(row, res["_raw"][name], task["ctx"])
    entry = {
        "rewards": [float(e[REWARD_KEY]) for e in row["per_episode"]],
        "window_starts_s": [float(e["start_s"]) for e in row["per_episode"]],
        "metrics": values,
        "sources": sources,
        "privileged": bool(row.get("privileged", False)),
        "coverage": res["windows"],
        "settings": task["settings"],
        "run": _run_name(task),  # an agent retrained in the same folder is evaluated again
        "model": task.get("model"),  # the run's selected model (best_model.zip) or model.zip
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    import numpy as np

    lat, lat_tmp = latency_file(path), latency_file(path).with_suffix(".tmp")
    with open(lat_tmp, "wb") as fh:  # (before the entry: an entry implies its latencies)
        np.savez_compressed(fh, *res["_raw"][name]["episode_latencies"])
    lat_tmp.replace(lat)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(entry, indent=1, allow_nan=False) + "\n")
    tmp.replace(path)
    return entry


def _worker_init() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops the pool


def _what(t: dict) -> str:
    return f"{t['label']}/seed{t['seed']}" if t["run"] else f"{t['label']}: {t['policy']}"


def evaluate_all(args, plan: dict, jobs: list, out: Path, say=print) -> dict:
    """``{label: {"heuristics": {name: entry}, "agent": {seed: entry}}}`` for every scenario."""
    every = tasks(args, plan, jobs, out)
    todo = [t for t in every if cached(t) is None]
    if todo:
        per = sorted({str(t["windows"]) for t in todo}, key=lambda x: (x == "all", x))
        say(f"evaluate {len(todo)} task(s) x {'/'.join(per)} windows, "
            f"{min(args.jobs, len(todo))} at a time")  # fmt: skip
    if args.jobs > 1 and len(todo) > 1:
        pool = multiprocessing.get_context("spawn").Pool(min(args.jobs, len(todo)), _worker_init)
        try:
            for t, _ in zip(todo, pool.imap(run_task, todo), strict=True):
                say(f"evaluated {_what(t)}")
            pool.close()
        except BaseException:
            pool.terminate()
            raise
        finally:
            pool.join()
    else:
        for t in todo:
            run_task(t, progress=not args.no_progress)
            say(f"evaluated {_what(t)}")
    evals: dict = {label: {"heuristics": {}, "agent": {}} for label in plan}
    for t in every:
        entry = run_task(t)  # from its file now
        entry["_latency_path"] = t["path"]  # (read by the report: window_latencies)
        if t["run"] is None:
            evals[t["label"]]["heuristics"][t["policy"]] = entry
        else:
            evals[t["label"]]["agent"][t["seed"]] = entry
    return evals
