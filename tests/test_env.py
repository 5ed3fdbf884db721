"""The Gymnasium environment (v1): checkers, determinism, masks, bad actions, info, vectorisation.

Incentives, platform semantics, warm-up and the fast path have their own files
(test_reward.py, test_platform.py, test_env_v1.py, test_env_fastpath.py).
"""

from __future__ import annotations

import pickle

import gymnasium as gym
import numpy as np
import pytest
from conftest import run_env, valid_random_action
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import envs
from envs import layout as L
from envs.env import ServerlessGPUEnv
from envs.scenarios import ConfigError

FAST = {"episode_s": 120}
PRESETS = sorted(envs.list_presets())


def scale_action(env: ServerlessGPUEnv, delta: int) -> int:
    """The action that scales by ``delta`` and changes nothing else."""
    s = int(np.flatnonzero(env.layout.deltas == delta)[0])
    return env.layout.encode(s, 0, 0, L.CACHE_CHOICES.index("hold"))


@pytest.mark.parametrize("scenario", PRESETS)
def test_checkers_pass_on_every_preset(scenario):
    assert envs.ENV_IDS == ("coldstart/ServerlessGPU-v1",)
    env = gym.make(envs.ENV_ID, scenario=scenario, episode_s=60, disable_env_checker=True)
    gym_check_env(env.unwrapped, skip_render_check=True)
    sb3_check_env(env.unwrapped, warn=False)


@pytest.mark.parametrize("scenario", PRESETS)
def test_spaces_do_not_depend_on_the_number_of_models(scenario):
    env = ServerlessGPUEnv(scenario, episode_s=60)
    assert env.action_space == gym.spaces.Discrete(env.layout.n)
    assert env.layout.n == len(env.scenario.scale_deltas) * 5 * 3 * 4
    assert env.observation_space.shape == (L.N_OBS,)
    assert L.N_OBS == len(L.MODEL_FEATURES) + len(L.CLUSTER_FEATURES)


def test_docstring_states_the_real_space_shapes():
    env = ServerlessGPUEnv("small", episode_s=60)
    doc = ServerlessGPUEnv.__doc__
    assert f"Box(0, {L.OBS_HIGH:g}, ({L.N_OBS},), float32)" in doc
    assert f"({env.layout.n} with the default deltas)" in doc


def test_v0_is_retired():
    with pytest.raises(gym.error.DeprecatedEnv):
        gym.make("coldstart/ServerlessGPU-v0")


def test_same_seed_same_episode_and_other_seed_other_workload():
    env = ServerlessGPUEnv("small", **FAST)
    o1, r1, i1 = run_env(env, seed=3)
    o2, r2, i2 = run_env(env, seed=3)
    np.testing.assert_array_equal(o1, o2)
    np.testing.assert_array_equal(r1, r2)
    assert i1[-1]["episode_metrics"] == i2[-1]["episode_metrics"]
    env.reset(seed=4)
    a4 = env.sim.arrivals.copy()
    env.reset(seed=3)
    assert a4.shape != env.sim.arrivals.shape or not np.array_equal(a4, env.sim.arrivals)


def test_policy_choices_never_change_the_workload():
    env = ServerlessGPUEnv("small", **FAST)
    _, _, i1 = run_env(env, seed=1, action_seed=0)
    a1 = env.sim.arrivals.copy()
    _, _, i2 = run_env(env, seed=1, action_seed=99)
    np.testing.assert_array_equal(a1, env.sim.arrivals)
    assert i1[-1]["requests_arrived"] == i2[-1]["requests_arrived"]


def test_one_step_per_model_and_time_advances_after_the_last():
    env = ServerlessGPUEnv("small", **FAST)
    obs, info = env.reset(seed=0)
    M, step_s = env.M, env.scenario.step_s
    assert info["focus"] == 0 and info["sim_time_s"] == 0.0
    for t in range(3):
        for m in range(M):
            assert env.focus == m
            assert obs[L.C["focus"]] == pytest.approx(m / M)
            obs, r, _, _, info = env.step(env.layout.noop)
            last = m == M - 1
            assert info["focus"] == (0 if last else m + 1)
            assert info["sim_time_s"] == pytest.approx((t + 1) * step_s if last else t * step_s)
            if not last:  # reward is paid on the step that advances time, 0 on the others
                assert r == 0.0
                assert info["reward_components"] == {"cost": 0.0, "late": 0.0, "drop": 0.0}
            assert obs[L.C["episode_progress"]] == pytest.approx(env.t / env.scenario.n_steps)


def test_episode_truncates_at_horizon_with_final_metrics():
    env = ServerlessGPUEnv("small", **FAST)
    _, _, infos = run_env(env, seed=0)
    assert len(infos) == env.scenario.n_steps * env.M == 12 * 3
    last = infos[-1]
    for key in (
        "p50_latency_s", "p99_latency_s", "mean_latency_s", "slo_violation_rate", "drop_rate",
        "goodput_rps", "gpu_utilization", "cold_starts_local_mem", "cold_starts_remote_mem",
        "cold_starts_disk", "cold_starts_cloud", "episode_metrics", "episode_reward_components",
    ):  # fmt: skip
        assert key in last
    assert set(last["episode_metrics"]["models"]) == {m.name for m in env.cfg.models}
    for info in infos[:-1]:
        assert "p99_latency_s" not in info
    for info in infos:
        for key in (
            "requests_arrived", "requests_completed", "requests_dropped", "requests_pending",
            "cold_starts", "cost_usd", "invalid_actions", "sim_time_s", "focus",
            "reward_components",
        ):  # fmt: skip
            assert key in info
        assert (
            info["requests_arrived"]
            == info["requests_completed"] + info["requests_dropped"] + info["requests_pending"]
        )
    costs = np.array([i["cost_usd"] for i in infos])
    assert costs[0] >= 0 and np.all(np.diff(costs) >= -1e-12)  # float rounding only


def test_observation_bounds_and_layout():
    env = ServerlessGPUEnv("paper", episode_s=60)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (L.N_OBS,) and obs.dtype == np.float32
    assert env.observation_space.contains(obs)
    for m in range(env.M):
        row = env.model_features(m)
        assert row.shape == (len(L.MODEL_FEATURES),)
        spec = env.cfg.models[m]
        assert row[L.F["slo"]] == pytest.approx(spec.slo_s / 5.0)
        rules = [row[L.F[f"rule_{r}"]] for r in L.PLACEMENT_CHOICES[1:]]
        assert sorted(rules) == [0.0] * (len(rules) - 1) + [1.0]  # one-hot standing rule
    np.testing.assert_array_equal(obs[: len(L.MODEL_FEATURES)], env.model_features(0))
    obs2, *_ = env.step(env.layout.noop)
    assert obs2 is not obs and env.observation_space.contains(obs2)
    np.testing.assert_array_equal(obs2[: len(L.MODEL_FEATURES)], env.model_features(1))


def test_masked_action_is_a_counted_noop():
    env = ServerlessGPUEnv("small", warmup_s=0, **FAST)
    env.reset(seed=0)
    a = scale_action(env, -1)  # scale-in of model 0 with no instance: masked
    assert not env.action_masks()[a]
    assert env.action_masks()[env.layout.noop]
    _, _, _, _, info = env.step(a)
    assert info["invalid_actions"] == 1
    assert env.sim.counts(0) == (0, 0, 0)
    assert info["cold_starts"] == 0


def test_layout_round_trip_noop_and_joint_mask():
    lay = L.ActionLayout((-4, -1, 0, 1, 2, 4))
    for a in range(lay.n):
        assert lay.encode(*lay.decode(a)) == a
    s, p, src, c = lay.decode(lay.noop)
    assert lay.deltas[s] == 0 and p == 0 and src == 0 and L.CACHE_CHOICES[c] == "hold"
    assert lay.name(lay.noop) == "scale+0 placement=keep source=keep cache=hold"
    scale_ok = lay.deltas <= 0
    cache_ok = np.array([True, True, True, False])
    joint = lay.joint_mask(scale_ok, cache_ok)
    for a in range(lay.n):
        s, _, _, c = lay.decode(a)
        assert joint[a] == (scale_ok[s] and cache_ok[c])
    with pytest.raises(ValueError, match="include 0"):
        L.ActionLayout((-1, 1))
    with pytest.raises(ValueError, match="cache choice"):
        lay.encode(0, 0, 0, 9)


def test_scale_out_respects_gpu_capacity_and_masks_follow():
    env = ServerlessGPUEnv("small", warmup_s=0, **FAST)
    env.reset(seed=0)
    for _ in range(env.M):
        env.step(scale_action(env, 4))
    total = sum(env.sim.instance_count(m) for m in range(env.M))
    assert total == env.G  # 3 models x +4 asked, 4 GPUs exist
    for m in range(env.M):
        scale_ok, _ = env.entry_masks(m)
        assert not scale_ok[env.layout.deltas > 0].any()


@pytest.mark.parametrize(
    "action, match",
    [
        (10**6, "1000000"),
        (-1, "-1"),
        (2.5, "2.5"),
        (np.array([1, 2]), r"shape \(2,\)"),
        (np.zeros((2, 2), dtype=int), r"shape \(2, 2\)"),
        ("3", "'3'"),
    ],
)
def test_bad_actions_raise_value_errors_naming_the_value(action, match):
    env = ServerlessGPUEnv("small", **FAST)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=match):
        env.step(action)
    assert env.focus == 0 and env.invalid_actions == 0  # nothing happened


def test_step_before_reset_and_float_actions():
    env = ServerlessGPUEnv("small", **FAST)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(env.layout.noop)
    with pytest.raises(RuntimeError, match="reset"):
        env.action_masks()
    env.reset(seed=0)
    # Floats are refused even when integral, as Discrete.contains() refuses them.
    noop = env.layout.noop
    with pytest.raises(ValueError, match=f"{float(noop)!r}"):
        env.step(float(noop))
    assert not env.action_space.contains(float(noop))
    _, _, _, _, info = env.step(np.array([noop]))  # a one-element integer array is fine
    assert info["invalid_actions"] == 0 and env.focus == 1
    env.step(np.int32(noop))


def test_held_out_windows_never_overlap_training_windows():
    tr = ServerlessGPUEnv("small", split="train")
    ev = ServerlessGPUEnv("small", split="eval")
    cut = tr.scenario.span_s * (1 - tr.scenario.held_out_fraction)
    train_ends = []
    for s in range(20):
        tr.reset(seed=s)
        train_ends.append(tr.start_s + tr.scenario.episode_s)
        ev.reset(seed=s)
        assert ev.start_s >= cut
    assert max(train_ends) <= cut


def test_pickle_round_trip_continues_identically():
    env = ServerlessGPUEnv("small", **FAST)
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    for _ in range(7):
        env.step(valid_random_action(env, rng))
    clone = pickle.loads(pickle.dumps(env))
    for _ in range(5):
        act = valid_random_action(env, rng)
        a, b = env.step(act), clone.step(act)
        np.testing.assert_array_equal(a[0], b[0])
        assert a[1] == b[1] and a[4] == b[4]
        np.testing.assert_array_equal(env.action_masks(), clone.action_masks())


def test_runs_under_subproc_vec_env_and_make_vec():
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import SubprocVecEnv

    # "module:id" makes each worker process import envs (and so register the id) itself.
    venv = make_vec_env(
        f"envs:{envs.ENV_ID}",
        n_envs=2,
        vec_env_cls=SubprocVecEnv,
        env_kwargs={"scenario": "small", **FAST},
    )
    venv.reset()
    for _ in range(3):
        masks = venv.env_method("action_masks")
        assert (
            len(masks) == 2 and masks[0].dtype == bool and masks[0].shape == (venv.action_space.n,)
        )
        venv.step(np.array([int(np.flatnonzero(mk)[0]) for mk in masks]))
    venv.close()
    genv = gym.make_vec(envs.ENV_ID, num_envs=2, scenario="small", **FAST)
    genv.reset(seed=0)
    genv.step(genv.action_space.sample())
    genv.close()


def test_render_ansi_and_rgb():
    env = ServerlessGPUEnv("small", render_mode="ansi", warmup_s=0, **FAST)
    env.reset(seed=0)
    text = env.render()
    assert "bert-base" in text and "rules=locality/nearest" in text
    env = ServerlessGPUEnv("small", render_mode="rgb_array", warmup_s=0, **FAST)
    env.reset(seed=0)
    assert (env.render()[: env.G * 16] == 255).all()  # an empty cluster
    env.step(scale_action(env, 1))
    img = env.render()
    assert img.shape == ((env.G + env.M) * 16, 256, 3) and img.dtype == np.uint8
    assert (img[: env.G * 16] != 255).any()  # the loading instance is drawn
    assert ServerlessGPUEnv("small", **FAST).render() is None
    with pytest.raises(ValueError, match="render_mode"):
        ServerlessGPUEnv("small", render_mode="human")


def test_unknown_scenario_and_bad_override_name_the_problem():
    with pytest.raises(ConfigError, match="Did you mean 'small'"):
        ServerlessGPUEnv("smal")
    with pytest.raises(ConfigError, match="episode_s"):
        ServerlessGPUEnv("small", episode_s=-5)
    with pytest.raises(ConfigError, match="unknown key 'episode_len'"):
        ServerlessGPUEnv("small", episode_len=5)
    with pytest.raises(ConfigError, match="split"):
        ServerlessGPUEnv("small", split="test")
    with pytest.raises(ConfigError, match="warmup_s"):
        ServerlessGPUEnv("small", warmup_s=-1)
    with pytest.raises(ConfigError, match="reward.drop_usd"):
        ServerlessGPUEnv("small", reward__drop_usd=-0.1)
