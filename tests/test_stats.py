"""Known answers of the rliable-style estimators in agents.stats, on synthetic scores."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from agents import stats

finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
matrices = arrays(float, st.tuples(st.integers(1, 6), st.integers(1, 8)), elements=finite)


def test_exceeds_is_strict_beyond_float_noise_on_numbers_and_arrays():
    assert stats.exceeds(2.0, 1.0) and not stats.exceeds(1.0, 2.0) and not stats.exceeds(1.0, 1.0)
    assert not stats.exceeds(9.294531742481013, 9.294531742480785)  # one class, two sums
    assert stats.exceeds(9.2945327, 9.2945317)  # a microsecond is a real difference
    assert not stats.exceeds(1e-12, 0.0)  # near 0 the tolerance is absolute (1e-9)
    got = stats.exceeds(np.array([1.0, 1.0 + 1e-12, 1.1]), 1.0)
    assert got.tolist() == [False, False, True]


def test_iqm_of_1_to_8_is_the_mean_of_3_to_6():
    assert stats.iqm(np.arange(1, 9)) == pytest.approx(np.mean([3, 4, 5, 6]))
    # pooled over the whole matrix, whatever its shape
    assert stats.iqm(np.arange(1, 9).reshape(2, 4)) == pytest.approx(4.5)
    assert stats.iqm([[7.0]]) == 7.0


@settings(max_examples=60, deadline=None)
@given(matrices)
def test_iqm_equals_scipy_trim_mean(a):
    want = scipy.stats.trim_mean(a, 0.25, axis=None)
    assert stats.iqm(a) == pytest.approx(want, rel=1e-9, abs=1e-9)


def test_iqm_ignores_outliers_unlike_the_mean():
    a = np.array([1.0, 2, 3, 4, 5, 6, 7, 1e9])
    assert stats.iqm(a) == pytest.approx(4.5)


def test_probability_of_improvement_known_answers():
    x = np.array([[10.0, 11, 12], [13, 14, 15]])
    y = np.array([[0.0, 1, 2]])
    assert stats.probability_of_improvement(x, y) == 1.0
    assert stats.probability_of_improvement(y, x) == 0.0
    assert stats.probability_of_improvement(x, x) == 0.5  # ties count 1/2
    # one task, x = {1, 3}, y = {2}: one win, one loss
    assert stats.probability_of_improvement([[1.0], [3.0]], [[2.0]]) == 0.5
    # Mann-Whitney: P = U / (n_x n_y) on a single task
    rng = np.random.default_rng(1)
    a, b = rng.normal(0.3, 1, 40), rng.normal(0, 1, 30)
    u = scipy.stats.mannwhitneyu(a, b).statistic
    assert stats.probability_of_improvement(a[:, None], b[:, None]) == pytest.approx(u / 1200)


@settings(max_examples=60, deadline=None)
@given(matrices, st.integers(1, 4), st.integers(0, 2**31 - 1))
def test_probability_of_improvement_is_antisymmetric(x, ny, seed):
    y = np.random.default_rng(seed).normal(size=(ny, x.shape[1])) * 1e3
    p, q = stats.probability_of_improvement(x, y), stats.probability_of_improvement(y, x)
    assert 0 <= p <= 1 and p + q == pytest.approx(1.0)


def test_identical_distributions_give_one_half():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(60, 5)), rng.normal(size=(60, 5))
    p, (lo, hi) = stats.probability_of_improvement_interval(x, y, reps=2000)
    assert abs(p - 0.5) < 0.05 and lo < 0.5 < hi


def test_interval_covers_the_true_iqm_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    hits = 0
    for i in range(40):  # IQM of a symmetric distribution centred at 0 is 0
        point, (lo, hi) = stats.iqm_interval(rng.normal(size=(20, 10)), reps=1000, seed=i)
        assert lo <= point <= hi
        hits += lo < 0.0 < hi
    assert 34 <= hits <= 40  # binomial(40, 0.95): P(hits < 34) < 1%


def test_interval_shrinks_with_more_samples():
    rng = np.random.default_rng(0)
    widths = []
    for runs in (10, 100, 1000):
        _, (lo, hi) = stats.iqm_interval(rng.normal(size=(runs, 10)), reps=2000, seed=1)
        widths.append(hi - lo)
    assert widths[0] > widths[1] > widths[2]
    assert widths[2] < 0.15 * widths[0]  # about 1/sqrt(100) of the first


def test_stratified_interval_agrees_with_scipy_bootstrap():
    """Stratified = each task's runs resampled independently = scipy's multi-sample bootstrap."""
    rng = np.random.default_rng(3)
    a = rng.normal(loc=np.arange(4), size=(30, 4))

    def iqm_of_samples(*cols, axis=-1):
        return scipy.stats.trim_mean(np.concatenate(cols, axis=axis), 0.25, axis=axis)

    ref = scipy.stats.bootstrap(
        tuple(a.T), iqm_of_samples, n_resamples=20000, method="percentile",
        random_state=np.random.default_rng(0), vectorized=True,
    )  # fmt: skip
    _, (lo, hi) = stats.iqm_interval(a, reps=20000, seed=0)
    width = ref.confidence_interval.high - ref.confidence_interval.low
    assert lo == pytest.approx(ref.confidence_interval.low, abs=0.05 * width)
    assert hi == pytest.approx(ref.confidence_interval.high, abs=0.05 * width)


def test_schemes_on_one_run():
    a = np.arange(20.0)[None]  # a deterministic heuristic: one run, 20 windows
    assert stats.iqm_interval(a, scheme="stratified", reps=500)[1] == (9.5, 9.5)
    _, (lo, hi) = stats.iqm_interval(a, scheme="hierarchical", reps=2000)
    assert lo < 9.5 < hi  # the plain bootstrap over windows
    # equal to scipy's one-sample percentile bootstrap over windows, up to Monte Carlo error
    ref = scipy.stats.bootstrap(
        (a[0],), lambda x, axis=-1: scipy.stats.trim_mean(x, 0.25, axis=axis),
        n_resamples=20000, method="percentile", random_state=np.random.default_rng(0),
    ).confidence_interval  # fmt: skip
    assert lo == pytest.approx(ref.low, abs=0.5) and hi == pytest.approx(ref.high, abs=0.5)


def test_hierarchical_is_wider_when_windows_differ():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, 20)) * 0.1 + np.linspace(-10, 0, 20)  # windows dominate
    s = stats.iqm_interval(a, scheme="stratified", reps=2000)[1]
    h = stats.iqm_interval(a, scheme="hierarchical", reps=2000)[1]
    assert (h[1] - h[0]) > 10 * (s[1] - s[0])


def test_determinism_per_seed():
    a = np.random.default_rng(0).normal(size=(5, 20))
    y = a[:1] + 0.1
    for scheme in stats.SCHEMES:
        assert stats.iqm_interval(a, scheme=scheme, seed=7) == stats.iqm_interval(
            a, scheme=scheme, seed=7
        )
        assert stats.iqm_interval(a, scheme=scheme, seed=7) != stats.iqm_interval(
            a, scheme=scheme, seed=8
        )
        p1 = stats.probability_of_improvement_interval(a, y, scheme=scheme, seed=3)
        assert p1 == stats.probability_of_improvement_interval(a, y, scheme=scheme, seed=3)


def test_performance_profile():
    a = np.array([[1.0, 2, 3, 4]])
    np.testing.assert_allclose(stats.performance_profile(a, [0, 1, 2.5, 4]), [1, 0.75, 0.5, 0])
    prof, lo, hi = stats.performance_profile_interval(
        np.random.default_rng(0).normal(size=(50, 4)), np.linspace(-3, 3, 13), reps=1000
    )
    assert np.all(np.diff(prof) <= 0) and np.all(lo <= prof + 1e-12) and np.all(prof <= hi + 1e-12)
    assert lo[0] > 0.95 and hi[-1] < 0.05


def test_bad_input_names_the_problem():
    with pytest.raises(ValueError, match="non-empty"):
        stats.iqm(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="non-finite"):
        stats.iqm([1.0, np.nan])
    with pytest.raises(ValueError, match="same tasks"):
        stats.probability_of_improvement(np.zeros((2, 3)), np.zeros((1, 4)))
    with pytest.raises(ValueError, match="scheme"):
        stats.iqm_interval([1.0, 2.0], scheme="paired")
    with pytest.raises(ValueError, match="reps"):
        stats.iqm_interval([1.0, 2.0], reps=0)


def test_paired_gain_known_answer_and_bad_input():
    g = stats.paired_gain([[1, 4], [3, 0]], [2, 1])  # per window: mean 2 vs 2, 2 vs 1
    assert g == {"mean": 0.5, "min": 0.0, "max": 1.0, "tasks_better": 1, "tasks": 2,
                 "run_means": [2.5, 1.5], "y_mean": 1.5}  # fmt: skip
    with pytest.raises(ValueError, match="same tasks: 2 vs 3"):
        stats.paired_gain([[1, 2]], [1, 2, 3])


# ---------------------------------------------------------------- p99 excess (tail_margin) ----
def _windows(rng, n_windows=12, n=300, scale=1.0):
    return [rng.exponential(scale, n) for _ in range(n_windows)]


def test_percentile_excess_of_the_same_play_is_zero():
    ref = _windows(np.random.default_rng(0))
    point, (lo, hi) = stats.percentile_excess_interval([ref, ref, ref], ref, reps=200)
    assert point == pytest.approx(0.0, abs=1e-12)  # (a mean over seeds: rounding only)
    assert lo == pytest.approx(0.0, abs=1e-12) and hi == pytest.approx(0.0, abs=1e-12)


def test_percentile_excess_of_a_shifted_tail_is_the_shift_whatever_the_draw():
    # Every latency c later: every pooled percentile moves by c, in every bootstrap draw.
    ref = _windows(np.random.default_rng(1))
    point, (lo, hi) = stats.percentile_excess_interval(
        [[w + 2.0 for w in ref], [w + 4.0 for w in ref]], ref, 99.0, reps=300
    )
    assert point == pytest.approx(3.0) and lo >= 2.0 - 1e-9 and hi <= 4.0 + 1e-9
    assert lo < hi  # the seeds differ: resampling them moves the mean


def test_percentile_excess_point_is_what_the_study_reports():
    # The study's agent p99: each seed's over its windows pooled, averaged over seeds (the
    # evaluation's empirical quantile); minus the reference's over the same windows pooled.
    from envs.sim.metrics import percentiles

    rng = np.random.default_rng(2)
    ref = _windows(rng, n_windows=7, n=101)
    agent = [_windows(rng, n_windows=7, n=97, scale=1.5) for _ in range(3)]
    want = np.mean([percentiles(np.concatenate(s), (99,))[0] for s in agent])
    want -= percentiles(np.concatenate(ref), (99,))[0]
    point, (lo, hi) = stats.percentile_excess_interval(agent, ref, reps=400, seed=5)
    assert point == pytest.approx(want, rel=1e-12)
    assert lo <= point <= hi
    assert stats.percentile_excess_interval(agent, ref, reps=400, seed=5) == (point, (lo, hi))


def test_percentile_excess_interval_straddles_zero_for_draws_of_one_distribution():
    rng = np.random.default_rng(3)
    ref = _windows(rng, n_windows=20, n=200)
    agent = [_windows(rng, n_windows=20, n=200) for _ in range(5)]
    _, (lo, hi) = stats.percentile_excess_interval(agent, ref, reps=1000)
    assert lo < 0 < hi
    # ... and lies above zero for a tail that is clearly heavier.
    heavy = [[w * 2.0 for w in s] for s in agent]
    assert stats.percentile_excess_interval(heavy, ref, reps=1000)[1][0] > 0


def test_percentile_excess_bad_input_names_the_problem():
    ref = _windows(np.random.default_rng(4), n_windows=3, n=10)
    with pytest.raises(ValueError, match="agent seed 1 must have the agent's 3 windows, got 2"):
        stats.percentile_excess_interval([ref, ref[:2]], ref)
    with pytest.raises(ValueError, match="reference must have the agent's 3 windows, got 2"):
        stats.percentile_excess_interval([ref], ref[:2])
    with pytest.raises(ValueError, match="reference's windows hold no latency"):
        stats.percentile_excess_interval([ref], [np.array([])] * 3)
    with pytest.raises(ValueError, match="at least one seed"):
        stats.percentile_excess_interval([], ref)
    with pytest.raises(ValueError, match=r"q must be in \(0, 100\]"):
        stats.percentile_excess_interval([ref], ref, q=0)
    with pytest.raises(ValueError, match="reps"):
        stats.percentile_excess_interval([ref], ref, reps=0)


def test_percentile_excess_against_several_references_shares_the_draws():
    rng = np.random.default_rng(6)
    ref_a, ref_b = _windows(rng, n_windows=8, n=150), _windows(rng, n_windows=8, n=150, scale=2)
    agent = [_windows(rng, n_windows=8, n=150, scale=1.3) for _ in range(2)]
    both = stats.percentile_excess_intervals(agent, {"a": ref_a, "b": ref_b}, reps=300, seed=1)
    assert both["a"] == stats.percentile_excess_interval(agent, ref_a, reps=300, seed=1)
    assert both["b"] == stats.percentile_excess_interval(agent, ref_b, reps=300, seed=1)
    assert both["b"][0] < both["a"][0]  # b's tail is heavier: the agent's excess over it smaller
