"""Synthetic workload generators, the make_workload factory and the generator invariants."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envs.sim.workload import Workload
from envs.workloads import (
    BurstyWorkload,
    ComposeWorkload,
    DiurnalWorkload,
    FlashSpikeWorkload,
    MMPPWorkload,
    PoissonWorkload,
    Popularity,
    TraceWorkload,
    WorkloadGenerator,
    make_workload,
)

GENERATORS = {
    "poisson": PoissonWorkload(20.0, zipf_s=1.0),
    "bursty": BurstyWorkload(20.0, cv=3.0, zipf_s=0.5),
    "mmpp": MMPPWorkload(5.0, 50.0, 60.0, 10.0, zipf_s=1.0),
    "diurnal": DiurnalWorkload(20.0, amplitude=0.8, period_s=600.0, peak_at_s=100.0),
    "flash": FlashSpikeWorkload(5.0, 100.0, 120.0, 10.0, zipf_s=1.0),
    "flash_one": FlashSpikeWorkload(5.0, 100.0, 120.0, 10.0, spike_on_one_model=True),
    "shuffled": PoissonWorkload(20.0, zipf_s=2.0, shuffle_models=True),
    "compose": ComposeWorkload([PoissonWorkload(5.0), BurstyWorkload(5.0, cv=2.0)]),
}


def check_invariants(w: Workload, n_models: int, duration_s: float) -> None:
    assert isinstance(w, Workload)
    assert w.n_models == n_models and w.duration_s == duration_s
    for a in w.arrivals_s:
        assert a.dtype == np.float64 and a.ndim == 1
        if a.size:
            assert a[0] >= 0 and a[-1] < duration_s
            assert np.all(np.diff(a) >= 0)


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_same_seed_same_workload_other_seed_other(name: str) -> None:
    gen = GENERATORS[name]
    assert isinstance(gen, WorkloadGenerator)
    a = gen(np.random.default_rng(7), 4, 600.0)
    b = gen(np.random.default_rng(7), 4, 600.0)
    c = gen(np.random.default_rng(8), 4, 600.0)
    check_invariants(a, 4, 600.0)
    assert all(np.array_equal(x, y) for x, y in zip(a.arrivals_s, b.arrivals_s, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a.arrivals_s, c.arrivals_s, strict=True))
    assert a.source == b.source and a.source


def test_global_random_state_untouched() -> None:
    np_state = np.random.get_state()[1].copy()  # noqa: NPY002 - checking it is left alone
    py_state = random.getstate()
    for gen in GENERATORS.values():
        gen(np.random.default_rng(0), 3, 300.0)
    assert np.array_equal(np.random.get_state()[1], np_state)  # noqa: NPY002
    assert random.getstate() == py_state


def test_poisson_mean_rate_and_zipf_shares() -> None:
    rate, dur, n = 50.0, 2000.0, 5
    w = PoissonWorkload(rate, zipf_s=1.0)(np.random.default_rng(1), n, dur)
    total = w.n_requests
    assert abs(total - rate * dur) < 4 * np.sqrt(rate * dur)  # 4 sigma
    p = Popularity(1.0).weights(n)
    np.testing.assert_allclose(p, (1 / np.arange(1, 6)) / np.sum(1 / np.arange(1, 6)))
    shares = w.counts() / total
    np.testing.assert_allclose(shares, p, atol=0.01)
    # Inter-arrival times of a Poisson stream: CV 1.
    d = np.diff(w.arrivals_s[0])
    assert abs(d.std() / d.mean() - 1.0) < 0.03


def test_popularity_uniform_and_shuffle() -> None:
    np.testing.assert_allclose(Popularity(0.0).weights(4), 0.25)
    a = Popularity(1.5, shuffle=True).weights(6, np.random.default_rng(3))
    b = Popularity(1.5, shuffle=True).weights(6, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(np.sort(a), np.sort(Popularity(1.5).weights(6)))
    with pytest.raises(ValueError, match="needs an rng"):
        Popularity(1.0, shuffle=True).weights(3)


@pytest.mark.parametrize("cv", [0.5, 1.0, 3.0])
def test_bursty_cv_and_rate(cv: float) -> None:
    rate, dur = 40.0, 5000.0
    w = BurstyWorkload(rate, cv=cv)(np.random.default_rng(2), 2, dur)
    for a in w.arrivals_s:
        d = np.diff(a)
        assert abs(d.std() / d.mean() - cv) < 0.05 * cv
        assert abs(a.size / dur - rate / 2) < 0.05 * rate / 2


def test_mmpp_mean_rate_and_overdispersion() -> None:
    gen = MMPPWorkload(2.0, 40.0, mean_low_s=30.0, mean_high_s=10.0)
    dur = 20000.0
    w = gen(np.random.default_rng(4), 1, dur)
    expected = (2.0 * 30.0 + 40.0 * 10.0) / 40.0
    assert abs(w.n_requests / dur - expected) < 0.1 * expected
    per_s = np.bincount(w.arrivals_s[0].astype(np.int64), minlength=int(dur))
    assert per_s.var() / per_s.mean() > 3.0  # a Poisson process would give 1


def test_mmpp_zero_low_rate_is_on_off() -> None:
    w = MMPPWorkload(0.0, 30.0, 50.0, 5.0)(np.random.default_rng(0), 2, 2000.0)
    check_invariants(w, 2, 2000.0)
    assert w.n_requests > 0


def test_diurnal_peak_vs_trough_and_phase() -> None:
    gen = DiurnalWorkload(100.0, amplitude=0.8, period_s=1000.0, peak_at_s=250.0)
    w = gen(np.random.default_rng(5), 2, 1000.0)
    t = np.concatenate(w.arrivals_s)
    peak = np.sum((t >= 200) & (t < 300))
    trough = np.sum((t >= 700) & (t < 800))
    assert 6 < peak / trough < 13  # 1.8 / 0.2 = 9 at the extremes, ~8.6 averaged over 100 s
    assert abs(t.size - 100_000) < 4 * np.sqrt(100_000)
    # start_s is the phase: starting at 500 s puts the peak at simulated 750 s.
    t2 = np.concatenate(gen(np.random.default_rng(5), 2, 1000.0, start_s=500.0).arrivals_s)
    assert np.sum((t2 >= 700) & (t2 < 800)) > 6 * np.sum((t2 >= 200) & (t2 < 300))
    assert gen.rate_at(250.0) == pytest.approx(180.0) and gen.rate_at(750.0) == pytest.approx(20.0)


def test_flash_spikes_add_traffic() -> None:
    gen = FlashSpikeWorkload(10.0, 200.0, spike_every_s=100.0, spike_duration_s=10.0)
    dur = 20000.0
    w = gen(np.random.default_rng(6), 3, dur)
    expected = 10.0 + 200.0 * 10.0 / 100.0
    assert abs(w.n_requests / dur - expected) < 0.1 * expected
    per_s = np.bincount(np.concatenate(w.arrivals_s).astype(np.int64), minlength=int(dur))
    assert np.quantile(per_s, 0.99) > 150  # spike seconds are there
    one = FlashSpikeWorkload(0.0, 200.0, 100.0, 10.0, spike_on_one_model=True)
    w1 = one(np.random.default_rng(6), 3, 1000.0)
    check_invariants(w1, 3, 1000.0)


def test_spike_intervals_clipped_to_window() -> None:
    gen = FlashSpikeWorkload(1.0, 10.0, spike_every_s=5.0, spike_duration_s=3.0)
    s, e = gen.spikes(np.random.default_rng(0), 100.0)
    assert s.size > 5 and np.all(s >= 0) and np.all(e <= 100.0) and np.all(e >= s)


def test_compose_merges_parts() -> None:
    gen = ComposeWorkload([PoissonWorkload(30.0), PoissonWorkload(10.0, zipf_s=3.0)])
    w = gen(np.random.default_rng(9), 3, 1000.0)
    check_invariants(w, 3, 1000.0)
    assert abs(w.n_requests - 40_000) < 4 * np.sqrt(40_000)
    assert "compose(" in w.source and "zipf_s=3.0" in w.source


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: PoissonWorkload(-1.0), "PoissonWorkload.rate_rps must be > 0, got -1.0"),
        (lambda: PoissonWorkload(1.0, zipf_s=-0.5), "zipf_s must be in [0, 100], got -0.5"),
        (lambda: BurstyWorkload(1.0, cv=0.0), "BurstyWorkload.cv must be in (0, 10], got 0.0"),
        (lambda: MMPPWorkload(5.0, 1.0, 1.0, 1.0), "MMPPWorkload.rate_high_rps must be >= 5"),
        (lambda: MMPPWorkload(0.0, 1.0, 0.0, 1.0), "MMPPWorkload.mean_low_s must be > 0, got 0.0"),
        (
            lambda: DiurnalWorkload(1.0, amplitude=1.5),
            "DiurnalWorkload.amplitude must be in [0, 1], got 1.5",
        ),
        (
            lambda: DiurnalWorkload(1.0, period_s=float("nan")),
            "DiurnalWorkload.period_s must be > 0, got nan",
        ),
        (
            lambda: FlashSpikeWorkload(1.0, 0.0, 1.0, 1.0),
            "FlashSpikeWorkload.spike_rate_rps must be > 0",
        ),
        (lambda: PoissonWorkload("5"), "PoissonWorkload.rate_rps must be a number > 0, got '5'"),
        (
            lambda: ComposeWorkload([]),
            "ComposeWorkload.parts must hold at least 1 generator, got 0",
        ),
        (lambda: ComposeWorkload([3]), "ComposeWorkload.parts[0] must be a workload generator"),
    ],
)
def test_parameter_validation_names_field_value_and_range(factory, message: str) -> None:
    with pytest.raises(ValueError) as exc:
        factory()
    assert message in str(exc.value)


def test_call_argument_validation() -> None:
    gen = PoissonWorkload(1.0)
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        gen(np.random.RandomState(0), 2, 10.0)  # noqa: NPY002 - checking the rejection
    with pytest.raises(ValueError, match="n_models must be an integer >= 1, got 0"):
        gen(np.random.default_rng(0), 0, 10.0)
    with pytest.raises(ValueError, match="duration_s must be a finite number > 0, got -5"):
        gen(np.random.default_rng(0), 2, -5)


def test_one_hour_at_300_rps_is_generated_in_full() -> None:
    """An hour at ~300 requests/s from every generator, in order and inside the hour. (Its speed
    is not asserted: a wall-clock threshold fails on a loaded machine.)"""
    for gen in (
        PoissonWorkload(300.0, zipf_s=1.0),
        BurstyWorkload(300.0, cv=2.0, zipf_s=1.0),
        MMPPWorkload(200.0, 400.0, 60.0, 60.0),
        DiurnalWorkload(300.0, amplitude=0.5),
        FlashSpikeWorkload(250.0, 500.0, 600.0, 60.0),
    ):
        w = gen(np.random.default_rng(0), 10, 3600.0)
        assert 300_000 < w.n_requests < 3_000_000, (gen, w.n_requests)
        assert all(np.all(np.diff(a) >= 0) and (len(a) == 0 or a[-1] < 3600.0)
                   for a in w.arrivals_s)


# -------------------------------------------------------------------------------- factory ----
def test_make_workload_builds_every_kind() -> None:
    specs = [
        {"kind": "poisson", "rate_rps": 5, "zipf_s": 1.0},
        {"kind": "bursty", "rate_rps": 4, "cv": 4, "zipf_s": 1.0},
        {
            "kind": "mmpp",
            "rate_low_rps": 1,
            "rate_high_rps": 9,
            "mean_low_s": 60,
            "mean_high_s": 20,
        },
        {"kind": "diurnal", "mean_rate_rps": 3, "amplitude": 0.5},
        {
            "kind": "flash",
            "base_rate_rps": 1,
            "spike_rate_rps": 20,
            "spike_every_s": 60,
            "spike_duration_s": 5,
        },
        {"kind": "trace", "path": "azure2019", "time_scale": 2.0, "subminute": "equidistant"},
        {
            "kind": "compose",
            "parts": [{"kind": "poisson", "rate_rps": 1}, {"kind": "bursty", "rate_rps": 1}],
        },
    ]
    for spec in specs:
        gen = make_workload(spec)
        check_invariants(gen(np.random.default_rng(0), 3, 120.0), 3, 120.0)
    assert make_workload(specs[0]) == PoissonWorkload(5, zipf_s=1.0)
    assert isinstance(make_workload(specs[5]), TraceWorkload)


@pytest.mark.parametrize(
    ("spec", "fragments"),
    [
        (
            {"kind": "poison", "rate_rps": 1},
            ["unknown workload kind 'poison'", "Did you mean 'poisson'?", "'mmpp'"],
        ),
        ({"rate_rps": 1}, ["has no 'kind'", "valid kinds"]),
        (
            {"kind": "poisson", "rate": 1},
            [
                "unknown key 'rate'",
                "valid keys: ['rate_rps', 'zipf_s', 'shuffle_models']",
                "Did you mean 'rate_rps'?",
            ],
        ),
        ({"kind": "bursty", "cv": 2}, ["missing required key(s) ['rate_rps']"]),
        ({"kind": "trace", "path": "azure2019", "mapping": "random"}, ["mapping must be one of"]),
        ({"kind": "trace", "file": "x.csv"}, ["unknown key 'file'", "'path'"]),
        ({"kind": "compose", "parts": {"kind": "poisson"}}, ["parts must be a list of specs"]),
        (
            {"kind": "compose", "parts": [{"kind": "diurnal", "mean_rate_rps": 0}]},
            ["DiurnalWorkload.mean_rate_rps must be > 0, got 0"],
        ),
        ("poisson", ["must be a mapping"]),
    ],
)
def test_make_workload_errors(spec, fragments: list[str]) -> None:
    with pytest.raises(ValueError) as exc:
        make_workload(spec)
    for frag in fragments:
        assert frag in str(exc.value)


# ----------------------------------------------------------------------------- hypothesis ----
_rate = st.floats(0.01, 30.0)
_zipf = st.floats(0.0, 3.0)
_gen = st.one_of(
    st.builds(PoissonWorkload, _rate, _zipf, st.booleans()),
    st.builds(BurstyWorkload, _rate, st.floats(0.05, 10.0), _zipf, st.booleans()),
    st.builds(
        MMPPWorkload,
        st.floats(0.0, 5.0),
        st.floats(5.0, 30.0),
        st.floats(0.5, 100.0),
        st.floats(0.5, 100.0),
        _zipf,
    ),
    st.builds(
        DiurnalWorkload,
        _rate,
        st.floats(0.0, 1.0),
        st.floats(1.0, 1e5),
        st.floats(-1e5, 1e5),
        _zipf,
    ),
    st.builds(
        FlashSpikeWorkload,
        st.floats(0.0, 10.0),
        _rate,
        st.floats(0.5, 500.0),
        st.floats(0.01, 100.0),
        _zipf,
        st.booleans(),
    ),
)


@settings(max_examples=60, deadline=None)
@given(
    gen=st.one_of(_gen, st.lists(_gen, min_size=1, max_size=3).map(ComposeWorkload)),
    seed=st.integers(0, 2**32 - 1),
    n_models=st.integers(1, 12),
    duration_s=st.floats(0.001, 500.0),
    start_s=st.floats(-1e6, 1e6),
)
def test_any_generator_output_satisfies_workload_invariants(
    gen, seed, n_models, duration_s, start_s
) -> None:
    w = gen(np.random.default_rng(seed), n_models, duration_s, start_s)
    check_invariants(w, n_models, duration_s)
    again = gen(np.random.default_rng(seed), n_models, duration_s, start_s)
    assert all(np.array_equal(x, y) for x, y in zip(w.arrivals_s, again.arrivals_s, strict=True))
