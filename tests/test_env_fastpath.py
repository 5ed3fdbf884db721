"""The env's fast per-step path equals a plain recomputation from the simulator's public queries.

``ServerlessGPUEnv`` caches masks and placement-state features against ``Simulator.version``,
and updates rates and idle-time histograms in compiled code (``envs/stats.py``). A missed
version bump or a kernel slip shows up here as an observation, mask, reward or info count that
differs from the one recomputed from scratch, step by step, over random presets, seeds,
overrides and action sequences (masked actions included). Features are addressed by their
names in :mod:`envs.layout`, never by index.

The demand statistics (rates, idle-time histogram) are recomputed from the arrivals and the
instance counts from the reset on; their state at the reset (the warm-up's end) is the one
thing taken from the env, as an initial condition.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import envs
from envs import layout as L
from envs.env import ServerlessGPUEnv
from envs.sim.kernel import DROPPED, PENDING

BIN_S, N_BINS = 60.0, 240  # the histogram policy's 1-minute bins over 4 hours (calibration.md)
RANGE_S = BIN_S * N_BINS


def histogram_windows(counts: list[int], n_out: int, last_idle: float) -> tuple[float, float]:
    """Shahrad et al.'s (pre-warm, keep-alive) windows, written out with numpy (CV >= 2 is
    representative; half the idle times out of range: around the last idle time, 15%)."""
    n_in = sum(counts)
    if n_in + n_out and n_out / (n_in + n_out) >= 0.5:
        return 0.85 * last_idle, 0.3 * last_idle
    if n_in == 0 or np.std(counts, ddof=1) / np.mean(counts) < 2.0:
        return 0.0, RANGE_S
    cum = np.cumsum(counts) / n_in
    head = int(np.argmax(cum >= 0.05 - 1e-12))
    tail = int(np.argmax(cum >= 0.99 - 1e-12))
    return head * BIN_S * 0.9, (tail + 1) * BIN_S * 1.1
HOLD, PREFETCH = L.CACHE_CHOICES.index("hold"), L.CACHE_CHOICES.index("prefetch")


class Reference:
    """Observation, mask, reward components and info counts from public simulator queries."""

    def __init__(self, env: ServerlessGPUEnv) -> None:
        self.env = env
        sim, M = env.sim, env.M
        self.prev_arrived = sim.arrived.copy()
        self.prev_head = sim.head.copy()
        self.rates = env.stats.rates.copy()  # initial condition (zeros without a warm-up)
        self.bins = [dict(enumerate(row)) for row in env.stats.bins.tolist()]
        self.oob = env.stats.oob.tolist()
        self.last_active = env.stats.last_active.tolist()
        self.idle_feats = env.stats.idle_features.astype(np.float64).tolist()
        self.last_idle = env.stats.last_idle_s.tolist()
        self.windows = env.stats.windows.tolist()
        self.last_scale = {"out": [-math.inf] * M, "in": [-math.inf] * M}  # the policy's
        self.k = env.stats.k
        self.t = 0
        self.focus = 0
        assert len(self.bins) == M

    # --------------------------------------------------------------- per interval ----------
    def interval_ended(self) -> None:
        env, sim = self.env, self.env.sim
        dt = env.scenario.step_s
        n = sim.arrived - self.prev_arrived
        self.prev_arrived = sim.arrived.copy()
        r = n / dt
        self.rates[0] = r
        self.rates[1] += (1 - math.exp(-dt / 60.0)) * (r - self.rates[1])
        self.rates[2] += (1 - math.exp(-dt / 600.0)) * (r - self.rates[2])
        for m in range(env.M):
            busy = sim.counts(m)[1] > 0
            if not (n[m] > 0 or sim.queue_len(m) > 0 or busy):
                continue
            if self.last_active[m] >= 0:
                idle = (self.k - self.last_active[m] - 1) * dt
                b = int(idle // BIN_S)
                if b < N_BINS:
                    self.bins[m][b] = self.bins[m].get(b, 0) + 1
                else:
                    self.oob[m] += 1
                self.last_idle[m] = idle
                counts = [self.bins[m].get(j, 0) for j in range(N_BINS)]
                self.windows[m] = histogram_windows(counts, self.oob[m], idle)
                total = sum(counts)
                if total:
                    cum = np.cumsum(counts) / total
                    head = int(np.argmax(cum >= 0.05 - 1e-12))
                    tail = int(np.argmax(cum >= 0.99 - 1e-12))
                    self.idle_feats[m][0] = math.log1p(head * BIN_S)
                    self.idle_feats[m][1] = math.log1p((tail + 1) * BIN_S)
                self.idle_feats[m][2] = math.log1p(total + self.oob[m])
            self.last_active[m] = self.k
        self.k += 1
        self.t += 1

    def acted(self, m: int, delta: int) -> None:
        """A carried-out action scaled model ``m`` by ``delta``."""
        if delta:
            self.last_scale["out" if delta > 0 else "in"][m] = self.env.sim.now

    def window_position(self, m: int) -> dict:
        """idle_now, hold_left, prewarm_in of model ``m`` (log1p seconds, capped at 4 h)."""
        if self.last_active[m] < 0:
            return {"idle_now": math.log1p(RANGE_S), "hold_left": 0.0, "prewarm_in": 0.0}
        idle = (self.k - 1 - self.last_active[m]) * self.env.scenario.step_s
        pre, keep = self.windows[m]
        cap = lambda x: math.log1p(min(x, RANGE_S))  # noqa: E731
        return {
            "idle_now": cap(idle),
            "hold_left": cap(pre + keep - idle) if pre <= idle < pre + keep else 0.0,
            "prewarm_in": cap(pre - idle) if idle < pre else 0.0,
        }

    # ---------------------------------------------------------------- observation ----------
    def model_features(self, m: int) -> np.ndarray:
        env, sim = self.env, self.env.sim
        hi, G, H = L.OBS_HIGH, env.G, env.H
        spec = env.cfg.models[m]
        idle, busy, loading = sim.counts(m)
        holders = sim.hosts_with_copy(m)
        first, last = sim.offsets[m], sim.arrived[m]
        since = sim.now - sim.arrivals[last - 1] if last > first else sim.now
        f = {
            "rate_step": math.log1p(self.rates[0, m]),
            "rate_1min": math.log1p(self.rates[1, m]),
            "rate_10min": math.log1p(self.rates[2, m]),
            "queue": math.log1p(sim.queue_len(m)),
            "oldest_wait": min(sim.oldest_wait_s(m) / spec.slo_s, 10.0) / 10.0,
            "warm_idle": idle / G,
            "warm_busy": busy / G,
            "loading": loading / G,
            "mem_copies": len(holders) / H,
            "pinned_copies": sum(sim.mem[h].entries[m].pinned for h in holders) / H,
            "load_time": min(sim.best_load_s(m) / 60.0, 5.0),
            "slo": spec.slo_s / 5.0,
            "size": spec.size_gb / max(h.gpu_mem_gb for h in env.cfg.hosts),
            "since_last": math.log1p(since),
            "idle_p5": self.idle_feats[m][0],
            "idle_p99": self.idle_feats[m][1],
            "idle_count": self.idle_feats[m][2],
            "rule_cloud": float(sim.rule_source[m] == "cloud"),
            **self.window_position(m),
        }
        for d in ("out", "in"):
            f[f"since_scale_{d}"] = math.log1p(min(sim.now - self.last_scale[d][m], RANGE_S))
        for rule in L.PLACEMENT_CHOICES[1:]:
            f[f"rule_{rule}"] = float(sim.rule_placement[m] == rule)
        assert set(f) == set(L.MODEL_FEATURES)
        return np.minimum([f[k] for k in L.MODEL_FEATURES], hi)

    def observation(self) -> np.ndarray:
        env, sim = self.env, self.env.sim
        free = sum(len(sim.free_gpus(h)) for h in range(env.H))
        cap = sum(h.cache_gb for h in env.cfg.hosts)
        tod = 2 * math.pi * ((env.start_s + sim.now - env.warmup_s) % 86400.0) / 86400.0
        c = {
            "free_gpus": free / env.G,
            "free_cache": sum(c.free_gb for c in sim.mem) / cap if cap > 0 else 0.0,
            "tod_sin": 0.5 + 0.5 * math.sin(tod),
            "tod_cos": 0.5 + 0.5 * math.cos(tod),
            "episode_progress": self.t / env.scenario.n_steps,
            "focus": self.focus / env.M,
        }
        assert set(c) == set(L.CLUSTER_FEATURES)
        obs = np.empty(L.N_OBS)
        obs[: len(L.MODEL_FEATURES)] = self.model_features(self.focus)
        for k, v in c.items():
            obs[L.C[k]] = v
        return obs

    # ----------------------------------------------------------------------- mask ----------
    def mask(self, m: int) -> np.ndarray:
        env, sim = self.env, self.env.sim
        lay = env.layout
        # Scale-in needs an instance it may remove: while requests wait, one must stay.
        has_inst = sim.instance_count(m) > (1 if sim.queue_len(m) > 0 else 0)
        fits = any(
            sim.free_per_host[h] > 0 and env.cfg.hosts[h].gpu_mem_gb >= env.cfg.models[m].size_gb
            for h in range(env.H)
        )
        can_prefetch = env.cfg.features.host_cache and any(
            m not in sim.mem[h] and sim.mem[h].can_fit(m) and not sim.prefetch_pending(m, h)
            for h in range(env.H)
        )
        out = np.zeros(lay.n, dtype=bool)
        for a in range(lay.n):
            s, _, _, c = lay.decode(a)
            d = lay.deltas[s]
            scale_ok = d == 0 or (d > 0 and fits) or (d < 0 and has_inst)
            out[a] = scale_ok and (c != PREFETCH or can_prefetch)
        return out

    # --------------------------------------------------------------- reward, info ----------
    def reward_components(self) -> dict:
        """Dollars of the interval, from the requests dispatched or dropped in it."""
        env, sim = self.env, self.env.sim
        p = env.scenario.reward
        n_late = late_s = n_drop = 0.0
        for m in range(env.M):
            lo, hi = self.prev_head[m], sim.head[m]
            status = sim.status[lo:hi]
            lat = sim.finish_s[lo:hi] - sim.arrivals[lo:hi]
            over = (lat > sim.slo[m]) & (status != DROPPED)
            n_drop += int((status == DROPPED).sum())
            n_late += int(over.sum())
            late_s += float((lat[over] - sim.slo[m]).sum())
        self.prev_head = sim.head.copy()
        return {
            "late": p.late_usd * n_late + p.late_usd_per_s * late_s,
            "drop": p.drop_usd * n_drop,
        }

    def window_counts(self) -> tuple[int, int, int, int]:
        """(arrived, completed, dropped, pending) over the window's requests."""
        sim = self.env.sim
        out = np.zeros(4, dtype=np.int64)
        for m in range(self.env.M):
            idx = np.arange(sim.window_first[m], sim.arrived[m])
            status = sim.status[idx]
            dropped = status == DROPPED
            pending = (status == PENDING) | (~dropped & (sim.finish_s[idx] > sim.now))
            out += [
                idx.size,
                idx.size - dropped.sum() - pending.sum(),
                dropped.sum(),
                pending.sum(),
            ]
        return tuple(int(x) for x in out)


OVERRIDES = st.sampled_from(
    [
        {},
        {"warmup_s": 0},
        {"warmup_s": 120},
        {"features__host_cache": False},
        {"features__remote_pool": False},
        {"features__keep_alive_s": 30.0},
        {"features__sourcing": "cloud"},
        {"initial_copies": 1},
    ]
)


def random_action(env, rng, mask, valid_fraction, activity) -> int:
    """Mostly the no-op or a valid action; some masked ones (counted no-ops)."""
    if rng.random() >= activity:
        return env.layout.noop
    if rng.random() < valid_fraction:
        return int(rng.choice(np.flatnonzero(mask)))
    return int(rng.integers(env.layout.n))


@pytest.mark.slow
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    scenario=st.sampled_from(sorted(envs.list_presets())),
    overrides=OVERRIDES,
    seed=st.integers(0, 2**16),
    n_intervals=st.integers(1, 10),
    valid_fraction=st.sampled_from([0.5, 0.9, 1.0]),
    activity=st.sampled_from([0.1, 0.5, 1.0]),
)
def test_fast_step_matches_plain_recomputation(
    scenario, overrides, seed, n_intervals, valid_fraction, activity
):
    env = ServerlessGPUEnv(scenario, episode_s=300, **overrides)
    obs, info = env.reset(seed=seed)
    ref = Reference(env)
    np.testing.assert_allclose(obs, ref.observation(), rtol=1e-5, atol=1e-6)
    rng = np.random.default_rng(seed)
    p = env.scenario.reward
    for _ in range(n_intervals * env.M):
        m = env.focus
        mask = env.action_masks()
        np.testing.assert_array_equal(mask, ref.mask(m), err_msg=f"mask of model {m}")
        a = random_action(env, rng, mask, valid_fraction, activity)
        invalid_before, cost_before = env.invalid_actions, env.sim.cost_usd()
        if mask[a]:  # before the step: the last model's step moves time on
            ref.acted(m, int(env.layout.deltas[env.layout.decode(a)[0]]))
        obs, reward, term, trunc, info = env.step(a)
        assert env.invalid_actions - invalid_before == int(not mask[a])
        ref.focus = (m + 1) % env.M
        comps = info["reward_components"]
        if ref.focus == 0:  # time advanced
            ref.interval_ended()
            want = ref.reward_components()
            assert math.isclose(comps["late"], want["late"], rel_tol=1e-9, abs_tol=1e-12)
            assert math.isclose(comps["drop"], want["drop"], rel_tol=1e-12, abs_tol=1e-12)
            assert math.isclose(
                comps["cost"], env.sim.cost_usd() - cost_before, rel_tol=1e-9, abs_tol=1e-12
            )
            total = comps["cost"] + comps["late"] + comps["drop"]
            assert math.isclose(reward, -p.scale * total, rel_tol=1e-9, abs_tol=1e-12)
            arrived, completed, dropped, pending = ref.window_counts()
            assert info["requests_arrived"] == arrived
            assert info["requests_completed"] == completed
            assert info["requests_dropped"] == dropped
            assert info["requests_pending"] == pending
        else:
            assert reward == 0.0 and comps == {"cost": 0.0, "late": 0.0, "drop": 0.0}
        np.testing.assert_allclose(obs, ref.observation(), rtol=1e-5, atol=1e-6)
        if ref.focus == 0:  # every model's row, as the reference policies read them
            for k in range(env.M):
                np.testing.assert_allclose(
                    env.model_features(k), ref.model_features(k), rtol=1e-5, atol=1e-6
                )
        if term or trunc:
            break


def _cloud_estimate(env, m: int) -> float:
    sim = env.sim
    fits = [h for h, hs in enumerate(env.cfg.hosts) if hs.gpu_mem_gb >= sim.sizes[m]]
    free = [h for h in fits if sim.free_per_host[h] > 0] or fits
    return min(sim.estimate_load_s(m, h, "cloud") for h in free)


@pytest.mark.parametrize("scenario", ["small", "paper"])
def test_load_time_honours_sourcing_cloud(scenario):
    """With ``features.sourcing: cloud`` every cold start downloads from cloud storage, so the
    load_time feature must be the cloud estimate even while memory copies exist."""
    env = ServerlessGPUEnv(scenario, episode_s=60, initial_copies=1, features__sourcing="cloud")
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    held = 0
    for _ in range(3 * env.M):
        for m in range(env.M):
            held += bool(env.sim.hosts_with_copy(m))
            got = env.model_features(m)[L.F["load_time"]]
            assert got == pytest.approx(min(_cloud_estimate(env, m) / 60.0, 5.0), rel=1e-6), m
        env.step(int(rng.choice(np.flatnonzero(env.action_masks()))))
    assert held > 0  # copies were there, and still the cloud estimate was shown


def test_load_time_follows_the_nearest_copy_under_hierarchical_sourcing():
    env = ServerlessGPUEnv("small", episode_s=60, warmup_s=0, initial_copies=1)
    env.reset(seed=0)
    sim = env.sim
    for m in range(env.M):
        (h,) = sim.hosts_with_copy(m)
        want = sim.estimate_load_s(m, h, "local_mem")
        assert env.model_features(m)[L.F["load_time"]] == pytest.approx(want / 60.0, rel=1e-6)
        assert want < _cloud_estimate(env, m)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0.0, 1e4, allow_nan=False), min_size=0, max_size=128))
def test_compiled_total_is_numpys_sum(values):
    """The reward's compiled total of late seconds is the float numpy's sum gives (pairwise
    order), so the kernel changed no reward by a rounding."""
    from envs.step_kernel import pairwise_sum

    a = np.array(values, dtype=np.float64)
    assert pairwise_sum(a) == float(a.sum())
