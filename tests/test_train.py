"""train.py end to end, through its command line (subprocesses), at tiny budgets.

Every run uses the `small` scenario with 200-s episodes (20 steps) and a few hundred steps
(the default scenario, `paper`, and its behaviour-cloning pipeline: tests/test_train_bc.py).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from agents.loading import load_agent

REPO = Path(__file__).resolve().parents[1]
TRAIN = str(REPO / "train.py")
FAST = ["--scenario", "small", "-o", "episode_s=200", "--no-progress", "--threads", "1",
        "--log-interval", "1"]
# Per-algorithm settings that keep a smoke run to a few seconds.
TINY = {
    "ppo": ["--hp", "n_steps=64", "--hp", "batch_size=64", "--hp", "n_epochs=1"],
    "maskable_ppo": ["--hp", "n_steps=64", "--hp", "batch_size=64", "--hp", "n_epochs=1"],
    "recurrent_ppo": ["--hp", "n_steps=64", "--hp", "batch_size=64", "--hp", "n_epochs=1"],
    "a2c": ["--hp", "n_steps=8"],
    "dqn": [
        "--hp",
        "learning_starts=64",
        "--hp",
        "buffer_size=1000",
        "--hp",
        "target_update_interval=64",
    ],
}


def run(*args, timeout=240, check=True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, TRAIN, *map(str, args)], cwd=REPO, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip
    if check and proc.returncode != 0:
        raise AssertionError(
            f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc


def run_dir(logdir: Path) -> Path:
    (d,) = [p for p in logdir.iterdir() if p.is_dir()]
    return d


def scalars(d: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, list] = {}
    for f in sorted(d.glob("events.out.tfevents.*")):
        ea = EventAccumulator(str(f), size_guidance={"scalars": 0, "histograms": 0, "tensors": 0})
        ea.Reload()
        for tag in ea.Tags()["scalars"]:
            out.setdefault(tag, []).extend((e.step, e.value) for e in ea.Scalars(tag))
        for tag in ea.Tags()["histograms"]:
            out.setdefault(f"histogram:{tag}", []).append((0, 0.0))
        for tag in ea.Tags()["tensors"]:
            out.setdefault(f"tensor:{tag}", []).append((0, 0.0))
    return out


def num_timesteps(model_zip: Path) -> int:
    with zipfile.ZipFile(model_zip) as z:
        return int(json.loads(z.read("data"))["num_timesteps"])


# v1: every algorithm trains on the env's own Discrete space (v0's composite/full choice is gone).
@pytest.mark.parametrize("algo", ["ppo", "a2c", "dqn", "maskable_ppo", "recurrent_ppo"])
def test_smoke_every_algorithm(tmp_path, algo):
    n_envs = 1 if algo == "dqn" else 2
    run("--algo", algo, "--timesteps", 256, "--n-envs", n_envs, "--logdir", tmp_path, "--seed", 3,
        "--eval-freq", 128, "--eval-episodes", 1, "--checkpoint-freq", 128, "--no-final-eval",
        *FAST, *TINY[algo])  # fmt: skip
    d = run_dir(tmp_path)
    assert d.name.startswith(f"coldstart_ServerlessGPU-v1__{algo}__3__")
    for name in ("model.zip", "config.yml", "args.yml", "command.txt", "vecnormalize.pkl"):
        assert (d / name).is_file(), name
    assert list((d / "checkpoints").glob("model_*_steps.zip"))
    assert not list(d.rglob("*.tmp"))
    assert yaml.safe_load((d / "args.yml").read_text())["algo"] == algo
    assert yaml.safe_load((d / "config.yml").read_text())["n_timesteps"] == 256
    tags = scalars(d)
    for key in ("cluster/p99_latency_s", "cluster/slo_violation_rate", "cluster/cold_starts_cloud",
                "cluster/cost_usd", "cluster/gpu_utilization", "cluster/requests_dropped",
                "eval/mean_reward", "eval/baseline/episode_reward"):  # fmt: skip
        assert key in tags, key
    assert "rollout/ep_rew_mean" in tags
    assert "histogram:cluster/latency_s" in tags
    assert "tensor:hyperparameters/text_summary" in tags
    agent = load_agent(d)
    assert agent.name == algo and type(agent.model).__name__.lower() == algo.replace("_", "")
    import gymnasium as gym

    import envs  # noqa: F401

    env = gym.make("coldstart/ServerlessGPU-v1", scenario="small", split="eval", episode_s=200)
    agent.bind(env)
    obs, _ = env.reset(seed=0)
    action, _ = agent.predict(obs, episode_start=np.ones(1, dtype=bool))
    assert env.action_space.contains(int(np.asarray(action).reshape(())))


def test_final_evaluation_table_results_and_evaluate_cli(tmp_path):
    p = run("--algo", "ppo", "--timesteps", 128, "--n-envs", 2, "--logdir", tmp_path,
            "--eval-freq", 0, "--eval-episodes", 1, *FAST, *TINY["ppo"])  # fmt: skip
    d = run_dir(tmp_path)
    out = p.stdout
    assert "baseline" in out and "random" in out and "ppo" in out
    assert f"tensorboard --logdir {d}" in out
    results = json.loads((d / "results.json").read_text())
    assert {"ppo", "baseline", "random", "hierarchical"} <= set(results["policies"])
    if not (REPO / "evaluate.py").exists():
        pytest.skip("evaluate.py not written yet")
    ev = subprocess.run(
        [sys.executable, str(REPO / "evaluate.py"), "--model", str(d), "--policies", "random",
         "--episodes", "1", "--scenario", "small", "-o", "episode_s=200", "--no-progress"],
        cwd=REPO, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    if ev.returncode == 2 and "unrecognized arguments" in ev.stderr:
        ev = subprocess.run(
            [sys.executable, str(REPO / "evaluate.py"), "--model", str(d), "--policies", "random",
             "--episodes", "1", "--scenario", "small"],
            cwd=REPO, capture_output=True, text=True, timeout=240,
        )  # fmt: skip
    assert ev.returncode == 0, ev.stderr[-2000:]
    assert "ppo" in ev.stdout and "random" in ev.stdout


def test_resume_continues_the_step_count_and_the_curves(tmp_path):
    run("--algo", "ppo", "--timesteps", 128, "--n-envs", 2, "--logdir", tmp_path,
        "--eval-freq", 0, "--no-final-eval", *FAST, *TINY["ppo"])  # fmt: skip
    d = run_dir(tmp_path)
    first = num_timesteps(d / "model.zip")
    assert first >= 128
    p = run("--resume", d, "--timesteps", 384, "--no-final-eval", "--no-progress")
    assert "Resuming ppo" in p.stdout
    assert run_dir(tmp_path) == d  # same folder, no new run
    assert num_timesteps(d / "model.zip") >= 384 > first
    steps = [s for s, _ in scalars(d)["rollout/ep_rew_mean"]]
    assert max(steps) >= 384 and min(steps) <= first  # one curve across both sessions
    assert len(list(d.glob("events.out.tfevents.*"))) == 2
    assert len((d / "command.txt").read_text().splitlines()) == 2
    # A flag that defines the run cannot change on resume.
    bad = run("--resume", d, "--algo", "a2c", check=False)
    assert bad.returncode == 2 and "cannot change on --resume" in bad.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_saves_a_checkpoint_and_exits_cleanly(tmp_path, sig):
    proc = subprocess.Popen(
        [sys.executable, TRAIN, "--algo", "ppo", "--timesteps", "10000000", "--n-envs", "2",
         "--logdir", str(tmp_path), "--eval-freq", "0", "--checkpoint-freq", "0", *FAST,
         *TINY["ppo"]],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # wait until learning has produced a log point
            events = list(tmp_path.glob("*/events.out.tfevents.*"))
            if events and events[0].stat().st_size > 2000:
                break
            time.sleep(0.5)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-2000:]
    assert "Traceback" not in err
    d = run_dir(tmp_path)
    assert f"python train.py --resume {d}" in out
    n = num_timesteps(d / "model.zip")
    assert n > 0 and (d / "vecnormalize.pkl").is_file()
    ckpt = d / "checkpoints" / f"model_{n}_steps.zip"
    assert ckpt.is_file() and (d / "checkpoints" / f"vecnormalize_{n}_steps.pkl").is_file()
    # Resuming from the checkpoint zip continues the same run folder.
    from agents.training import prepare

    cfg = prepare(["--resume", str(ckpt)])
    assert cfg.run_dir == d and cfg.resume_from == ckpt and cfg.spec.name == "ppo"


def test_a_signal_during_set_up_still_gives_a_checkpoint(tmp_path, monkeypatch):
    """A SIGINT that comes after the "Training ..." line but before learning starts (here: while
    the held-out callback loads its reference heuristics, where a study's stop once landed and
    killed the child with a KeyboardInterrupt traceback) is a checkpoint request like any other."""
    import os

    from agents import training

    def references_then_signal():
        os.kill(os.getpid(), signal.SIGINT)
        return {}

    monkeypatch.setattr(training, "_references", references_then_signal)
    cfg = training.prepare(["--algo", "ppo", "--timesteps", "100000", "--n-envs", "1",
                            "--logdir", str(tmp_path), "--eval-freq", "1000", *FAST,
                            *TINY["ppo"]])  # fmt: skip
    before = signal.getsignal(signal.SIGINT)
    model, _, interrupted = training.train(cfg)
    assert interrupted == "SIGINT"
    assert signal.getsignal(signal.SIGINT) is before  # the handlers are put back
    n = num_timesteps(cfg.run_dir / "model.zip")
    assert 0 < n < 100000 and (cfg.run_dir / "checkpoints" / f"model_{n}_steps.zip").is_file()


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--algo", "ppo2"], "Did you mean 'ppo'"),
        (["--hyperparams", "/nonexistent/hp.yml"], "does not exist"),
        (["-o", "episode_s=abc"], "episode_s"),
        (["-o", "no_equals_sign"], "KEY=VALUE"),
        (["-o", "episod_s=10"], "Did you mean 'episode_s'"),
        (["--scenario", "smal"], "Did you mean 'small'"),
        (["--hp", "n_step=8"], "Did you mean 'n_steps'"),
        (["--timesteps", "ten"], "invalid int value"),
        (["--resume", "/nonexistent/run"], "does not exist"),
        (["--trace", "/nonexistent/trace.csv"], "--trace"),
        (["--vec-env", "ray"], "invalid choice"),
        (["--algo", "dqn", "--hp", "actions=full"], "actions must be one of native"),
        (["--hp", "learning_rate=abc"], "learning rate"),
    ],
)
def test_bad_input_exits_2_with_one_line(args, needle):
    p = run(*args, "--no-progress", check=False, timeout=120)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("train.py: error: ") and needle in lines[0]
    assert p.stdout == ""


def test_trace_option_replaces_the_workload(tmp_path):
    trace = REPO / "tests" / "data" / "generic_t_model.csv"
    # The 6-s trace is too short for one 10-s step in its held-out part: one line, exit 2.
    p = run("--scenario", "small", "--trace", trace, "--time-col", "t", "--model-col", "model",
            check=False)
    assert p.returncode == 2 and "too short" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    # An explicit episode_s that does not fit is the scenario's error.
    p = run("--scenario", "small", "--trace", trace, "--time-col", "t", "-o", "episode_s=600",
            check=False)
    assert p.returncode == 2 and "episode_s" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    from agents.training import prepare

    cfg = prepare(["--scenario", "small", "--trace", "azure2019", "--logdir", str(tmp_path)])
    assert cfg.overrides["workload"] == {"kind": "trace", "path": "azure2019"}
    assert cfg.overrides["span_s"] == pytest.approx(86400.0)
    # A trace of 1140 s (Azure 2021 sample): the 1200-s episode shrinks to whole steps that fit.
    cfg = prepare(["--scenario", "small", "--trace", str(REPO / "tests/data/azure2021_20.csv"),
                   "--logdir", str(tmp_path)])
    assert cfg.overrides["episode_s"] == pytest.approx(280.0)


def test_help_lists_every_option():
    p = run("--help")
    for flag in ("--algo", "--scenario", "--timesteps", "--n-envs", "--vec-env", "--seed",
                 "--logdir", "--hyperparams", "--normalize", "--resume", "--device", "--eval-freq",
                 "--checkpoint-freq", "--eval-episodes", "--no-final-eval", "--trace",
                 "--time-col", "--model-col"):  # fmt: skip
        assert flag in p.stdout, flag
