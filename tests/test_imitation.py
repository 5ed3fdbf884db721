"""Behaviour cloning (agents.imitation): the cloning recovers a known rule, and the command
writes models evaluate.py loads."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from agents.imitation import agreement, clone, collect
from agents.loading import load_agent
from agents.model_vec_env import FrozenStats
from envs import layout as L


@pytest.fixture(scope="module")
def data():
    return collect("small", "keepalive", 1)


def test_collect_records_the_teachers_steps(data):
    obs, actions, masks = data
    n = 120 * 3  # small: 1,200-s episodes of 10-s intervals, 3 models
    assert obs.shape == (n, L.N_OBS) and actions.shape == (n,) and masks.shape == (n, 360)
    assert masks[np.arange(n), actions].all()  # the teacher acts inside the masks


def test_clone_recovers_a_rule_of_one_feature(data):
    """Labels that follow one feature (scale +1 when requests wait, else hold) and are rare:
    the weighted loss learns the rule, rare side included."""
    obs, _, masks = data
    lay = L.ActionLayout([-4, -1, 0, 1, 2, 4])
    up, hold = lay.encode(3, 0, 0, 1), lay.noop
    rng = np.random.default_rng(0)
    x, masks = np.tile(obs, (8, 1)), np.tile(masks, (8, 1))  # 2,880 rows, 6 batches an epoch
    x[:, L.F["queue"]] = rng.choice([0.0, 2.0], size=len(x), p=[0.9, 0.1])
    y = np.where(x[:, L.F["queue"]] > 1.0, up, hold)
    m = np.ones_like(masks)
    model, vn = clone(x, y, m, "small", epochs=30)
    pred, _ = model.predict(vn.normalize_obs(x), deterministic=True, action_masks=m)
    assert agreement(model, vn, x, y, m) > 0.98
    assert (pred[y == up] == up).mean() > 0.95


def test_frozen_stats_do_not_move():
    s = FrozenStats(shape=(2,))
    s.mean, s.var = np.array([1.0, 2.0]), np.array([3.0, 4.0])
    s.update(np.zeros((5, 2)))
    assert s.mean.tolist() == [1.0, 2.0] and s.var.tolist() == [3.0, 4.0]


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "agents.imitation", *args],
                          capture_output=True, text=True, timeout=600)  # fmt: skip


@pytest.mark.slow
def test_command_writes_models_evaluate_loads(tmp_path):
    r = _cli("--scenario", "small", "--teacher", "keepalive", "--episodes", "1", "--epochs", "2",
             "--finetune-steps", "64", "--eval-windows", "1", "--out", str(tmp_path))  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "| clone" in r.stdout and "| finetuned" in r.stdout and "| keepalive" in r.stdout
    for name in ("clone", "finetuned"):
        agent = load_agent(tmp_path / f"{name}.zip")
        assert agent.meta["imitation"]["teacher"] == "keepalive"
    assert load_agent(tmp_path / "finetuned.zip").meta["finetune"]["steps"] == 64


@pytest.mark.parametrize(
    ("args", "needle"),
    [(["--teacher", "nope"], "unknown policy 'nope'"), (["--episodes", "0"], "--episodes"),
     (["--weight-exponent", "2"], "--weight-exponent"), (["--scenario", "nope"], "nope")],
)  # fmt: skip
def test_bad_input_exits_2_with_one_line(tmp_path, args, needle):
    r = _cli("--out", str(tmp_path / "o"), *args)
    assert r.returncode == 2 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()
