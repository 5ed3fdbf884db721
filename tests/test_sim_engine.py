"""Event queue order, run_until semantics and determinism, max-min fair link sharing."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import host, make_sim, model, toy_config

from envs.sim.engine import EventQueue, Priority
from envs.sim.links import LinkNetwork


def approx(x):
    return pytest.approx(x, rel=1e-9, abs=1e-12)


# ---------------------------------------------------------------- event queue ---------------
def test_event_queue_orders_by_time_then_priority_then_insertion():
    q = EventQueue()
    q.push(1.0, Priority.TIMER, "t1-timer-a")
    q.push(1.0, Priority.TRANSFER_DONE, "t1-transfer")
    q.push(0.5, Priority.TIMER, "t0.5")
    q.push(1.0, Priority.STAGE_DONE, "t1-stage-a")
    q.push(1.0, Priority.TIMER, "t1-timer-b")
    q.push(1.0, Priority.STAGE_DONE, "t1-stage-b")
    q.push(2.0, Priority.TRANSFER_DONE, "t2")
    assert len(q) == 7 and q.peek_time() == 0.5
    out = [q.pop()[2] for _ in range(len(q))]
    assert out == [
        "t0.5",
        "t1-transfer",
        "t1-stage-a",
        "t1-stage-b",
        "t1-timer-a",
        "t1-timer-b",
        "t2",
    ]
    assert q.peek_time() == math.inf and len(q) == 0


def test_event_queue_never_compares_payloads():
    q = EventQueue()
    q.push(1.0, Priority.TIMER, {"a": 1})
    q.push(1.0, Priority.TIMER, {"b": 2})  # dicts are unorderable: would raise if compared
    assert q.pop() == (1.0, int(Priority.TIMER), {"a": 1})


def test_event_queue_sequence_is_per_instance():
    a, b = EventQueue(), EventQueue()
    for q in (a, b):
        q.push(1.0, Priority.TIMER, "x")
        q.push(1.0, Priority.TIMER, "y")
    assert [a.pop()[2], a.pop()[2]] == [b.pop()[2], b.pop()[2]] == ["x", "y"]
    assert a._heap == b._heap == []


# ---------------------------------------------------------------- run_until -----------------
def _scenario_sim(**features):
    rng = np.random.default_rng(7)
    arrivals = [np.sort(rng.uniform(0, 60, 300)), np.sort(rng.uniform(0, 60, 150))]
    cfg = toy_config(
        hosts=[host(n_gpus=2, cache_gb=3.0), host(n_gpus=1, disk_gb_per_s=3.0, disk_cache_gb=4.0)],
        models=[model("a"), model("b", size=1.0, max_batch=2)],
        **features,
    )
    return make_sim(cfg, *arrivals, duration=60.0)


def _drive(sim, stops):
    """Fixed control actions at fixed times, run_until at every time in ``stops`` in between."""
    actions = {
        0.0: lambda s: (s.scale_up(0), s.scale_up(1, 1)),
        5.0: lambda s: s.scale_up(0),
        12.0: lambda s: s.scale_down(1),
        13.0: lambda s: s.set_target(1, 2),
        25.0: lambda s: s.scale_down(0, 2),
        26.0: lambda s: s.prefetch(0, 1),
        40.0: lambda s: s.set_target(0, 2),
    }
    times = sorted(set(stops) | set(actions) | {80.0})
    for t in times:
        sim.run_until(t)
        if t in actions:
            actions[t](sim)
    return sim


def _arrays(sim):
    return (sim.start_s, sim.finish_s, sim.status, sim.cold_wait_s)


@pytest.mark.parametrize(
    "features",
    [{}, {"keep_alive_s": 3.0}, {"cpu_fallback": True, "request_timeout_s": 4.0}],
    ids=["plain", "keep_alive", "cpu_fallback"],
)
def test_run_until_in_steps_equals_one_call(features):
    coarse = _drive(_scenario_sim(**features), [])
    rng = np.random.default_rng(1)
    fine_stops = list(np.round(np.sort(rng.uniform(0, 80, 60)), 3)) + list(np.arange(0, 80, 0.25))
    fine = _drive(_scenario_sim(**features), fine_stops)
    for a, b in zip(_arrays(coarse), _arrays(fine), strict=True):
        np.testing.assert_array_equal(a, b)
    assert coarse.request_counts() == fine.request_counts()
    assert coarse.gpu_seconds() == approx(fine.gpu_seconds())
    assert coarse.mem_gb_seconds() == approx(fine.mem_gb_seconds())
    assert coarse.cold_starts == fine.cold_starts
    assert coarse.status.size == 450 and (coarse.status != 0).all()


def test_same_inputs_same_results():
    a = _drive(_scenario_sim(keep_alive_s=2.0), [10.0, 30.0])
    b = _drive(_scenario_sim(keep_alive_s=2.0), [10.0, 30.0])
    for x, y in zip(_arrays(a), _arrays(b), strict=True):
        np.testing.assert_array_equal(x, y)
    assert a.cost_usd() == b.cost_usd()


def test_run_until_in_the_past_raises():
    sim = make_sim(toy_config(), [1.0])
    sim.run_until(5.0)
    with pytest.raises(ValueError, match="in the past"):
        sim.run_until(4.999)
    with pytest.raises(ValueError):
        sim.run_until(float("nan"))
    sim.run_until(5.0)  # now itself is allowed
    assert sim.now == 5.0


def test_workload_of_wrong_model_count_is_refused():
    with pytest.raises(ValueError, match="models"):
        make_sim(toy_config(), [0.0], [1.0])


# ---------------------------------------------------------------- links --------------------
def test_capped_transfer_leaves_the_rest_to_the_uncapped_one():
    net = LinkNetwork([10.0], ["l"])
    a = net.start(0.0, [0], 100.0, cap=2.0)
    b = net.start(0.0, [0], 100.0)
    assert a.rate == approx(2.0) and b.rate == approx(8.0)


def test_equal_share_and_bottleneck_elsewhere():
    # x crosses links 0 (10) and 1 (4); y crosses link 0 only: x is held to 4 by link 1,
    # y gets the 6 left on link 0.
    net = LinkNetwork([10.0, 4.0], ["a", "b"])
    x = net.start(0.0, [0, 1], 10.0)
    y = net.start(0.0, [0], 10.0)
    assert x.rate == approx(4.0) and y.rate == approx(6.0)
    # Three on link 0 alone: 10/3 each.
    net2 = LinkNetwork([10.0], ["a"])
    trs = [net2.start(0.0, [0], 1.0) for _ in range(3)]
    assert all(t.rate == approx(10 / 3) for t in trs)


def test_max_min_three_levels():
    # Link 0 (cap 9) shared by p (capped 1), q, r; r also crosses link 1 (cap 2).
    # p = 1, r = 2 (link 1), q = 9 - 1 - 2 = 6.
    net = LinkNetwork([9.0, 2.0], ["a", "b"])
    p = net.start(0.0, [0], 5.0, cap=1.0)
    q = net.start(0.0, [0], 5.0)
    r = net.start(0.0, [0, 1], 5.0)
    assert (p.rate, q.rate, r.rate) == (approx(1.0), approx(6.0), approx(2.0))
    for link in (0, 1):
        assert sum(t.rate for t in net.transfers.values() if link in t.links) <= net.capacity[
            link
        ] * (1 + 1e-12)


def test_finish_time_moves_when_a_second_transfer_starts_and_ends():
    net = LinkNetwork([10.0], ["l"])
    a = net.start(0.0, [0], 10.0)
    assert net.next_completion() == approx(1.0)
    # b (2.5 GB) starts at 0.5: a has 5 GB left, both at 5 GB/s.
    b = net.start(0.5, [0], 2.5)
    assert a.remaining_gb == approx(5.0)
    assert net.next_completion() == approx(1.0)  # b: 2.5 / 5
    assert net.pop_finished(0.9) == []
    done = net.pop_finished(1.0)
    assert done == [b] and b.remaining_gb == 0.0
    # a moved 2.5 GB in [0.5, 1.0]: 2.5 GB left, alone again at 10 GB/s -> ends at 1.25.
    assert a.remaining_gb == approx(2.5) and a.rate == approx(10.0)
    assert net.next_completion() == approx(1.25)
    assert net.pop_finished(1.25) == [a]
    assert net.next_completion() == math.inf
    assert net.gb_moved[0] == approx(12.5)


def test_cancel_speeds_up_the_others():
    net = LinkNetwork([10.0], ["l"])
    a = net.start(0.0, [0], 10.0)
    b = net.start(0.0, [0], 10.0)
    assert net.next_completion() == approx(2.0)
    net.cancel(1.0, b.tid)
    # a: 5 GB left at 10 GB/s.
    assert a.remaining_gb == approx(5.0)
    assert net.next_completion() == approx(1.5)
    net.cancel(1.2, 12345)  # unknown id: no-op
    assert net.next_completion() == approx(1.5)


def test_simultaneous_finish_pops_both_in_start_order():
    net = LinkNetwork([4.0, 4.0], ["a", "b"])
    x = net.start(0.0, [0], 4.0)
    y = net.start(0.0, [1], 4.0)
    assert net.pop_finished(1.0) == [x, y]


def test_network_time_cannot_go_back():
    net = LinkNetwork([1.0], ["l"])
    net.start(1.0, [0], 1.0)
    with pytest.raises(ValueError):
        net.advance(0.5)


def test_add_link():
    net = LinkNetwork([], [])
    i = net.add_link(3.0, "x")
    tr = net.start(0.0, [i], 6.0)
    assert tr.rate == approx(3.0) and net.next_completion() == approx(2.0)
