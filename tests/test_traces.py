"""Trace loading (every layout, every bad input) and trace replay arithmetic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from envs.workloads import (
    Trace,
    TraceFormatError,
    TraceWorkload,
    function_to_model,
    load_trace,
    shipped_trace_path,
    split_windows,
)
from envs.workloads.trace_io import TraceOrderWarning, _load_cached

DATA = Path(__file__).parent / "data"


def d(name: str) -> str:
    return str(DATA / name)


# ------------------------------------------------------------------------- shipped traces ----
def test_shipped_azure2019_day() -> None:
    path = shipped_trace_path("azure2019")
    assert path.name == "azure2019_day_1350fn_inv.csv.gz" and path.stat().st_size < 1_000_000
    tr = load_trace("azure2019")
    assert tr.layout == "azure2019_vhive" and tr.is_binned
    assert tr.n_functions == 1350 and tr.total_requests == 927_272
    assert tr.counts.shape == (1350, 1440) and tr.duration_s == 86400.0 and tr.origin_s == 0.0
    assert np.median(tr.function_totals()) == 37.5  # README fact
    assert load_trace(path) is tr  # cached
    with pytest.raises(ValueError, match=r"read-only"):
        tr.counts[0, 0] = 1


def test_full_day_load_and_generate_is_exact() -> None:
    """The whole shipped day, loaded afresh and generated: every request, dealt by popularity.
    (How fast: ``python -m benchmarks.sim_throughput``; no wall-clock threshold here, it failed
    CI on a loaded machine.)"""
    _load_cached.cache_clear()
    tr = load_trace("azure2019")
    gen = TraceWorkload(tr)
    w = gen(np.random.default_rng(0), 10, 86400.0)
    assert w.n_requests == 927_272
    model = function_to_model(tr, 10, "popularity")
    expected = np.bincount(model, weights=tr.function_totals(), minlength=10)
    np.testing.assert_array_equal(w.counts(), expected)
    assert np.all(np.diff(w.counts()) <= 0)  # popularity: model load non-increasing


def test_shipped_llm_trace() -> None:
    tr = load_trace("azure_llm_2023")
    assert tr.layout == "azure_llm_2023" and tr.total_requests == 19_366 and tr.n_functions == 1
    assert tr.times_s[0] == 0.0 and tr.duration_s == 3502.0 and tr.was_sorted
    assert tr.origin_s == pytest.approx(18 * 3600 + 15 * 60 + 46.68059)
    w = TraceWorkload(tr)(np.random.default_rng(0), 4, 3502.0)
    assert w.counts().tolist() == [19_366, 0, 0, 0]  # one stream -> model 0
    spread = TraceWorkload(tr, mapping="per_request", request_zipf_s=0.0)
    w2 = spread(np.random.default_rng(0), 4, 3502.0)
    assert w2.n_requests == 19_366 and np.all(w2.counts() > 4000)
    np.testing.assert_array_equal(np.sort(np.concatenate(w2.arrivals_s)), tr.times_s)


def test_shipped_azure2021_sample() -> None:
    """The Azure Functions 2021 sample (199 invocations, 31 functions, 20 minutes: vHive's
    example file, envs/data/README.md): start times are end - duration, re-based to 0."""
    _load_cached.cache_clear()
    with pytest.warns(TraceOrderWarning, match="83 of 199"):  # sorted by end, not by start
        tr = load_trace(shipped_trace_path("azure2021_sample"))
    assert tr.layout == "azure2021" and tr.total_requests == 199 and tr.n_functions == 31
    assert tr.times_s[0] == 0.0 and np.all(np.diff(tr.times_s) >= 0)
    assert tr.duration_s == 1201.0
    assert sorted(tr.function_totals().tolist())[-2:] == [32, 32]


def test_shipped_trace_path_unknown_name() -> None:
    names = r"\['azure2019', 'azure2021_sample', 'azure_llm_2023'\]"
    with pytest.raises(ValueError, match=r"shipped traces: " + names):
        shipped_trace_path("azure2020")


# ------------------------------------------------------------------------------- layouts ----
def test_vhive_small_cut() -> None:
    tr = load_trace(d("azure2019_vhive_small.csv"))
    assert tr.layout == "azure2019_vhive" and tr.counts.shape == (4, 10)
    assert tr.function_totals().tolist() == [4, 5, 1, 2] and tr.duration_s == 600.0
    assert tr.counts[0].tolist() == [1, 0, 0, 1, 0, 0, 1, 0, 0, 1]
    assert tr.function_ids[0].startswith("1779fd33")  # HashFunction, the first column


def test_original_layout_with_trigger_and_minutes_480() -> None:
    tr = load_trace(d("azure2019_original_480.csv"))
    assert tr.layout == "azure2019" and tr.counts.shape == (3, 10)
    assert tr.function_totals().tolist() == [3, 3, 2] and tr.total_requests == 8
    assert tr.duration_s == 600.0 and tr.origin_s == 479 * 60.0
    assert tr.function_ids[0].startswith("1779fd3337dd353eapp/1779fd3337dd353e")
    by_app = load_trace(d("azure2019_original_480.csv"), model_col="HashApp")
    assert by_app.n_functions == 3 and by_app.total_requests == 8
    with pytest.raises(TraceFormatError, match=r"model_col='480' must be one of the id columns"):
        load_trace(d("azure2019_original_480.csv"), model_col="480")


def test_azure2021_start_times() -> None:
    tr = load_trace(d("azure2021_20.csv"))
    assert tr.layout == "azure2021" and tr.total_requests == 20 and tr.n_functions == 10
    rows = np.genfromtxt(
        d("azure2021_20.csv"), delimiter=",", names=True, dtype=None, encoding="utf-8"
    )
    start = rows["end_timestamp"] - rows["duration"]
    np.testing.assert_allclose(tr.times_s, np.sort(start) - start.min())
    assert tr.origin_s == pytest.approx(start.min())
    assert tr.duration_s == 1140.0  # last start 1139.9995 s after the first, rounded up
    gz = load_trace(d("azure2021_20.csv.gz"))
    np.testing.assert_array_equal(gz.times_s, tr.times_s)
    assert gz.function_ids == tr.function_ids
    assert "/" in tr.function_ids[0]  # app/func


def test_llm_timestamps_are_relative_seconds() -> None:
    tr = load_trace(d("azure_llm_50.csv"))
    assert tr.total_requests == 50 and tr.function_ids == ("all",)
    assert tr.times_s[0] == 0.0
    assert tr.times_s[1] == pytest.approx(50.9951690 - 46.6805900, abs=1e-9)
    assert tr.times_s[2] == pytest.approx(51.2224670 - 46.6805900, abs=1e-9)
    assert np.all(np.diff(tr.times_s) >= 0) and tr.duration_s == np.floor(tr.times_s[-1]) + 1


def test_generic_time_and_model_columns() -> None:
    tr = load_trace(d("generic_t_model.csv"), time_col="t", model_col="model")
    assert tr.layout == "timestamps" and tr.function_ids == ("resnet", "bert", "llama")
    np.testing.assert_allclose(tr.times_s, [0.0, 0.75, 1.5, 2.0, 7.25, 8.5])
    assert tr.function_index.tolist() == [0, 1, 0, 2, 1, 0] and tr.origin_s == 0.5
    assert tr.duration_s == 9.0
    w = TraceWorkload(tr, mapping="round_robin")(np.random.default_rng(0), 2, 9.0)
    np.testing.assert_allclose(w.arrivals_s[0], [0.0, 1.5, 2.0, 8.5])  # resnet + llama
    np.testing.assert_allclose(w.arrivals_s[1], [0.75, 7.25])  # bert
    single = load_trace(d("generic_t_model.csv"), time_col="t")
    assert single.function_ids == ("all",) and single.n_functions == 1


def test_datetimes_with_offsets_and_out_of_order_are_sorted_and_flagged() -> None:
    tr = load_trace(d("generic_datetime_tz.csv"), time_col="when", model_col="service")
    assert not tr.was_sorted
    np.testing.assert_allclose(tr.times_s, [0.0, 1.0, 1.5, 30.0])  # 01:00+01:00 is 00:00Z
    assert tr.function_index.tolist() == [0, 0, 1, 0] and tr.origin_s == 0.0


def test_out_of_order_numeric_sorted_or_rejected() -> None:
    tr = load_trace(d("out_of_order.csv"), time_col="t", model_col="model")
    assert not tr.was_sorted
    np.testing.assert_allclose(tr.times_s, [0.0, 0.5, 1.5, 2.5])
    assert [tr.function_ids[i] for i in tr.function_index] == ["a", "a", "b", "b"]
    with pytest.raises(
        TraceFormatError, match=r"out_of_order\.csv: row 3 \(line 4\).*strict_order"
    ):
        load_trace(d("out_of_order.csv"), time_col="t", strict_order=True)


# ----------------------------------------------------------------------------- bad input ----
@pytest.mark.parametrize(
    ("name", "kwargs", "fragments"),
    [
        (
            "bad_negative_count.csv",
            {},
            ["row 2 (line 3)", "column 'minute_2'", "negative count -2"],
        ),
        ("bad_nonnumeric_count.csv", {}, ["row 3 (line 4)", "column 'minute_2'", "'x7'"]),
        (
            "bad_fractional_count.csv",
            {},
            ["row 1 (line 2)", "column '481'", "'2.5' is not an integer"],
        ),
        (
            "bad_unknown_layout.csv",
            {},
            [
                "unknown trace layout",
                "columns found: ['user', 'item', 'rating']",
                "azure2019_vhive",
                "azure2021",
                "azure_llm_2023",
                "time_col=",
            ],
        ),
        ("bad_header_only.csv", {}, ["empty trace (header only, no rows)"]),
        ("bad_empty_file.csv", {}, ["empty trace file"]),
        ("bad_zero_invocations.csv", {}, ["empty trace (zero invocations in 2 rows)"]),
        (
            "bad_minute_gap.csv",
            {},
            ["minute columns must be consecutive", "'minute_3' follows minute 1"],
        ),
        ("bad_short_row.csv", {}, ["row 2 (line 3) has 1 minute values", "2 minute columns"]),
        (
            "bad_llm_timestamp.csv",
            {},
            ["row 2 (line 3)", "column 'TIMESTAMP'", "'2023-11-16 25:17:03.1'"],
        ),
        (
            "generic_t_model.csv",
            {"time_col": "time"},
            ["time_col='time' is not a column", "['t', 'model']"],
        ),
        (
            "generic_t_model.csv",
            {"time_col": "t", "model_col": "m"},
            ["model_col='m' is not a column", "['t', 'model']"],
        ),
        (
            "generic_t_model.csv",
            {"time_col": "model"},
            ["row 1 (line 2)", "column 'model'", "'resnet'"],
        ),
        ("azure2021_20.csv", {"time_col": "duration", "model_col": "app"}, []),
    ],
)
def test_bad_inputs_name_file_row_and_column(name: str, kwargs: dict, fragments: list[str]) -> None:
    if not fragments:  # a valid use of the generic layout on a 2021 file: no error
        assert load_trace(d(name), **kwargs).layout == "timestamps"
        return
    with pytest.raises(TraceFormatError) as exc:
        load_trace(d(name), **kwargs)
    msg = str(exc.value)
    assert name in msg
    for frag in fragments:
        assert frag in msg


def test_missing_file() -> None:
    with pytest.raises(FileNotFoundError, match=r"trace file not found: '.*no_such_trace\.csv'"):
        load_trace(d("no_such_trace.csv"))
    with pytest.raises(FileNotFoundError, match="no_such_trace"):
        TraceWorkload(d("no_such_trace.csv"))


def test_trace_format_error_is_value_error() -> None:
    assert issubclass(TraceFormatError, ValueError)


# -------------------------------------------------------------------- windows and replay ----
def test_two_minute_known_answer_time_scale() -> None:
    tr = load_trace(d("vhive_two_minutes.csv"))
    real = TraceWorkload(tr)(np.random.default_rng(0), 1, 120.0)
    assert real.n_requests == 8 and np.sum(real.arrivals_s[0] < 60.0) == 3
    fast = TraceWorkload(tr, time_scale=2.0)(np.random.default_rng(0), 1, 60.0)
    assert fast.n_requests == 8 and np.sum(fast.arrivals_s[0] < 30.0) == 3
    eq = TraceWorkload(tr, subminute="equidistant")(np.random.default_rng(0), 1, 120.0)
    np.testing.assert_allclose(eq.arrivals_s[0], [10, 30, 50, 66, 78, 90, 102, 114])
    slow = TraceWorkload(tr, time_scale=0.5, subminute="equidistant")(
        np.random.default_rng(1), 1, 240.0
    )
    np.testing.assert_allclose(slow.arrivals_s[0], 2 * eq.arrivals_s[0])


def test_window_inside_minutes() -> None:
    tr = load_trace(d("vhive_two_minutes.csv"))
    eq = TraceWorkload(tr, subminute="equidistant")(np.random.default_rng(0), 1, 60.0, start_s=30.0)
    np.testing.assert_allclose(eq.arrivals_s[0], [0.0, 20.0, 36.0, 48.0])  # trace 30, 50, 66, 78
    gen = TraceWorkload(tr)
    n = [gen(np.random.default_rng(s), 1, 60.0, start_s=30.0).n_requests for s in range(400)]
    assert abs(np.mean(n) - 4.0) < 0.2  # 3/2 + 5/2 expected


def test_window_beyond_trace_is_an_error_not_a_clip() -> None:
    gen = TraceWorkload(load_trace(d("vhive_two_minutes.csv")), time_scale=2.0)
    with pytest.raises(ValueError) as exc:
        gen(np.random.default_rng(0), 1, 60.0, start_s=30.0)
    msg = str(exc.value)
    assert "start_s=30.0" in msg and "60.0 * 2.0 = 150.0" in msg and "[0, 120.0]" in msg
    assert "vhive_two_minutes.csv" in msg
    with pytest.raises(ValueError, match="start_s=-1"):
        gen(np.random.default_rng(0), 1, 10.0, start_s=-1)


def test_determinism_and_seed_dependence() -> None:
    gen = TraceWorkload("azure2019")
    a = gen(np.random.default_rng(3), 5, 600.0, start_s=3600.0)
    b = gen(np.random.default_rng(3), 5, 600.0, start_s=3600.0)
    c = gen(np.random.default_rng(4), 5, 600.0, start_s=3600.0)
    assert all(np.array_equal(x, y) for x, y in zip(a.arrivals_s, b.arrivals_s, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a.arrivals_s, c.arrivals_s, strict=True))
    np.testing.assert_array_equal(a.counts(), c.counts())  # same minutes, same mapping
    tr = load_trace("azure2019")
    assert a.n_requests == int(tr.counts[:, 60:70].sum())
    eq = TraceWorkload(tr, subminute="equidistant")
    x, y = eq(np.random.default_rng(1), 5, 600.0), eq(np.random.default_rng(2), 5, 600.0)
    assert all(np.array_equal(p, q) for p, q in zip(x.arrivals_s, y.arrivals_s, strict=True))


def test_mappings_are_stable_rules() -> None:
    tr = load_trace("azure2019")
    pop = function_to_model(tr, 7, "popularity")
    top = np.argsort(-tr.function_totals(), kind="stable")[:7]
    assert pop[top].tolist() == list(range(7))
    h0, h0b = function_to_model(tr, 7, "hash", 0), function_to_model(tr, 7, "hash", 0)
    h1 = function_to_model(tr, 7, "hash", 1)
    np.testing.assert_array_equal(h0, h0b)
    assert not np.array_equal(h0, h1) and set(h0.tolist()) == set(range(7))
    np.testing.assert_array_equal(function_to_model(tr, 7, "round_robin"), np.arange(1350) % 7)
    gen = TraceWorkload(tr, mapping="hash", mapping_seed=5)
    assert np.array_equal(gen.model_map(7), function_to_model(tr, 7, "hash", 5))
    with pytest.raises(ValueError, match="mapping_seed only applies to mapping='hash' or 'sample'"):
        TraceWorkload(tr, mapping_seed=3)


def test_trace_workload_argument_validation() -> None:
    tr = load_trace(d("vhive_two_minutes.csv"))
    with pytest.raises(ValueError, match="time_scale must be a finite number > 0, got 0"):
        TraceWorkload(tr, time_scale=0)
    with pytest.raises(
        ValueError, match=r"subminute must be one of \('uniform', 'poisson', 'equidistant'\)"
    ):
        TraceWorkload(tr, subminute="gaussian")
    with pytest.raises(ValueError, match="apply only when loading a path"):
        TraceWorkload(tr, time_col="t")


def test_split_windows_hold_out_the_end() -> None:
    train, held = split_windows(86400.0, 3600.0, 0.25)
    assert len(train) == 18 and len(held) == 6
    assert max(train) + 3600.0 <= min(held) and min(held) == 64800.0
    assert split_windows(1000.0, 300.0, 0.0) == ([0.0, 300.0, 600.0], [])
    assert split_windows(1000.0, 300.0, 0.1) == ([0.0, 300.0], [600.0])  # ceil(0.3) = 1
    tr = load_trace("azure2019")
    assert tr.windows(3600.0, 0.25) == (train, held)
    gen = TraceWorkload(tr, time_scale=4.0)
    tr_starts, ho_starts = gen.windows(900.0, 0.25)  # 900 simulated s = 3600 trace s
    assert (tr_starts, ho_starts) == (train, held)
    gen(np.random.default_rng(0), 3, 900.0, start_s=ho_starts[-1])  # the last window fits
    with pytest.raises(ValueError, match=r"held_out_fraction must be in \[0, 1\), got 1.0"):
        split_windows(100.0, 10.0, 1.0)
    with pytest.raises(ValueError, match="window_s must be in"):
        split_windows(100.0, 200.0, 0.1)
    with pytest.raises(ValueError, match="leaves no training window"):
        split_windows(100.0, 60.0, 0.5)


def test_trace_repr_and_function_times() -> None:
    tr = load_trace(d("generic_t_model.csv"), time_col="t", model_col="model")
    assert isinstance(tr, Trace) and "layout='timestamps'" in repr(tr)
    np.testing.assert_allclose(tr.function_times(1), [0.75, 7.25])
    with pytest.raises(ValueError, match="per-minute counts"):
        load_trace(d("vhive_two_minutes.csv")).function_times(0)


def test_sample_mapping_gives_each_model_one_eligible_function():
    from envs.workloads.traces import TraceWorkload, function_to_model, load_trace

    trace = load_trace("azure2019")
    totals = trace.function_totals()
    fmap = function_to_model(trace, 18, "sample", mapping_seed=0, min_requests=24)
    chosen = np.flatnonzero(fmap >= 0)
    assert sorted(fmap[chosen].tolist()) == list(range(18))
    assert (totals[chosen] >= 24).all()
    # Model 0 gets the busiest drawn function.
    assert totals[chosen[fmap[chosen] == 0][0]] == totals[chosen].max()
    # The draw is fixed by mapping_seed, not by the episode rng.
    gen = TraceWorkload(trace, mapping="sample", min_requests=24)
    a = gen(np.random.default_rng(1), 18, 86400.0)
    assert a.n_requests == int(totals[chosen].sum())
    other = function_to_model(trace, 18, "sample", mapping_seed=1, min_requests=24)
    assert not np.array_equal(other, fmap)
    with pytest.raises(ValueError, match="min_requests"):
        function_to_model(trace, 18, "sample", min_requests=10**9)
