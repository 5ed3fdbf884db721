"""The action-space candidates (agents.action_spaces): each maps onto the env's own step with
the documented meaning, and the comparison benchmark runs."""

from __future__ import annotations

import json
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401
from agents.action_spaces import (
    HOLD,
    TARGET_LEVELS,
    JointScale,
    ScaleOnly,
    TargetLevels,
    noop,
    wrap,
)
from envs import ENV_ID


def make(scenario="small", **kw):
    return gym.make(ENV_ID, scenario=scenario, disable_env_checker=True, **kw)


def test_scale_only_is_the_native_scale_entry_with_rules_and_cache_kept():
    env = ScaleOnly(make())
    env.reset(seed=0)
    lay = env.unwrapped.layout
    assert env.action_space.n == len(lay.deltas)
    for a in range(env.action_space.n):
        assert lay.decode(env.native(a)) == (a, 0, 0, HOLD)
    assert env.native(env.noop) == lay.noop
    np.testing.assert_array_equal(env.action_masks(), env.unwrapped.entry_masks(0)[0])


@pytest.mark.parametrize(
    ("target", "current", "delta"),
    [(3, 0, 2), (0, 2, -1), (0, 5, -4), (8, 1, 4), (2, 2, 0), (1, 0, 1), (6, 0, 4)],
)
def test_target_takes_the_largest_delta_that_does_not_overshoot(target, current, delta):
    env = TargetLevels(make())  # small's deltas: -4, -1, 0, +1, +2, +4
    lay = env.unwrapped.layout
    a = 1 + TARGET_LEVELS.index(target)
    assert lay.deltas[env.delta_index(a, current)] == delta
    assert env.delta_index(0, current) == lay.zero_delta  # 0 keeps the count


def test_target_reaches_its_level_and_keeps_it():
    env = TargetLevels(make())
    env.reset(seed=0)
    u = env.unwrapped
    want = 1 + TARGET_LEVELS.index(2)
    for _ in range(3 * u.M):
        env.step(want if u.focus == 0 else 0)
    idle, busy, loading = u.sim.counts(0)
    assert idle + busy + loading == 2


def test_joint_plays_one_interval_per_step_and_matches_the_native_steps():
    joint, native = JointScale(make()), make()
    obs, _ = joint.reset(seed=3)
    native.reset(seed=3)
    u, lay = joint.unwrapped, joint.unwrapped.layout
    assert obs.shape == joint.observation_space.shape
    rng = np.random.default_rng(0)
    for _ in range(20):
        act = rng.integers(0, len(lay.deltas), size=u.M)
        t0 = u.sim.now
        _, r, _, _, info = joint.step(act)
        assert u.sim.now == pytest.approx(t0 + u.scenario.step_s)
        r_native = sum(native.step(lay.encode(int(d), 0, 0, HOLD))[1] for d in act)
        assert r == pytest.approx(r_native)
    assert info["requests_arrived"] == native.unwrapped._info()["requests_arrived"]
    assert joint.action_masks().shape == (u.M * len(lay.deltas),)


@pytest.mark.parametrize("space", ["scale", "target", "joint"])
def test_bad_actions_raise_value_errors(space):
    env = wrap(make(), space)
    env.reset(seed=0)
    bad = [99] * env.unwrapped.M if space == "joint" else 99
    with pytest.raises(ValueError, match="action"):
        env.step(bad)


def test_noop_and_unknown_space():
    assert noop(make()) == [make().unwrapped.layout.noop]
    assert noop(JointScale(make())) == [make().unwrapped.layout.zero_delta] * 3
    with pytest.raises(ValueError, match="unknown action space 'nope'"):
        wrap(make(), "nope")


def _bench(*args):
    return subprocess.run([sys.executable, "-m", "benchmarks.action_spaces", *args],
                          capture_output=True, text=True, timeout=300)  # fmt: skip


@pytest.mark.slow
def test_benchmark_quick_reports_curves_and_speeds(tmp_path):
    r = _bench("--quick", "--scenarios", "small", "--spaces", "scale,joint", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout.strip().splitlines()[-1])["scenarios"]["small"]
    assert set(res["spaces"]) == {"scale", "joint"}
    assert res["best_heuristic"] in res["heuristics"]
    for s in res["spaces"].values():
        assert len(s["curve"]) == 2 and s["curve"][0]["steps"] == 0 and s["steps_per_s"] > 0
        assert np.isfinite([p["reward"] for p in s["curve"]]).all()
    assert (tmp_path / "curves_small.png").stat().st_size > 0


@pytest.mark.parametrize(
    ("args", "needle"),
    [(["--spaces", "native,bogus"], "--spaces"), (["--scenarios", "nope"], "--scenarios"),
     (["--seeds", "0"], "--seeds")],
)  # fmt: skip
def test_benchmark_bad_flags_exit_2_with_one_line(args, needle):
    r = _bench(*args)
    assert r.returncode == 2 and needle in r.stderr and r.stdout == ""
    assert "Traceback" not in r.stderr
