"""train.py's behaviour-cloning pipeline (the default scenario's): the teacher's windows, the
clone, per-model fine-tuning and model selection, end to end through the command line at tiny
budgets (`paper` with 200-s episodes: 20 intervals x 18 models = 360 model-steps)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
import yaml
from test_train import REPO, TRAIN, num_timesteps, run, run_dir, scalars

from agents.loading import load_agent

BC = ["--scenario", "paper", "-o", "episode_s=200", "--no-progress", "--threads", "1",
      "--log-interval", "1", "--hp", "bc_teacher=histogram", "--hp", "bc_episodes=1", "--hp", "bc_epochs=1",
      "--hp", "bc_dagger_rounds=1", "--hp", "bc_dagger_episodes=1", "--hp", "bc_dagger_epochs=1",
      "--hp", "critic_warmup=72", "--hp", "n_steps=4", "--hp", "batch_size=36",
      "--hp", "n_epochs=1", "--hp", "valid_episodes=1"]  # fmt: skip


def test_the_default_is_paper_with_cloning_and_per_model_credit(tmp_path):
    from agents.training import prepare

    cfg = prepare(["--logdir", str(tmp_path)])
    assert cfg.args["scenario"] == "paper" and cfg.spec.name == "maskable_ppo"
    assert cfg.hp.source.endswith("[coldstart/ServerlessGPU-v1:paper]")
    assert cfg.hp.bc["teacher"] == "best" and cfg.hp.per_model
    assert cfg.hp.valid_freq > 0 and cfg.hp.critic_warmup > 0
    small = prepare(["--scenario", "small", "--logdir", str(tmp_path)])
    assert small.hp.bc is None and not small.hp.per_model  # other scenarios: the env id's block


def test_trains_selects_saves_and_compares(tmp_path):
    p = run("--timesteps", 360, "--logdir", tmp_path, "--eval-freq", 144, "--eval-episodes", 1,
            "--checkpoint-freq", 144, "--hp", "valid_freq=144", *BC)  # fmt: skip
    d = run_dir(tmp_path)
    assert "Behaviour cloning: histogram plays 1 training windows" in p.stdout
    assert "18 per-model sub-envs" in p.stdout and "DAgger round 1/1" in p.stdout
    assert "sharpened: logits x" in p.stdout
    assert "Model selection: " in p.stdout and "training-split windows, seeds 30000+" in p.stdout
    for name in ("model.zip", "best_model.zip", "best.json", "config.yml", "results.json"):
        assert (d / name).is_file(), name
    assert list((d / "checkpoints").glob("model_*_steps.zip"))
    cfg = yaml.safe_load((d / "config.yml").read_text())
    assert cfg["bc_teacher"] == "histogram" and cfg["per_model"] is True
    best = json.loads((d / "best.json").read_text())
    assert best["windows"] == {"split": "train", "seeds": [30000]} and "histogram" in best["references"]
    assert best["steps"] in (0, 144, 288, 360)
    tags = scalars(d)
    for key in ("rollout/ep_rew_mean", "cluster/p99_latency_s", "cluster/cost_usd",
                "cluster/episodes", "histogram:cluster/latency_s", "eval/mean_reward",
                "eval/histogram/episode_reward", "valid/mean_reward",
                "valid/histogram/episode_reward", "valid/best_reward", "train/critic_warmup"):  # fmt: skip
        assert key in tags, key
    # One simulator: each 20-interval episode counted once, on the env's reward scale.
    assert all(v == 1.0 for _, v in tags["cluster/episodes"])
    warm = [v for _, v in sorted(tags["train/critic_warmup"])]
    assert warm[0] == 1.0 and warm.count(1.0) == 1 and warm[-1] == 0.0  # 72 steps: one rollout
    results = json.loads((d / "results.json").read_text())
    assert {"maskable_ppo", "histogram", "baseline"} <= set(results["policies"])
    agent = load_agent(d / "best_model.zip")
    assert agent.meta["imitation"]["teacher"] == "histogram" and agent.meta["per_model"]
    # Time of day is hidden from the policy (bc_blind): it normalises to ~0 whatever the hour.
    from envs import layout

    x = np.zeros(layout.N_OBS, dtype=np.float32)
    y = x.copy()
    y[[layout.C["tod_sin"], layout.C["tod_cos"]]] = 1.0
    assert np.abs(agent.normalize(y) - agent.normalize(x)).max() < 1e-5


def test_dagger_select_keeps_the_best_round_on_the_selection_windows(tmp_path):
    """``bc_dagger_select``: every round's clone is scored on the model-selection windows and
    the best is what learning starts from: its score is the model selection's step 0."""
    args = [a.replace("bc_dagger_rounds=1", "bc_dagger_rounds=3") for a in BC]
    p = run("--timesteps", 72, "--logdir", tmp_path, "--eval-freq", 0, "--hp", "valid_freq=144",
            "--hp", "bc_dagger_select=true", "--no-final-eval", *args)  # fmt: skip
    scores = [float(m) for m in re.findall(r"clone: reward (-?[\d.]+) on the 1 model-selection", p.stdout)]
    assert len(scores) == 4, p.stdout  # the first clone and three rounds
    assert scores.index(max(scores)) < 3  # on this seed a later round is worse: one is put back
    kept = re.search(r"DAgger selection \(bc_dagger_select\): round (\d) kept, reward (-?[\d.]+)",
                     p.stdout)  # fmt: skip
    assert kept, p.stdout
    assert int(kept.group(1)) == scores.index(max(scores)) and float(kept.group(2)) == max(scores)
    step0 = dict(scalars(run_dir(tmp_path))["valid/mean_reward"])[0]
    assert step0 == pytest.approx(max(scores), abs=0.06)  # printed with one decimal


def test_a_clairvoyant_teacher_labels_states_the_student_acts_on_without_the_simulator(tmp_path):
    """``bc_teacher: hindsight-minute`` (privileged: it reads the simulator's future arrivals)
    teaches through the same pipeline; the student it leaves is an ordinary agent that acts on
    the observation alone."""
    from agents.evaluation import evaluate

    bc = [a.replace("bc_teacher=histogram", "bc_teacher=hindsight-minute") for a in BC]
    p = run("--timesteps", 144, "--logdir", tmp_path, "--eval-freq", 0, "--no-final-eval",
            "--hp", "valid_freq=144", "--hp", "bc_teacher_params=dict(lead_steps=4)", *bc)  # fmt: skip
    assert "Behaviour cloning: hindsight-minute(lead_steps=4) plays 1 training windows" in p.stdout
    assert "DAgger round 1/1" in p.stdout
    d = run_dir(tmp_path)
    agent = load_agent(d / "best_model.zip")
    assert agent.meta["imitation"]["teacher"] == "hindsight-minute" and not agent.privileged
    assert "hindsight-minute" in json.loads((d / "best.json").read_text())["references"]
    res = evaluate("paper", {"agent": agent}, episodes=1, seed=10000,
                   overrides={"episode_s": 200}, progress=False)  # fmt: skip
    assert res["policies"]["agent"]["privileged"] is False


def test_teacher_params_reach_the_teacher_that_labels():
    """``bc_teacher_params`` build the teacher: a longer lead keeps instances longer, so the
    labels of the same windows differ; the default's value, given explicitly, changes nothing."""
    from agents.imitation import collect

    ov = {"episode_s": 600}
    base = collect("paper", "hindsight-minute", 1, ov, seed=3)
    lead = collect("paper", "hindsight-minute", 1, ov, seed=3, teacher_params={"lead_steps": 12})
    assert len(base[1]) == len(lead[1]) and (base[1] != lead[1]).any()
    again = collect("paper", "hindsight-minute", 1, ov, seed=3, teacher_params={"lead_steps": 2.0})
    assert (again[1] == base[1]).all()  # 2.0 is the default: the same teacher


def test_resume_continues_without_cloning_again(tmp_path):
    """With ``bc_teacher: best`` (the file's own setting): the teacher is the heuristic with the
    highest reward on the validation window, and a resume keeps it without choosing again."""
    from agents.evaluation import evaluate
    from baselines import POLICIES, make_policy

    best_bc = [a.replace("bc_teacher=histogram", "bc_teacher=best") for a in BC]
    p = run("--timesteps", 144, "--logdir", tmp_path, "--eval-freq", 0, "--no-final-eval",
            "--hp", "valid_freq=144", *best_bc)  # fmt: skip
    line = next(x for x in p.stdout.splitlines() if x.startswith("Teacher: "))
    m = re.fullmatch(r"Teacher: (\w+), the best heuristic on 1 training-split windows "
                     r"\(seeds 30000\+; \d+ s\): (.*)", line)  # fmt: skip
    teacher = m.group(1)
    ranked = [(n, float(v)) for n, v in (x.rsplit(" ", 1) for x in m.group(2).split(", "))]
    assert ranked[0][0] == teacher and {n for n, _ in ranked} == set(POLICIES) - {"random"}
    assert [v for _, v in ranked] == sorted((v for _, v in ranked), reverse=True)
    got = evaluate("paper", {teacher: make_policy(teacher)}, episodes=1, seed=30000,
                   split="train", overrides={"episode_s": 200}, progress=False)  # fmt: skip
    assert got["policies"][teacher]["episode_reward"] == pytest.approx(ranked[0][1], abs=0.051)
    assert f"Behaviour cloning: {teacher} plays 1 training windows" in p.stdout
    d = run_dir(tmp_path)
    assert load_agent(d / "model.zip").meta["imitation"]["teacher"] == teacher
    first = num_timesteps(d / "model.zip")
    best = json.loads((d / "best.json").read_text())
    p = run("--resume", d, "--timesteps", 432, "--no-final-eval", "--no-progress")
    assert "Behaviour cloning" not in p.stdout and "Resuming maskable_ppo" in p.stdout
    assert "Teacher:" not in p.stdout and f"valid/{teacher}/episode_reward" in scalars(d)
    assert load_agent(d / "model.zip").meta["imitation"]["teacher"] == teacher
    assert num_timesteps(d / "model.zip") >= 432 > first
    with zipfile.ZipFile(d / "model.zip") as z:
        assert "coldstart_vecnormalize.pkl" in z.namelist()
    after = json.loads((d / "best.json").read_text())
    assert after["reward"] >= best["reward"]  # the best survives the resume
    steps = [s for s, _ in scalars(d)["valid/mean_reward"]]
    assert 0 in steps and max(steps) >= 288  # the start once, then the grid across sessions


def _wait_for(proc, what, timeout=120):
    deadline, out = time.monotonic() + timeout, ""
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        out += line
        if what in line:
            return out
    raise AssertionError(f"no {what!r} in {out!r}")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_fine_tuning_saves_a_checkpoint(tmp_path, sig):
    proc = subprocess.Popen(
        [sys.executable, TRAIN, "--timesteps", "10000000", "--logdir", str(tmp_path),
         "--eval-freq", "0", "--checkpoint-freq", "0", "--hp", "valid_freq=0", *BC],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        out = _wait_for(proc, "Training maskable_ppo")
        time.sleep(3)
        proc.send_signal(sig)
        rest, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and "Traceback" not in err, err[-2000:]
    d = run_dir(tmp_path)
    assert f"python train.py --resume {d}" in out + rest
    n = num_timesteps(d / "model.zip")
    assert n > 0 and (d / "checkpoints" / f"model_{n}_steps.zip").is_file()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_cloning_exits_with_one_line(tmp_path, sig):
    proc = subprocess.Popen(
        [sys.executable, TRAIN, "--timesteps", "1000", "--logdir", str(tmp_path), *BC,
         "--hp", "bc_episodes=2000"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        _wait_for(proc, "Behaviour cloning")
        time.sleep(1)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + sig
    assert err.strip().splitlines() == [
        f"train.py: interrupted ({sig.name}) while building the model; nothing trained"
    ]


@pytest.mark.parametrize("where", ["finalizer", "llvmlite"])
def test_a_signal_inside_unsafe_code_is_sent_again_not_lost(monkeypatch, where):
    """An exception raised in ``__del__`` is printed and dropped by Python, and one raised
    inside llvmlite's ``detach`` (between deleting ``_as_parameter_`` and marking the object
    closed) makes its finalizer fail later on stderr: in either place the build's signal
    handler sends the signal again instead, and raises anywhere else."""
    from agents import training

    sent = []
    monkeypatch.setattr(training.os, "kill", lambda pid, sig: sent.append((pid, sig)))
    if where == "finalizer":

        def close():  # what llvmlite's ObjectRef.__del__ calls: the signal lands in there
            return sys._getframe()

        def __del__():
            training._on_build_signal(signal.SIGTERM, close())

        unsafe = __del__
    else:  # an explicit close() from numba: no __del__ on the stack, llvmlite's file is
        ns = {"sys": sys, "training": training, "signal": signal}
        path = os.path.join(os.sep, "venv", "llvmlite", "binding", "ffi.py")
        src = "def detach():\n    training._on_build_signal(signal.SIGTERM, sys._getframe())\n"
        exec(compile(src, path, "exec"), ns)
        unsafe = ns["detach"]
    unsafe()
    deadline = time.monotonic() + 5
    while not sent and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sent == [(os.getpid(), signal.SIGTERM)]
    with pytest.raises(training.InterruptedWhileBuilding, match="SIGINT"):
        training._on_build_signal(signal.SIGINT, sys._getframe())


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--hp", "bc_teacher=nope"], "bc_teacher: unknown policy 'nope'"),
        (["--hp", "bc_teacher=histogrm"], "Did you mean 'histogram'"),
        (["--hp", "bc_episodes=0"], "bc_episodes must be an integer >= 1, got 0"),
        (["--hp", "bc_epochs=1.5"], "bc_epochs must be an integer >= 1, got 1.5"),
        (["--hp", "bc_weight_exponent=2"], "bc_weight_exponent must be a number in [0, 1]"),
        (["--hp", "critic_warmup=-1"], "critic_warmup must be an integer >= 0"),
        (["--hp", "bc_sharpen=1.5"], "bc_sharpen must be a probability in (0, 1)"),
        (["--hp", "bc_dagger_rounds=-1"], "bc_dagger_rounds must be an integer >= 0"),
        (["--hp", "bc_blind=[tod_sine]"], "bc_blind must list observation features, got 'tod_sine'"),
        (["--hp", "per_model=maybe"], "per_model must be true or false"),
        (["--hp", "bc_dagger_select=maybe"], "bc_dagger_select must be true or false"),
        (["--hp", "valid_freq=-5"], "valid_freq must be an integer >= 0"),
        (["--hp", "valid_episodes=0"], "valid_episodes must be an integer >= 1"),
        (["--vec-env", "subproc"], "--vec-env subproc: this run trains on per-model sub-envs"),
        (["--algo", "ppo", "--hp", "bc_teacher=histogram"], "bc_teacher needs maskable_ppo"),
        (["--scenario", "small", "--hp", "bc_epochs=3"], "bc_epochs needs bc_teacher"),
        (["--hp", "bc_teacher_params=dict(lead_steps=6)"], "bc_teacher_params needs a named "
                                                           "bc_teacher, not 'best'"),
        (["--hp", "bc_teacher=hindsight-minute", "--hp", "bc_teacher_params=dict(lead_step=6)"],
         "bc_teacher_params: policy 'hindsight-minute': "),
        (["--hp", "bc_teacher=hindsight-minute", "--hp", "bc_teacher_params=dict(lead_steps=-1)"],
         "bc_teacher_params: lead_steps must be a finite number >= 0, got -1"),
        (["--hp", "bc_teacher=histogram", "--hp", "bc_teacher_params=[6]"],
         "bc_teacher_params must be a dict of keyword arguments"),
    ],
)  # fmt: skip
def test_bad_values_exit_2_with_one_line(tmp_path, args, needle):
    p = run("--logdir", tmp_path, *args, "--no-progress", check=False, timeout=120)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("train.py: error: ") and needle in lines[0], lines
    assert p.stdout == "" and not list(tmp_path.iterdir())
