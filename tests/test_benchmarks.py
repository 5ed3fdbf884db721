"""The benchmark scripts run and report what the README quotes (no wall-clock thresholds here:
speed is what the scripts print, not what the tests assert)."""

from __future__ import annotations

import sys

import pytest

from benchmarks import env_step, sim_throughput


def test_sim_throughput_replays_a_window_reproducibly():
    a = sim_throughput.run(600.0, seed=3)
    b = sim_throughput.run(600.0, seed=3)
    assert a["requests"] > 0 and a["requests_per_s"] > 0
    for key in ("requests", "p50_latency_s", "p99_latency_s", "cold_starts", "requests_dropped"):
        assert a[key] == b[key], key  # the simulated outcome depends on the seed only


@pytest.mark.slow
def test_env_step_raw_rate_and_ppo_learner():
    assert env_step.raw_steps_per_s("small", 20) > 0
    assert set(env_step.VARIANTS) >= {"cartpole", "small_ppo", "small_maskable_ppo", "paper_ppo"}
    for name in ("small_maskable_ppo",):  # one learner: each costs a rollout and an update
        model, timers = env_step.make_learner(*env_step.VARIANTS[name])
        assert model.num_timesteps == env_step.ROLLOUT  # the warm-up rollout ran
        assert len(timers) == env_step.N_ENVS
        # Reset after the warm-up, so the benchmark times only its own turns.
        assert all(t.seconds == 0.0 for t in timers)
        model.learn(env_step.ROLLOUT, reset_num_timesteps=False)
        assert all(t.seconds > 0.0 for t in timers)


def test_null_env_has_v1_spaces_and_info():
    import gymnasium as gym

    import envs

    null = env_step.NullEnv()
    real = gym.make(envs.ENV_ID, scenario="small", disable_env_checker=True)
    assert null.action_space == real.action_space
    assert null.observation_space == real.observation_space
    real.reset(seed=0)
    _, _, _, _, info = real.step(0)
    null.reset(seed=0)
    _, _, _, _, ninfo = null.step(0)
    assert set(ninfo) == set(info)


def test_env_step_rejects_zero_rounds(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["env_step", "--rounds", "0"])
    with pytest.raises(SystemExit) as e:
        env_step.main()
    assert e.value.code == 2
    assert "--rounds must be >= 1" in capsys.readouterr().err


def test_workload_memory_reports_a_peak():
    from benchmarks import workload_memory

    r = workload_memory.run(5_000)
    assert r["requests"] > 0 and r["peak_rss_after_mb"] >= r["peak_rss_before_mb"] > 0
