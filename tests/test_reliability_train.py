"""Regression tests of issue 12 (reliability) for training runs, saved agents and output files.

Each failed on the code before the fix: run folders shared by runs started in the same second,
a shared ``<path>.tmp`` for concurrent JSON writers, a model renamed apart from its statistics,
checkpoints never rotated and their grid shifted by ``--resume``, SB3 hyperparameters out of
range accepted, an absent CUDA device accepted.
"""

from __future__ import annotations

import json
import math
import pickle
import threading
import zipfile

import numpy as np
import pytest

from agents.callbacks import AtomicCheckpointCallback
from agents.cli import UsageError, check_device, check_output
from agents.evaluation import write_json
from agents.hyperparams import resolve
from agents.loading import STATS_ENTRY, check_compatible, load_agent, load_stats, save_agent
from agents.training import claim_run_dir, prepare
from agents.wrappers import EnvFactory

SHORT = {"episode_s": 60}


@pytest.fixture(scope="module")
def ppo(tmp_path_factory):
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from agents.algos import get_algo

    venv = VecNormalize(DummyVecEnv([EnvFactory("small", "train", SHORT)]))
    model = get_algo("ppo").cls("MlpPolicy", venv, n_steps=16, batch_size=16, seed=0)
    model.coldstart_meta = {"algo": "ppo", "scenario": "small", "overrides": SHORT,
                            "normalize": True, "actions": "native"}  # fmt: skip
    yield model, venv
    venv.close()


# ------------------------------------------------------------ 6. concurrent runs and writers ----
def test_runs_started_in_the_same_second_get_their_own_folders(tmp_path):
    # Two prepared runs of one algorithm and seed: the same folder name within one second.
    cfgs = [prepare(["--logdir", str(tmp_path), "--hp", f"n_steps={n}"]) for n in (64, 128)]
    assert not cfgs[0].run_dir.exists()  # nothing is created before the run starts
    got, lock = [], threading.Lock()

    def claim():
        d = claim_run_dir(cfgs[0].run_dir)
        with lock:
            got.append(d)

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(got)) == 8 and all(d.is_dir() for d in got)


def test_concurrent_json_writers_never_share_a_temporary_file(tmp_path):
    path = tmp_path / "r.json"
    errors: list[BaseException] = []

    def writer(k: int):
        for i in range(60):
            try:
                write_json({"policies": {}, "writer": k, "i": i, "pad": "x" * 2000}, path)
            except BaseException as e:  # noqa: BLE001 - any failure is the bug
                errors.append(e)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert json.loads(path.read_text())["i"] == 59
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temporary left behind


# ------------------------------------------------------ 7. model and statistics in one file ----
def test_a_kill_between_renames_cannot_pair_a_model_with_older_statistics(ppo, tmp_path):
    model, venv = ppo
    path = tmp_path / "model.zip"
    venv.obs_rms.mean[:] = 1.0
    save_agent(model, path, venv)
    old_sidecar = (tmp_path / "vecnormalize.pkl").read_bytes()
    venv.obs_rms.mean[:] = 2.0
    save_agent(model, path, venv)
    # A kill after the zip's rename, before the statistics file's: the old file beside it.
    (tmp_path / "vecnormalize.pkl").write_bytes(old_sidecar)
    assert STATS_ENTRY in zipfile.ZipFile(path).namelist()
    np.testing.assert_array_equal(load_stats(path).obs_rms.mean, 2.0)
    np.testing.assert_array_equal(load_agent(path).vecnormalize.obs_rms.mean, 2.0)
    venv.obs_rms.mean[:] = 0.0


def test_corrupt_statistics_are_one_line_errors(ppo, tmp_path):
    model, _ = ppo
    path = save_agent(model, tmp_path / "model.zip", None)  # no entry inside
    (tmp_path / "vecnormalize.pkl").write_bytes(b"junk")
    with pytest.raises(ValueError, match="vecnormalize.pkl'?: not a readable VecNormalize") as e:
        load_stats(path)
    assert "\n" not in str(e.value)
    (tmp_path / "vecnormalize.pkl").write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ValueError, match="holds a dict"):
        load_stats(path)


def test_check_compatible_names_both_scenarios(ppo):
    model, venv = ppo
    from agents.algos import get_algo
    from agents.loading import AgentPolicy
    from envs.env import ServerlessGPUEnv

    agent = AgentPolicy(model, get_algo("ppo"), meta=model.coldstart_meta)
    check_compatible(agent, ServerlessGPUEnv("small", **SHORT), "m")  # fits
    check_compatible(agent, ServerlessGPUEnv("azure"), "m")  # v1: spaces are scenario-free
    with pytest.raises(ValueError, match="scenario 'small'.*'azure'.*actions"):
        check_compatible(agent, ServerlessGPUEnv("azure", scale_deltas=[-1, 0, 1]), "--model m")


# ------------------------------------------------ 7. checkpoints: rotation and a fixed grid ----
def _callback(model, tmp_path, freq, keep):
    cb = AtomicCheckpointCallback(tmp_path, freq, model.coldstart_meta, keep=keep)
    cb.init_callback(model)
    return cb


def test_checkpoints_rotate_keeping_the_last_n(ppo, tmp_path):
    model, _ = ppo
    cb = _callback(model, tmp_path, 0, keep=3)
    for n in (5, 10, 15, 20, 25):
        cb.num_timesteps = n
        cb.save()
    kept = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert kept == sorted(
        [f"model_{n}_steps.zip" for n in (15, 20, 25)]
        + [f"vecnormalize_{n}_steps.pkl" for n in (15, 20, 25)]
    )
    cb_all = _callback(model, tmp_path / "all", 0, keep=0)
    for n in range(1, 8):
        cb_all.num_timesteps = n
        cb_all.save()
    assert len(list((tmp_path / "all" / "checkpoints").glob("model_*.zip"))) == 7


def test_checkpoint_grid_stays_on_multiples_after_resume(ppo, tmp_path):
    model, _ = ppo
    saved = model.num_timesteps
    try:
        model.num_timesteps = 12_345  # a run resumed at step 12,345
        cb = _callback(model, tmp_path, 5_000, keep=0)
        for n in range(12_349, 25_002, 4):  # 4 envs: steps of 4
            model.num_timesteps = n
            cb.on_step()
        steps = sorted(int(p.stem.split("_")[1]) for p in (tmp_path / "checkpoints").glob("*.zip"))
        assert steps == [15_001, 20_001, 25_001]  # the first step at or after each multiple
    finally:
        model.num_timesteps = saved


# ------------------------------------------------------ 4. hyperparameters out of SB3's range ----
@pytest.mark.parametrize(
    "algo, key, value, match",
    [
        ("ppo", "n_epochs", -1, "n_epochs must be an integer >= 1"),
        ("ppo", "n_epochs", 2.5, "n_epochs must be an integer"),
        ("ppo", "gamma", math.nan, "gamma must be a finite number"),
        ("ppo", "gamma", 1.5, r"gamma must be a number in \[0, 1\]"),
        ("ppo", "learning_rate", 0, "learning_rate must be a number > 0"),
        ("ppo", "clip_range", -0.2, "clip_range must be a number > 0"),
        ("ppo", "ent_coef", math.inf, "ent_coef must be a finite number"),
        ("dqn", "gradient_steps", 0, "gradient_steps must be an integer >= -1"),
        ("dqn", "exploration_final_eps", 2, "exploration_final_eps must be a number in"),
    ],
)
def test_hyperparameters_out_of_range(algo, key, value, match):
    with pytest.raises(ValueError, match=match):
        resolve(algo, {key: value})


def test_hyperparameters_in_range_pass():
    hp = resolve("ppo", {"n_epochs": 4.0, "gamma": 1, "learning_rate": "1e-4", "ent_coef": 0})
    assert hp.kwargs["n_epochs"] == 4 and hp.kwargs["learning_rate"] == 1e-4
    assert resolve("dqn", {"gradient_steps": -1}).kwargs["gradient_steps"] == -1


# --------------------------------------------------------------- 7. devices, output paths ----
def test_absent_cuda_device_is_refused():
    import torch

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(UsageError, match=f"--device 'cuda:{n}'"):
        check_device(f"cuda:{n}")
    assert check_device("cpu") == "cpu" and check_device("auto") == "auto"
    with pytest.raises(UsageError, match="not a torch device"):
        check_device("gpu0")


def test_output_paths_are_checked_without_writing(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(UsageError, match="is a file, not a folder"):
        check_output(f / "sub" / "r.json", "--json", folder=False)
    with pytest.raises(UsageError, match="not a folder"):
        check_output(f, "--logdir", folder=True)
    assert check_output(tmp_path / "new" / "deeper", "--out", folder=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
