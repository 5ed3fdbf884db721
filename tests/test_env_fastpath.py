"""The env's fast per-step path equals a plain recomputation from the simulator's public queries.

``ServerlessGPUEnv`` caches masks and placement-state features against ``Simulator.version`` and
computes the rest in compiled code (``envs/step_kernel.py``). A missed version bump or a kernel
slip would show up here as an observation, mask, reward or info that differs from the one
recomputed from scratch (the straightforward implementation the env had before it was made
fast), step by step, over random scenarios and action sequences, invalid choices included.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from envs.env import CACHE_ACTIONS, MODEL_FEATURES, OBS_HIGH, ServerlessGPUEnv
from envs.sim.config import PLACEMENT_RULES
from envs.sim.kernel import DROPPED


class Reference:
    """Observation, mask, reward components and info counts from public simulator queries."""

    def __init__(self, env: ServerlessGPUEnv) -> None:
        self.env = env
        sim = env.sim
        self.prev_arrived = sim.arrived.copy()
        self.prev_head = sim.head.copy()
        self.rates = np.zeros((3, env.M))

    def best_load_s(self, m: int, holders: list[int], free: list[int]) -> float:
        env, sim = self.env, self.env.sim
        feats = env.scenario.sim.features
        if feats.host_cache and holders:
            if any(free[h] for h in holders):
                return sim.estimate_load_s(m, holders[0], "local_mem")
            if feats.remote_pool and env.H > 1:
                other = next((h for h in range(env.H) if h not in holders), holders[0])
                return sim.estimate_load_s(m, other, "remote_mem")
        for h in range(env.H):
            if feats.host_cache and m in sim.disk[h]:
                return sim.estimate_load_s(m, h, "disk")
        return sim.estimate_load_s(m, 0, "cloud")

    def observation(self) -> np.ndarray:
        env, sim = self.env, self.env.sim
        sc, G, H = env.scenario, env.G, env.H
        rate = (sim.arrived - self.prev_arrived) / sc.step_s
        self.prev_arrived = sim.arrived.copy()
        self.rates[0] = rate
        alpha = 1.0 - np.exp(-sc.step_s / np.array([[60.0], [600.0]]))
        self.rates[1:] += alpha * (rate - self.rates[1:])
        free = [len(sim.free_gpus(h)) for h in range(H)]
        f = np.zeros((env.K, len(MODEL_FEATURES)))
        for m, spec in enumerate(sc.sim.models):
            idle, busy, loading = sim.counts(m)
            holders = sim.hosts_with_copy(m)
            pinned = sum(sim.mem[h].entries[m].pinned for h in holders)
            f[m] = (
                1.0, *np.log1p(self.rates[:, m]), math.log1p(sim.queue_len(m)),
                min(sim.oldest_wait_s(m) / spec.slo_s, 10.0) / 10.0, idle / G, busy / G,
                loading / G, len(holders) / H, pinned / H,
                min(self.best_load_s(m, holders, free) / 60.0, 5.0), spec.slo_s / 5.0,
                spec.size_gb / max(h.gpu_mem_gb for h in sc.sim.hosts),
            )  # fmt: skip
        cap = sum(h.cache_gb for h in sc.sim.hosts)
        free_cache = sum(c.free_gb for c in sim.mem) / cap if cap > 0 else 0.0
        tod = 2 * math.pi * ((env.start_s + sim.now) % 86400.0) / 86400.0
        cluster = [sum(free) / G, free_cache, 0.5 + 0.5 * math.sin(tod),
                   0.5 + 0.5 * math.cos(tod), env.t / sc.n_steps]  # fmt: skip
        return np.minimum(np.r_[f.reshape(-1), cluster], OBS_HIGH).astype(np.float32)

    def mask(self) -> np.ndarray:
        env, sim = self.env, self.env.sim
        nd = len(env.deltas)
        rows = []
        for m in range(env.K):
            scale = env.deltas == 0
            place = np.zeros(env.n_place, dtype=bool)
            place[0] = True  # a padding slot may only hold
            cache = np.array([c == "hold" for c in CACHE_ACTIONS])
            if m < env.M:
                fits = [
                    bool(sim.free_gpus(h)) and sim.cfg.hosts[h].gpu_mem_gb >= sim.sizes[m]
                    for h in range(env.H)
                ]
                scale = scale | ((env.deltas > 0) & any(fits))
                scale = scale | ((env.deltas < 0) & (sim.instance_count(m) > 0))
                place[: len(PLACEMENT_RULES)] = True
                place[len(PLACEMENT_RULES) :] = fits
                cache[:] = True
                cache[-1] = env.scenario.sim.features.host_cache and any(
                    m not in sim.mem[h] and sim.mem[h].can_fit(m) and not sim.prefetch_pending(m, h)
                    for h in range(env.H)
                )
            source = np.ones(2, dtype=bool) if m < env.M else np.array([True, False])
            assert len(scale) == nd
            rows.append(np.r_[scale, place, source, cache])
        return np.concatenate(rows)

    def late_and_dropped(self) -> tuple[int, int]:
        """Requests dispatched late and dropped since the last call (by slicing the arrays)."""
        sim = self.env.sim
        late = drops = 0
        for m, spec in enumerate(sim.cfg.models):
            lo, hi = self.prev_head[m], sim.head[m]
            st_ = sim.status[lo:hi]
            lat = sim.finish_s[lo:hi] - sim.arrivals[lo:hi]
            drops += int((st_ == DROPPED).sum())
            late += int(((lat > spec.slo_s) & (st_ != DROPPED)).sum())
        self.prev_head = sim.head.copy()
        return late, drops


OVERRIDES = st.sampled_from(
    [
        {},
        {"features__host_cache": False},
        {"features__remote_pool": False},
        {"features__keep_alive_s": 30.0},
        {"features__sourcing": "cloud"},
        {"initial_copies": 0},
    ]
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    scenario=st.sampled_from(["small", "paper", "azure"]),
    overrides=OVERRIDES,
    seed=st.integers(0, 2**16),
    n_steps=st.integers(1, 30),
    valid_fraction=st.sampled_from([0.5, 0.9, 1.0]),
    activity=st.sampled_from([0.05, 0.2, 1.0]),
)
def test_fast_step_matches_plain_recomputation(
    scenario, overrides, seed, n_steps, valid_fraction, activity
):
    env = ServerlessGPUEnv(scenario, episode_s=300, **overrides)
    obs, info = env.reset(seed=seed)
    ref = Reference(env)
    np.testing.assert_allclose(obs, ref.observation(), rtol=1e-6, atol=1e-6)
    rng = np.random.default_rng(seed)
    w = env.scenario.reward
    for _ in range(n_steps):
        mask = env.action_masks()
        np.testing.assert_array_equal(mask, ref.mask())
        # A random action: each entry left at its no-op with probability 1 - activity (so
        # that steps with a single change, a lone pin or release, occur), otherwise a random
        # choice: mostly valid ones, some masked ones (counted no-ops).
        rows = mask.reshape(env.K, -1)
        action = env._noop.tolist()
        for m in range(env.K):
            off = 0
            for e, n in enumerate(env.nvec_model):
                if rng.random() < activity:
                    choices = np.flatnonzero(rows[m, off : off + n])
                    if rng.random() >= valid_fraction:
                        choices = np.arange(n)
                    action[4 * m + e] = int(rng.choice(choices))
                off += n
        invalid_before = env.invalid_actions
        cols = np.r_[0, np.cumsum(env.nvec_model)[:-1]]
        expected_invalid = sum(not rows[i // 4, cols[i % 4] + a] for i, a in enumerate(action))
        cost_before = env.sim.cost_usd()
        obs, reward, term, trunc, info = env.step(np.array(action))
        assert env.invalid_actions - invalid_before == expected_invalid
        np.testing.assert_allclose(obs, ref.observation(), rtol=1e-6, atol=1e-6)
        late, drops = ref.late_and_dropped()
        comps = info["reward_components"]
        assert round(comps["slo"] * env._req_norm) == late
        assert round(comps["drop"] * env._req_norm) == drops
        cost_step = (env.sim.cost_usd() - cost_before) / env._step_cost_norm
        assert math.isclose(comps["cost"], cost_step, rel_tol=1e-9, abs_tol=1e-12)
        assert math.isclose(
            reward, -(w.slo * comps["slo"] + w.drop * comps["drop"] + w.cost * comps["cost"])
        )
        rc = env.sim.request_counts()
        assert info["requests_arrived"] == rc["arrived"]
        assert info["requests_completed"] == rc["completed"]
        assert info["requests_dropped"] == rc["dropped"]
        assert info["requests_pending"] == rc["queued"] + rc["in_service"]
        if term or trunc:
            break
