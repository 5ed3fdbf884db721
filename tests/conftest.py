"""Shared helpers for the simulator tests: toy configs with round numbers, workloads, a hang guard."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from envs.sim import (
    CloudStoreSpec,
    FeatureSpec,
    HostSpec,
    ModelSpec,
    PriceSpec,
    SimConfig,
    Simulator,
    StartupSpec,
    Workload,
)

# Round numbers of the toy cluster used by the known-answer tests.
SIZE = 2.0  # GB
PCIE = 4.0  # GB/s  -> copy 0.5 s
NIC = 2.0  # GB/s   -> remote/cloud fetch 1.0 s
DISK = 4.0  # GB/s  -> disk fetch 0.5 s
DESER = 1.0  # GB/s -> deserialise 2.0 s
SANDBOX = 0.5
RUNTIME = 1.0
TTFB = 0.25
BATCH1_MS = 100.0
PER_ITEM_MS = 10.0
CPU_MS = 500.0
# Uncontended cold starts of the toy model (sequential stages), from cloud storage and from the
# target host's memory.
CLOUD_S = SANDBOX + RUNTIME + TTFB + SIZE / NIC + SIZE / PCIE + SIZE / DESER  # 5.25
LOCAL_S = SANDBOX + RUNTIME + SIZE / PCIE + SIZE / DESER  # 4.0

SIM_TEST_TIMEOUT_S = 120


@pytest.fixture(autouse=True)
def _sim_hang_guard(request):
    """Fail (instead of hanging the suite) if a simulator test runs away, e.g. a run_until loop
    that stops advancing time. Only for this package's simulator tests (``test_sim_*``)."""
    name = request.node.module.__name__.rsplit(".", 1)[-1]
    if not name.startswith("test_sim_") or not hasattr(signal, "SIGALRM"):
        yield
        return

    def _boom(signum, frame):
        raise TimeoutError(f"simulator test exceeded {SIM_TEST_TIMEOUT_S} s (hang?)")

    old = signal.signal(signal.SIGALRM, _boom)
    signal.alarm(SIM_TEST_TIMEOUT_S)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise TimeoutError if the block runs longer than ``seconds`` (wall clock; no-op where
    SIGALRM is unavailable). Re-armed on every use, so Hypothesis' shrinking stays guarded."""
    if not hasattr(signal, "SIGALRM"):
        yield
        return

    def _boom(signum, frame):
        raise TimeoutError(f"block exceeded {seconds} s (simulator hang?)")

    old_handler = signal.signal(signal.SIGALRM, _boom)
    old_delay, old_interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_handler)
        if old_delay:  # restore an enclosing guard (e.g. the per-test one)
            signal.setitimer(signal.ITIMER_REAL, old_delay, old_interval)


def model(name="a", size=SIZE, deser=DESER, max_batch=4, **kw) -> ModelSpec:
    args = dict(
        name=name,
        size_gb=size,
        gpu_batch1_ms=BATCH1_MS,
        gpu_per_item_ms=PER_ITEM_MS,
        cpu_ms=CPU_MS,
        max_batch=max_batch,
        slo_s=1.0,
        deserialize_gb_per_s=deser,
    )
    args.update(kw)
    return ModelSpec(**args)


def host(n_gpus=1, **kw) -> HostSpec:
    args = dict(
        n_gpus=n_gpus,
        gpu_mem_gb=8.0,
        cache_gb=8.0,
        nic_gb_per_s=NIC,
        pcie_gb_per_s=PCIE,
        disk_gb_per_s=0.0,
        disk_cache_gb=0.0,
    )
    args.update(kw)
    return HostSpec(**args)


def toy_config(
    hosts=None,
    models=None,
    *,
    pipelined=False,
    chunks=4,
    cloud=None,
    prices=None,
    **features,
) -> SimConfig:
    """One host with one GPU, one 2 GB model, fetch bottleneck = the NIC (2 GB/s)."""
    return SimConfig(
        hosts=tuple(hosts) if hosts is not None else (host(),),
        models=tuple(models) if models is not None else (model(),),
        cloud=cloud
        or CloudStoreSpec(per_stream_gb_per_s=10.0, streams=1, ttfb_s=TTFB, egress_gb_per_s=100.0),
        startup=StartupSpec(
            sandbox_s=SANDBOX, runtime_init_s=RUNTIME, pipelined=pipelined, pipeline_chunks=chunks
        ),
        prices=prices or PriceSpec(),
        features=FeatureSpec(**features),
    )


def workload(*arrivals, duration=1000.0) -> Workload:
    return Workload(tuple(np.asarray(a, dtype=float) for a in arrivals), duration)


def make_sim(cfg: SimConfig, *arrivals, duration=1000.0, seed=0) -> Simulator:
    if not arrivals:
        arrivals = tuple([] for _ in cfg.models)
    return Simulator(cfg, workload(*arrivals, duration=duration), np.random.default_rng(seed))


def exec_s(batch: int = 1) -> float:
    return (BATCH1_MS + (batch - 1) * PER_ITEM_MS) / 1000.0


# ------------------------------------------------------------------ env (v1) helpers ----
def valid_random_action(env, rng: np.random.Generator) -> int:
    """A uniformly random action among the focused model's valid ones (``action_masks()``)."""
    return int(rng.choice(np.flatnonzero(env.action_masks())))


def run_env(env, seed: int, act=None, action_seed: int = 0):
    """One episode of ``env`` from ``reset(seed=seed)``; ``act(env, rng)`` picks each action
    (default: masked uniform random). Returns (observations, rewards, infos)."""
    act = act or valid_random_action
    rng = np.random.default_rng(action_seed)
    obs, _ = env.reset(seed=seed)
    trace, rewards, infos = [obs], [], []
    done = False
    while not done:
        obs, r, term, trunc, info = env.step(act(env, rng))
        trace.append(obs)
        rewards.append(r)
        infos.append(info)
        done = term or trunc
    return np.array(trace), np.array(rewards), infos


def toy_env(cfg: SimConfig, *arrivals, episode_s=60.0, step_s=10.0, warmup_s=0.0, **scenario_kw):
    """A v1 env over a toy config whose every episode replays ``arrivals`` (one sequence per
    model, seconds from the start of the warm-up; the window starts at ``warmup_s``)."""
    from envs.env import ServerlessGPUEnv
    from envs.scenarios import Scenario

    sc = Scenario(
        name="toy", description="toy", sim=cfg, workload={"kind": "poisson", "rate_rps": 1.0},
        episode_s=episode_s, step_s=step_s, span_s=100 * (episode_s + warmup_s),
        warmup_s=warmup_s, **scenario_kw,
    )  # fmt: skip
    env = ServerlessGPUEnv(sc)
    arrivals = arrivals or tuple([] for _ in cfg.models)

    def generator(rng, n_models, duration_s, start_s=0.0):
        return workload(*arrivals, duration=duration_s)

    env.generator = generator
    return env


def env_action(env, delta=0, placement="keep", source="keep", cache="hold") -> int:
    """The v1 action index of the named choices (``envs.layout``)."""
    from envs import layout as L

    s = int(np.flatnonzero(env.layout.deltas == delta)[0])
    return env.layout.encode(
        s, L.PLACEMENT_CHOICES.index(placement), L.SOURCE_CHOICES.index(source),
        L.CACHE_CHOICES.index(cache),
    )  # fmt: skip


# ------------------------------------------------------------------------------ the study ----
REPO = Path(__file__).resolve().parents[1]


def run_study(*args, timeout=300) -> subprocess.CompletedProcess:
    """``python -m agents.study ARGS`` from the repository root."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "agents.study", *map(str, args)], capture_output=True, text=True,
        timeout=timeout, env=env, cwd=REPO,
    )  # fmt: skip


def check_policy_row(name: str, r: dict) -> None:
    """A policy's row of a study.json scenario entry: its IQM inside its interval and equal to
    the IQM of its scores, every metric a float."""
    from agents import stats

    lo, hi = r["reward_ci"]
    assert lo <= r["reward_iqm"] <= hi
    assert r["reward_iqm"] == pytest.approx(stats.iqm(r["scores"]))
    for k in ("drop_rate", "p99_latency_s", "cost_usd", "goodput_rps", "slo_attainment"):
        assert isinstance(r[k], float), (name, k)
