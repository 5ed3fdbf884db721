"""The Ray path's pieces that need no Ray: the masked env wrapper, bad input of
``train.py --engine rllib`` (exit 2, one line, nothing written), sweep job flags, the benchmark's
arguments. Part of the base suite: nothing here imports ray or opens a non-loopback socket.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.rllib_env import ActionMaskObservation, env_config, make_env

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def env():
    e = make_env(env_config("small"))
    yield e
    e.close()


def test_masked_observation_matches_the_space_and_the_env_mask(env):
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert set(obs) == {"action_mask", "observations"}
    assert obs["action_mask"].shape == (env.action_space.n,)
    np.testing.assert_array_equal(obs["action_mask"] > 0, env.action_masks())
    assert obs["action_mask"][0] == 1.0  # the no-op


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000), take_masked=st.booleans())
def test_masked_actions_taken_counts_exactly_the_masked_picks(env, seed, take_masked):
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    masked_picks = 0
    for _ in range(40):
        mask = obs["action_mask"] > 0
        pool = np.flatnonzero(~mask) if take_masked and (~mask).any() else np.flatnonzero(mask)
        a = int(rng.choice(pool))
        masked_picks += int(not mask[a])
        obs, _, term, trunc, info = env.step(a)
        assert info["masked_actions_taken"] == masked_picks
        assert env.observation_space.contains(obs)
        if term or trunc:
            break
    if not take_masked:
        assert masked_picks == 0


def test_normalized_rewards_leave_the_reported_return_in_env_units():
    plain, scaled = (
        make_env(env_config("small")),
        make_env(env_config("small", normalize_reward=True)),
    )
    plain.reset(seed=5)
    scaled.reset(seed=5)
    total, seen, done = 0.0, [], False
    while not done:
        _, r, term, trunc, info = plain.step(0)
        _, r2, _, _, info2 = scaled.step(0)
        total += r
        seen.append((r, r2))
        done = term or trunc
    assert info["episode_reward"] == pytest.approx(total)
    assert info2["episode_reward"] == pytest.approx(total)  # the env's units, not the learner's
    assert any(abs(a - b) > 1e-6 for a, b in seen)  # the learner did see other rewards


def test_wrapper_and_factory_refuse_what_they_cannot_serve():
    import gymnasium as gym

    with pytest.raises(TypeError, match="Discrete action space"):
        ActionMaskObservation(gym.make("Pendulum-v1"))  # Box actions
    with pytest.raises(TypeError, match="action_masks"):
        ActionMaskObservation(gym.make("CartPole-v1"))  # Discrete, but no masks
    with pytest.raises(ValueError, match="unknown key"):
        make_env({"scenario": "small", "sceanrio": "paper"})


def test_bad_input_exits_2_with_one_line(tmp_path, capsys):
    from agents.rllib_train import main

    foreign = tmp_path / "cartpole_ckpt"  # RLlib's marker file, no coldstart meta
    foreign.mkdir()
    (foreign / "rllib_checkpoint.json").write_text('{"type": "Algorithm"}')
    v0 = _checkpoint_of(tmp_path / "v0_ckpt", "coldstart/ServerlessGPU-v0")  # an older env's
    cases = [
        (["--address", f"127.0.0.1:{_free_port()}"], "no Ray cluster answers"),
        (["--address", "nohostport"], "expected host:port"),
        (["--engine", "rlib"], "did you mean 'rllib'"),
        (["--engine", "sb3"], "train.py's own path"),
        (["--resume", str(tmp_path / "nothing")], "not an RLlib checkpoint"),
        (["--resume", str(foreign)], "without coldstart_meta.json"),
        (["--resume", str(v0)], "trained on 'coldstart/ServerlessGPU-v0', not"),
        (["--num-env-runners", "-1"], ">= 0"),
        (["--timesteps", "0"], ">= 1"),
        (["--scenario", "smal"], "smal"),
        (["--bogus"], "unrecognized arguments"),
    ]
    for argv, expect in cases:
        assert main(["--logdir", str(tmp_path / "runs"), *argv]) == 2, argv
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and expect in err, (argv, err)
        assert err.startswith("train.py: error: ")
    assert not (tmp_path / "runs").exists()  # nothing written


def _checkpoint_of(folder, env_id: str):
    """A folder RLlib and agents.rllib_train would both recognise, saved on ``env_id``."""
    folder.mkdir()
    (folder / "rllib_checkpoint.json").write_text('{"type": "Algorithm"}')
    (folder / "coldstart_meta.json").write_text(json.dumps({"env_id": env_id, "scenario": "small"}))
    return folder


def test_evaluate_py_refuses_another_envs_checkpoint_with_one_line(tmp_path):
    """``evaluate.py --model`` on RLlib checkpoints it cannot table: exit 2, one line."""
    foreign = tmp_path / "cartpole_ckpt"
    foreign.mkdir()
    (foreign / "rllib_checkpoint.json").write_text('{"type": "Algorithm"}')
    for path, expect in (
        (foreign, "without coldstart_meta.json"),
        (_checkpoint_of(tmp_path / "v0", "coldstart/ServerlessGPU-v0"), "ServerlessGPU-v0"),
    ):
        p = subprocess.run(
            [sys.executable, "evaluate.py", "--model", str(path), "--episodes", "1"],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert p.returncode == 2 and p.stdout == "", (p.stdout, p.stderr)
        err = p.stderr.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("evaluate.py: error: ") and expect in err[0]


def test_unknown_ppo_setting_exits_2(tmp_path, capsys):
    pytest.importorskip("ray", reason="the names come from RLlib's PPOConfig")
    from agents.rllib_train import main

    assert main(["--logdir", str(tmp_path / "runs"), "--hp", "num_epoch=3"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "did you mean 'num_epochs'" in err, err
    assert not (tmp_path / "runs").exists()


def test_sweep_job_flags():
    from agents.tune import job_argv

    argv = job_argv({"algo": "dqn", "seed": 3, "normalize": False, "hp": {"learning_rate": 1e-4},
                     "override": {"episode_s": 600}}, "/tmp/x")  # fmt: skip
    assert argv == ["--no-progress", "--algo", "dqn", "--seed", "3", "--logdir", "/tmp/x",
                    "--no-normalize", "--hp", "learning_rate=0.0001", "-o", "episode_s=600"]  # fmt: skip
    # Resuming a run: only what may change on --resume is passed with it.
    resumed = job_argv(
        {"algo": "dqn", "seed": 3, "timesteps": 500, "hp": {"gamma": 0.9}}, "/x", "/x/r"
    )
    assert resumed == ["--no-progress", "--resume", "/x/r", "--timesteps", "500"]
    with pytest.raises(ValueError, match="unknown key"):
        job_argv({"learning_rate": 1e-3}, "/x")
    with pytest.raises(ValueError, match="must map"):
        job_argv({"hp": ["gamma=0.9"]}, "/x")


def test_benchmark_rejects_bad_rounds(capsys):
    from benchmarks.rllib_scaling import main

    assert main(["--rounds", "0"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--rounds" in err


def test_train_py_dispatches_on_engine(capsys):
    """train.py's --engine: an unknown engine exits 2 with one line naming the choices; rllib
    reaches the RLlib parser (its --help), sb3 the default path."""
    from agents import training

    assert training.main(["--engine", "tf"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sb3, rllib" in err[0]
    with pytest.raises(SystemExit) as e:
        training.main(["--engine=rllib", "--help"])
    assert e.value.code == 0 and "--num-env-runners" in capsys.readouterr().out
    assert training._engine(["--engine", "sb3", "--seed", "1"]) == ("sb3", ["--seed", "1"])
