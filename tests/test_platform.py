"""Platform semantics of v1 (``FeatureSpec.autostart``, always on in the env): no policy can
refuse to serve, requests drop only by timeout, the platform's cold starts follow the standing
rules. Known answers on the toy cluster of conftest (2 GB model, NIC 2 GB/s, PCIe 4 GB/s,
deserialise 1 GB/s, sandbox 0.5 s, runtime 1 s, TTFB 0.25 s): a cold start from cloud storage
takes 0.5 + 1 + 0.25 + 1 + 0.5 + 2 = 5.25 s, from local memory 4.0 s; a batch of one 0.1 s."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import (
    CLOUD_S,
    DISK,
    LOCAL_S,
    env_action,
    exec_s,
    host,
    make_sim,
    model,
    time_limit,
    toy_config,
    toy_env,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from envs.sim.kernel import DROPPED, PENDING

# Hosts with a disk bandwidth but no disk cache: no disk tier (see test_diskless_host_...).
HOST = dict(disk_gb_per_s=DISK, disk_cache_gb=0.0)


def auto_config(n_hosts=1, n_gpus=1, models=None, **features):
    return toy_config(
        hosts=[host(n_gpus=n_gpus, **HOST) for _ in range(n_hosts)],
        models=models,
        autostart=True,
        **features,
    )


def test_known_answer_constants():
    assert CLOUD_S == pytest.approx(5.25) and LOCAL_S == pytest.approx(4.0)
    sim = make_sim(auto_config(), [])
    assert sim.estimate_load_s(0, 0, "cloud") == pytest.approx(CLOUD_S)
    assert sim.estimate_load_s(0, 0, "local_mem") == pytest.approx(LOCAL_S)


# ------------------------------------------------------------------- the activator ----------
@pytest.mark.parametrize("copy, source, tier", [
    (False, None, "cloud"), (True, None, "local_mem"), (True, "cloud", "cloud"),
])  # fmt: skip
def test_first_request_starts_an_instance_at_its_arrival(copy, source, tier):
    sim = make_sim(auto_config(), [3.0])
    if copy:
        sim.seed_copy(0, 0)
    sim.set_rules(0, source=source)
    sim.run_until(3.0 - 1e-9)
    assert sim.instance_count(0) == 0  # nothing before the request
    sim.run_until(20.0)
    (inst,) = sim.instances[0]
    assert inst.created_s == 3.0 and inst.source == tier
    assert sim.autostarts == 1 and sim.cold_starts[tier] == 1
    cold = CLOUD_S if tier == "cloud" else LOCAL_S
    assert sim.finish_s[0] - sim.arrivals[0] == pytest.approx(cold + exec_s(1))
    assert sim.cold_wait_s[0] == pytest.approx(cold)


def test_without_autostart_the_request_waits_and_drops():
    """The simulator's own default (the policy alone decides) is what v1's env switches off."""
    sim = make_sim(toy_config(hosts=[host(**HOST)], request_timeout_s=10.0), [3.0])
    sim.run_until(20.0)
    assert sim.status[0] == DROPPED and sim.autostarts == 0 and sim.instance_count(0) == 0


def test_no_free_gpu_the_platform_retries_when_one_frees():
    # Model b holds the only GPU; a's request waits until b is scaled in, then a starts at once.
    cfg = auto_config(models=[model("a"), model("b")], request_timeout_s=60.0)
    sim = make_sim(cfg, [1.0], [])
    sim.scale_up(1, 0)
    sim.run_until(10.0)
    assert sim.instance_count(0) == 0 and sim.queue_len(0) == 1
    sim.scale_down(1, 1)  # idle: removed now
    sim.run_until(30.0)
    (inst,) = sim.instances[0]
    assert inst.created_s == pytest.approx(10.0)
    assert sim.finish_s[0] == pytest.approx(10.0 + CLOUD_S + exec_s(1))


def test_requests_drop_only_by_timeout():
    # The GPU is held by b; a's requests can only wait, and each drops exactly at the timeout.
    cfg = auto_config(models=[model("a"), model("b")], request_timeout_s=6.0)
    sim = make_sim(cfg, [1.0, 2.0, 30.0], [])
    sim.scale_up(1, 0)
    sim.run_until(20.0)
    assert list(sim.status[:2]) == [DROPPED, DROPPED] and sim.dropped[0] == 2
    assert sim.now - sim.arrivals[1] >= 6.0
    sim.scale_down(1, 1)
    sim.run_until(60.0)
    assert sim.status[2] != DROPPED  # the GPU free: served (cold start 5.25 s < timeout 6 s)
    assert sim.finish_s[2] - sim.arrivals[2] == pytest.approx(CLOUD_S + exec_s(1))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**16),
    n_models=st.integers(1, 3),
    rate=st.floats(0.05, 3.0),
    timeout=st.floats(12.0, 60.0),
)
def test_with_a_gpu_per_model_and_no_policy_nothing_drops(seed, n_models, rate, timeout):
    """No policy acts at all: the platform alone serves every request (its cold start, 5.25 s
    alone and 7.25 s with three sharing the NIC, is shorter than the timeout, and every model
    has a GPU of its own)."""
    rng = np.random.default_rng(seed)
    arr = [np.sort(rng.uniform(0, 200, rng.poisson(rate * 200))) for _ in range(n_models)]
    cfg = auto_config(
        n_gpus=n_models, models=[model(f"m{i}") for i in range(n_models)],
        request_timeout_s=timeout, keep_alive_s=20.0,
    )  # fmt: skip
    sim = make_sim(cfg, *arr, duration=300.0)
    sim.run_until(300.0)
    assert sim.dropped.sum() == 0
    n = sum(len(a) for a in arr)
    assert sim.served.sum() == n and (sim.status[:n] != PENDING).all()
    # Every cold start the platform made was its own (no policy), one per idle gap.
    assert sim.autostarts == sum(sim.cold_starts.values()) >= (n > 0)


# ------------------------------------------------------------------ standing rules ----------
@pytest.mark.parametrize("rule, want_host", [("pack", 0), ("least_loaded", 1)])
def test_platform_cold_starts_follow_the_placement_rule(rule, want_host):
    # Host 0: one of its two GPUs held by b; host 1: both free.
    cfg = auto_config(n_hosts=2, n_gpus=2, models=[model("a"), model("b")])
    sim = make_sim(cfg, [5.0], [])
    sim.scale_up(1, 0)
    sim.set_rules(0, placement=rule)
    sim.run_until(20.0)
    (inst,) = sim.instances[0]
    assert sim.autostarts == 1 and inst.host == want_host


def test_set_rules_rejects_unknown_rules():
    from envs.sim import SimError

    sim = make_sim(auto_config(), [])
    with pytest.raises(SimError, match="placement rule 'nearest'"):
        sim.set_rules(0, placement="nearest")
    with pytest.raises(SimError, match="'disk'"):
        sim.set_rules(0, source="disk")


def test_env_source_rule_is_used_by_the_platforms_cold_start():
    """An action with source=cloud becomes the standing rule: the platform's own cold start of
    the model (no scale-out asked) then loads from cloud storage, not the local copy."""
    for source, tier, cold in (("keep", "local_mem", LOCAL_S), ("cloud", "cloud", CLOUD_S)):
        env = toy_env(auto_config(), [15.0], initial_copies=1)
        env.reset(seed=0)
        _, _, _, _, info = env.step(env_action(env, source=source))  # t 0 -> 10: no request
        assert info["cold_starts"] == 0
        for _ in range(5):
            _, _, _, trunc, info = env.step(env.layout.noop)
        assert trunc and info["cold_starts"] == 1 and info[f"cold_starts_{tier}"] == 1
        assert info["episode_metrics"]["autostarts"] == 1
        lat = env.sim.finish_s[0] - env.sim.arrivals[0]
        assert lat == pytest.approx(cold + exec_s(1))


# ------------------------------------------------------------- scale-in sabotage ----------
def test_scaling_a_queued_model_to_zero_restarts_it_at_once():
    # 1 s apart requests; the instance is warm; at t=20 the policy scales the model to zero.
    arr = np.arange(0.5, 60.0, 1.0)
    env = toy_env(auto_config(request_timeout_s=60.0), arr)
    env.reset(seed=0)
    env.step(env_action(env, delta=1))  # t 0 -> 10: scale out at t = 0
    env.step(env.layout.noop)  # t 10 -> 20
    sim = env.sim
    assert sim.instance_count(0) == 1 and sim.counts(0)[:2] != (0, 0)
    assert env.action_masks()[env_action(env, delta=-1)]
    env.step(env_action(env, delta=-1))  # at t = 20, then time advances to 30
    (inst,) = [i for i in sim.instances[0] if i.created_s > 0]
    # Scale-in drains the busy instance; the next request finds none and the platform starts
    # one at its arrival: 20.5 (or at once if requests were queued).
    assert 20.0 <= inst.created_s <= 20.5 and sim.autostarts == 1
    assert sim.instance_count(0) == 1


def _queued_env(n_instances: int):
    """One model on a 2-GPU host, requests every 2 ms from t = 0.01 (more than two instances
    serve: a queue at every interval boundary), ``n_instances`` started at t = 0."""
    env = toy_env(auto_config(n_gpus=2, request_timeout_s=60.0), np.arange(0.01, 60.0, 0.002))
    env.reset(seed=0)
    env.step(env_action(env, delta=n_instances))  # t 0 -> 10 (a 5.25 s cold start, then warm)
    return env


def test_scale_in_cannot_cancel_the_last_instance_of_a_queued_model():
    """A policy cannot refuse to serve by cancelling the platform's cold starts: while requests
    wait, scale-in keeps one instance (warm or loading); the mask says so."""
    env = _queued_env(1)
    sim = env.sim
    assert sim.queue_len(0) > 0 and sim.instance_count(0) == 1
    assert sim.scale_down(0, 1) == 0  # the simulator's own scale-in keeps it too
    down = env_action(env, delta=-4)
    assert not env.action_masks()[down] and not env.entry_masks(0)[0][env.layout.deltas < 0].any()
    env.step(down)  # masked: the no-op, counted
    assert env.invalid_actions == 1 and sim.instance_count(0) >= 1


def test_scale_in_of_a_queued_model_leaves_one_instance():
    env = _queued_env(2)
    sim = env.sim
    assert sim.queue_len(0) > 0 and sim.instance_count(0) == 2
    env.step(env_action(env, delta=-4))  # valid: one of the two may go
    assert env.invalid_actions == 0
    assert sim.instance_count(0) + sim.n_draining >= 1 and sim.instance_count(0) >= 1


def test_diskless_host_env_resets():
    """A host with no local disk (``disk_gb_per_s: 0``, HostSpec's documented 'no disk') must be
    usable by the env: the load-time tables must not divide by its zero disk bandwidth."""
    env = toy_env(toy_config(), [3.0])
    obs, _ = env.reset(seed=0)
    assert np.isfinite(obs).all()


@pytest.mark.parametrize("t0", [0.0, 5.0])
def test_a_request_at_the_start_is_served(t0):
    """A request arriving exactly when the run starts (a trace window's first request at t=0)
    must be autostarted and served, not stall ``run_until`` (guarded: fails instead of hanging)."""
    sim = make_sim(auto_config(), [t0, t0 + 1.0])
    with time_limit(10):
        sim.run_until(t0)
        sim.run_until(t0 + 20.0)
    assert sim.autostarts == 1
    # The second request arrives during the cold start: one batch of two.
    assert sim.finish_s[0] - sim.arrivals[0] == pytest.approx(CLOUD_S + exec_s(2))
