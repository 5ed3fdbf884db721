"""Property tests: random small clusters, random workloads, random control actions.

After every step: request conservation (cross-checked against the per-request arrays), one
instance per GPU that fits it, caches within capacity, time/cost/GPU-seconds never decreasing.
At the end: every request decided, served ones consistent, replay identical, run_until split
into extra steps identical.
"""

from __future__ import annotations

import math

import numpy as np
from conftest import time_limit
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from envs.sim import (
    PLACEMENT_RULES,
    SOURCING_RULES,
    TIERS,
    CloudStoreSpec,
    FeatureSpec,
    HostSpec,
    ModelSpec,
    PriceSpec,
    SimConfig,
    SimError,
    Simulator,
    StartupSpec,
    Workload,
    summary,
)
from envs.sim.kernel import DROPPED, PENDING, SERVED_CPU, SERVED_GPU
from envs.sim.simulator import DEAD, DRAINING, LOADING, WARM

DURATION = 30.0
SETTINGS = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Values on coarse grids so that ties (events, arrivals and expiries at the same instant) occur.
pos = st.sampled_from


@st.composite
def configs(draw):
    n_hosts = draw(st.integers(1, 3))
    hosts = []
    for _ in range(n_hosts):
        disk = draw(st.sampled_from([0.0, 2.0, 4.0]))
        hosts.append(
            HostSpec(
                n_gpus=draw(st.integers(1, 3)),
                gpu_mem_gb=draw(pos([4.0, 8.0, 16.0])),
                cache_gb=draw(pos([0.0, 1.0, 3.0, 6.0, 20.0])),
                nic_gb_per_s=draw(pos([0.5, 1.0, 2.0, 2.5])),
                pcie_gb_per_s=draw(pos([2.0, 4.0, 10.0])),
                disk_gb_per_s=disk,
                disk_cache_gb=draw(pos([0.0, 2.0, 8.0])),
            )
        )
    biggest = max(h.gpu_mem_gb for h in hosts)
    n_models = draw(st.integers(1, 3))
    models = []
    for i in range(n_models):
        size = draw(
            pos([0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0]).filter(lambda s: s <= biggest)
        )
        models.append(
            ModelSpec(
                name=f"m{i}",
                size_gb=size,
                gpu_batch1_ms=draw(pos([5.0, 20.0, 100.0, 250.0])),
                gpu_per_item_ms=draw(pos([0.0, 2.0, 10.0])),
                cpu_ms=draw(pos([50.0, 500.0, 2000.0])),
                max_batch=draw(st.integers(1, 8)),
                slo_s=1.0,
                deserialize_gb_per_s=draw(pos([0.5, 1.0, 4.0])),
            )
        )
    cloud = CloudStoreSpec(
        per_stream_gb_per_s=draw(pos([0.1, 0.5, 2.0])),
        streams=draw(st.integers(1, 4)),
        ttfb_s=draw(pos([0.0, 0.02, 0.25])),
        egress_gb_per_s=draw(pos([1.0, 5.0, 12.5])),
    )
    startup = StartupSpec(
        sandbox_s=draw(pos([0.0, 0.5])),
        runtime_init_s=draw(pos([0.0, 1.0, 2.0])),
        pipelined=draw(st.booleans()),
        pipeline_chunks=draw(st.integers(1, 8)),
        jitter_cv=draw(pos([0.0, 0.0, 0.3])),
    )
    features = FeatureSpec(
        host_cache=draw(st.booleans()),
        remote_pool=draw(st.booleans()),
        sourcing=draw(st.sampled_from(SOURCING_RULES)),
        default_placement=draw(st.sampled_from(PLACEMENT_RULES)),
        request_timeout_s=draw(pos([1.0, 5.0, 60.0])),
        keep_alive_s=draw(pos([None, 0.0, 0.5, 2.0, 5.0])),
        cpu_fallback=draw(st.booleans()),
        cpu_workers=draw(st.integers(1, 2)),
    )
    prices = PriceSpec(1.0, 0.01, draw(pos([0.0, 0.05])))
    return SimConfig(tuple(hosts), tuple(models), cloud, startup, prices, features)


def make_workload(n_models: int, seed: int, grid: bool) -> Workload:
    rng = np.random.default_rng(seed)
    arrs = []
    for _ in range(n_models):
        rate = rng.uniform(0.2, 6.0)
        gaps = rng.exponential(1.0 / rate, size=int(rate * DURATION * 2) + 5)
        a = np.cumsum(gaps)
        a = a[a < DURATION]
        if grid:  # round to 50 ms so arrivals coincide with each other and with events
            a = np.minimum(np.round(a / 0.05) * 0.05, DURATION - 0.05)
        arrs.append(np.sort(a))
    return Workload(tuple(arrs), DURATION, source=f"poisson seed={seed}")


# Weighted toward scaling so that most examples run several cold starts.
ACTION_KINDS = ["scale_up"] * 4 + ["set_target"] * 2 + ["scale_down"] * 2
ACTION_KINDS += ["keep", "evict", "prefetch", "prefetch", "seed", "wait"]


@st.composite
def action_lists(draw, cfg: SimConfig):
    n_h, n_m = len(cfg.hosts), len(cfg.models)
    n = draw(st.integers(0, 20))
    out = []
    # Usually deploy something at t=0 so requests meet warm and loading instances.
    for m in range(n_m):
        k = draw(st.integers(0, 2))
        if k:
            out.append((0.0, "set_target", m, 0, {"n": k, "placement": None}))
    for _ in range(n):
        t = draw(st.one_of(pos(list(np.arange(0.0, DURATION, 0.25))), st.floats(0.0, DURATION)))
        kind = draw(st.sampled_from(ACTION_KINDS))
        m = draw(st.integers(0, n_m - 1))
        h = draw(st.integers(0, n_h - 1))
        arg = {
            "host": draw(st.one_of(st.none(), st.just(h))),
            "source": draw(st.one_of(st.none(), st.sampled_from(TIERS))),
            "k": draw(st.integers(1, 2)),
            "n": draw(st.integers(0, 3)),
            "placement": draw(st.one_of(st.none(), st.sampled_from(PLACEMENT_RULES))),
            "flag": draw(st.booleans()),
        }
        out.append((float(t), kind, m, h, arg))
    out.sort(key=lambda a: a[0])
    return out


def apply(sim: Simulator, kind, m, h, arg):
    try:
        if kind == "scale_up":
            sim.scale_up(m, arg["host"], arg["source"])
        elif kind == "scale_down":
            sim.scale_down(m, arg["k"])
        elif kind == "set_target":
            sim.set_target(m, arg["n"], arg["placement"])
        elif kind == "keep":
            sim.cache_keep(m, h, arg["flag"])
        elif kind == "evict":
            sim.cache_evict(m, h)
        elif kind == "prefetch":
            src = arg["source"] if arg["source"] != "local_mem" else None
            sim.prefetch(m, h, src, pin=arg["flag"])
        elif kind == "seed":
            sim.seed_copy(m, h)
    except SimError:
        pass


def independent_counts(sim: Simulator) -> dict[str, int]:
    """Requests by class, counted from the per-request arrays alone (arrival, status, finish),
    never through ``request_counts`` or the env's ``info`` (whose ``pending`` is derived)."""
    now, st_, fin, arr = sim.now, sim.status, sim.finish_s, sim.arrivals
    here = arr <= now
    served = (st_ == SERVED_GPU) | (st_ == SERVED_CPU)
    return {
        "arrived": int(here.sum()),
        "queued": int((here & (st_ == PENDING)).sum()),
        "in_service": int((here & served & (fin > now)).sum()),
        "completed": int((here & served & (fin <= now)).sum()),
        "dropped": int((here & (st_ == DROPPED)).sum()),
    }


def check_conservation(sim: Simulator) -> dict[str, int]:
    """Every request that arrived is in exactly one class, by the arrays alone; none that has
    not arrived is decided; served requests finish after they start, which is after arrival."""
    st_, arr = sim.status, sim.arrivals
    assert np.isin(st_, (PENDING, SERVED_GPU, SERVED_CPU, DROPPED)).all()
    n = independent_counts(sim)
    assert n["arrived"] == n["queued"] + n["in_service"] + n["completed"] + n["dropped"], n
    if sim.now > 0:
        assert (st_[arr > sim.now] == PENDING).all()
    served = (st_ == SERVED_GPU) | (st_ == SERVED_CPU)
    assert (sim.start_s[served] >= arr[served] - 1e-9).all()
    assert (sim.finish_s[served] >= sim.start_s[served]).all()
    return n


def check_step(sim: Simulator, prev: dict) -> dict:
    now = sim.now
    check_conservation(sim)
    rc = sim.request_counts()
    assert all(v >= 0 for v in rc.values()), rc
    assert rc["arrived"] == rc["queued"] + rc["in_service"] + rc["completed"] + rc["dropped"]
    # Cross-check against the per-request arrays.
    st_, fin, arr = sim.status, sim.finish_s, sim.arrivals
    served = (st_ == SERVED_GPU) | (st_ == SERVED_CPU)
    if now > 0:
        assert rc["arrived"] == int((arr <= now).sum())
    assert rc["dropped"] == int((st_ == DROPPED).sum())
    assert rc["in_service"] == int((served & (fin > now)).sum())
    assert rc["completed"] == int((served & (fin <= now)).sum())
    assert rc["queued"] == int(((st_ == PENDING) & (arr <= now)).sum()) or now == 0
    assert not (served & (sim.start_s >= now) & (now > 0)).any()  # decided in the past only
    assert (st_[arr > now] == PENDING).all()
    for m in range(sim.M):
        assert sim.queue_len(m) >= 0
        # late: dispatched requests whose latency exceeds the SLO, counted at dispatch.
        lo, hi = sim.offsets[m], sim.offsets[m + 1]
        lat = fin[lo:hi] - arr[lo:hi]
        assert sim.late[m] == int((served[lo:hi] & (lat > sim.cfg.models[m].slo_s)).sum())
    # One live instance per GPU, fitting it, on the right host; bookkeeping consistent.
    seen = {}
    for m, insts in enumerate(sim.instances):
        for inst in insts:
            assert inst.model == m and inst.state in (LOADING, WARM, DRAINING)
            assert inst.state != DEAD
            assert inst.gpu not in seen, "two instances on one GPU"
            seen[inst.gpu] = inst
            assert sim.host_of_gpu[inst.gpu] == inst.host
            assert sim.sizes[m] <= sim.cfg.hosts[inst.host].gpu_mem_gb
            assert inst.created_s <= now
        assert sim.instance_count(m) == sum(sim.counts(m))
        warm = sum(1 for i in insts if i.state == WARM)
        assert sim.n_serving[m] == warm
        assert sim.n_loading[m] == sum(1 for i in insts if i.state == LOADING)
    assert sim.n_draining == sum(i.state == DRAINING for insts in sim.instances for i in insts)
    for g, inst in enumerate(sim.gpu_instance):
        assert seen.get(g) is inst
    live = sum(now - i.created_s for insts in sim.instances for i in insts)
    assert math.isclose(sim.gpu_seconds(), sim.gpu_s_closed + live, rel_tol=1e-9, abs_tol=1e-6)
    for h, gpus in enumerate(sim.gpus_of_host):
        assert sim.free_per_host[h] == sum(sim.gpu_instance[g] is None for g in gpus)
    pending = np.zeros_like(sim.prefetch_count)
    for p in sim.prefetches:
        pending[p.model, p.host] += 1
    np.testing.assert_array_equal(sim.prefetch_count, pending)
    # Caches within capacity, accounting exact.
    for caches in (sim.mem, sim.disk):
        for c in caches:
            assert c.used_gb <= c.capacity_gb + 1e-9
            assert abs(c.used_gb - sum(sim.sizes[k] for k in c.entries)) <= 1e-9
            assert all(e.readers >= 0 for e in c.entries.values())
            # The array mirror equals the record.
            for k in range(sim.M):
                e = c.entries.get(k)
                want = (0, 0, 0) if e is None else (1, int(e.pinned), e.readers)
                assert tuple(c.state[:, k]) == want, (k, c.state[:, k], e)
            assert c.used[0] == c.used_gb
    if not sim.cfg.features.host_cache:
        assert all(not c.entries for c in sim.mem)
    assert all(x >= 0 for x in sim._out_transfers)
    # Monotone quantities.
    cur = {
        "now": now,
        "cost": sim.cost_usd(),
        "gpu_s": sim.gpu_seconds(),
        "mem": sim.mem_gb_seconds(),
        "busy": sim.gpu_busy_seconds(),
        "egress": sim.egress_gb,
    }
    for k, v in cur.items():
        assert v >= prev.get(k, 0.0) - 1e-9, (k, v, prev.get(k))
    assert cur["busy"] <= cur["gpu_s"] + 1e-9
    return cur


def check_final(sim: Simulator):
    cfg = sim.cfg
    assert (sim.status != PENDING).all(), "requests left undecided long after the workload"
    assert all(sim.counts(m)[2] == 0 for m in range(sim.M)), "a cold start never finished"
    assert not sim.net.transfers and not sim.prefetches
    served = (sim.status == SERVED_GPU) | (sim.status == SERVED_CPU)
    assert (sim.start_s[served] >= sim.arrivals[served]).all()
    assert (sim.finish_s[served] > sim.start_s[served]).all()
    # Waits within the timeout; drops exactly at arrival + timeout.
    timeout = cfg.features.request_timeout_s
    assert (sim.start_s[served] - sim.arrivals[served] <= timeout + 1e-9).all()
    dropped = sim.status == DROPPED
    np.testing.assert_allclose(
        sim.start_s[dropped], sim.arrivals[dropped] + timeout, rtol=0, atol=1e-9
    )
    assert (sim.start_s[dropped] - sim.arrivals[dropped] >= timeout - 1e-9).all()
    # Service times: CPU requests run cpu_ms; GPU batches fit the linear batching model.
    for m, spec in enumerate(cfg.models):
        lo, hi = sim.offsets[m], sim.offsets[m + 1]
        s, f, code = sim.start_s[lo:hi], sim.finish_s[lo:hi], sim.status[lo:hi]
        cpu = code == SERVED_CPU
        np.testing.assert_allclose(f[cpu] - s[cpu], spec.cpu_ms / 1e3, rtol=1e-9)
        assert not cpu.any() or cfg.features.cpu_fallback
        gpu = code == SERVED_GPU
        dur = f[gpu] - s[gpu]
        b = (
            np.round((dur * 1e3 - spec.gpu_batch1_ms) / spec.gpu_per_item_ms) + 1
            if (spec.gpu_per_item_ms > 0)
            else None
        )
        if b is not None:
            assert ((b >= 1) & (b <= spec.max_batch)).all()
            np.testing.assert_allclose(dur, [spec.gpu_exec_s(int(x)) for x in b], rtol=1e-6)
        else:
            np.testing.assert_allclose(dur, spec.gpu_batch1_ms / 1e3, rtol=1e-9)
        # FIFO per model: service starts in arrival order.
        assert (np.diff(s[gpu | cpu]) >= -1e-12).all() or cfg.features.cpu_fallback
    assert sum(sim.cold_starts.values()) == int(sim.cold_starts_by_model.sum())
    s = summary(sim)
    assert s["requests_arrived"] == sim.arrivals.size
    assert 0.0 <= s["slo_attainment"] <= 1.0
    assert 0.0 <= s["gpu_utilization"] <= 1.0 + 1e-9


def simulate(cfg, wl, actions, jitter_seed, extra_stops=()):
    with time_limit(10.0):  # one example takes milliseconds; a hang fails fast
        return _simulate(cfg, wl, actions, jitter_seed, extra_stops)


def _simulate(cfg, wl, actions, jitter_seed, extra_stops):
    sim = Simulator(cfg, wl, np.random.default_rng(jitter_seed))
    prev = check_step(sim, {})
    stops = sorted(
        [(t, i) for i, (t, *_rest) in enumerate(actions)] + [(t, -1) for t in extra_stops]
    )
    for t, i in stops:
        sim.run_until(t)
        prev = check_step(sim, prev)
        if i >= 0:
            apply(sim, *actions[i][1:])
            prev = check_step(sim, prev)
    sim.run_until(DURATION)
    prev = check_step(sim, prev)
    # Long after the workload: every load has finished and every request is decided.
    sim.run_until(DURATION + cfg.features.request_timeout_s + 500.0)
    check_step(sim, prev)
    return sim


def arrays(sim):
    return (sim.start_s, sim.finish_s, sim.status, sim.cold_wait_s)


@st.composite
def scenarios(draw):
    cfg = draw(configs())
    actions = draw(action_lists(cfg))
    seed = draw(st.integers(0, 2**31 - 1))
    grid = draw(st.booleans())
    return cfg, actions, seed, grid


@SETTINGS
@given(scenarios())
def test_invariants_hold_after_every_step(scenario):
    cfg, actions, seed, grid = scenario
    wl = make_workload(len(cfg.models), seed, grid)
    sim = simulate(cfg, wl, actions, jitter_seed=seed)
    check_final(sim)

    # Determinism: the same inputs replay to identical arrays.
    again = simulate(cfg, wl, actions, jitter_seed=seed)
    for a, b in zip(arrays(sim), arrays(again), strict=True):
        np.testing.assert_array_equal(a, b)
    assert again.cost_usd() == sim.cost_usd()
    assert again.cold_starts == sim.cold_starts

    # Another workload seed gives other arrivals.
    other = make_workload(len(cfg.models), seed + 1, grid)
    assert any(
        a.shape != b.shape or not np.array_equal(a, b)
        for a, b in zip(wl.arrivals_s, other.arrivals_s, strict=True)
    )


@settings(SETTINGS, max_examples=30)
@given(scenarios(), st.lists(st.floats(0.0, DURATION), max_size=12))
def test_extra_run_until_steps_change_nothing(scenario, stops):
    cfg, actions, seed, grid = scenario
    wl = make_workload(len(cfg.models), seed, grid)
    base = simulate(cfg, wl, actions, jitter_seed=seed)
    stops = list(stops) + list(np.arange(0.0, DURATION, 1.0))
    split = simulate(cfg, wl, actions, jitter_seed=seed, extra_stops=stops)
    for a, b in zip(arrays(base), arrays(split), strict=True):
        np.testing.assert_array_equal(a, b)
    assert split.gpu_seconds() == np.float64(base.gpu_seconds()) or np.isclose(
        split.gpu_seconds(), base.gpu_seconds(), rtol=1e-9
    )
    assert np.isclose(split.mem_gb_seconds(), base.mem_gb_seconds(), rtol=1e-9)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.floats(0.0, 120.0, allow_nan=False), min_size=1, max_size=400),
    st.lists(st.floats(0.0, 100.0), min_size=1, max_size=6),
)
def test_percentiles_are_numpys_inverted_cdf(values, qs):
    """``metrics.percentiles`` (one partition) gives exactly numpy's ``inverted_cdf``
    percentiles, ties and repeated values included; NaN for no values or a NaN among them."""
    from envs.sim.metrics import percentiles

    lat = np.round(np.array(values), 1)  # (rounded: many ties)
    want = [float(x) for x in np.percentile(lat, qs, method="inverted_cdf")]
    assert percentiles(lat, qs) == want
    assert all(math.isnan(x) for x in percentiles(np.zeros(0), qs))
    assert all(math.isnan(x) for x in percentiles(np.append(lat, np.nan), qs))
