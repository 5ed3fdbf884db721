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


def test_env_step_raw_rate_and_ppo_learner():
    assert env_step.raw_steps_per_s("small", 20) > 0
    model, timer = env_step.make_ppo("coldstart/ServerlessGPU-v0", composite=True, scenario="small")
    assert model.num_timesteps == env_step.N_STEPS  # the warm-up rollout ran
    assert timer.seconds == 0.0  # reset after the warm-up, so the benchmark times only its turns
    model.learn(env_step.N_STEPS, reset_num_timesteps=False)
    assert timer.seconds > 0.0


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
