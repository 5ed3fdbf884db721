"""Known answers for multicast (relayed) and striped loads on toy clusters, and the invariants
with both on. Round numbers of conftest: 2 GB model, NIC 2 GB/s, PCIe 4 GB/s, deserialise
1 GB/s, sandbox 0.5 s + runtime 1 s (a fetch starts at 1.5 s), pipeline chunks 4.

Sequential cold start = 1.5 s + fetch + 0.5 s copy + 2 s deserialisation = fetch + 4 s.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from conftest import host, make_sim, model, time_limit, toy_config
from hypothesis import given, settings
from hypothesis import strategies as st
from test_sim_invariants import (
    DURATION,
    SETTINGS,
    action_lists,
    apply,
    check_final,
    check_step,
    configs,
    make_workload,
)

from envs.sim import CloudStoreSpec, ConfigError, FeatureSpec, Simulator

START = 1.5  # sandbox + runtime: when every fetch below starts
AFTER = 0.5 + 2.0  # copy + deserialisation after the fetch (sequential loads)


def approx(x):
    return pytest.approx(x, rel=1e-9, abs=1e-12)


def burst(n, *, pipelined=False, **features):
    """Host 0 holds the model in memory; hosts 1..n cold-start it from there at t=0."""
    sim = make_sim(
        toy_config(hosts=[host() for _ in range(n + 1)], pipelined=pipelined, **features)
    )
    assert sim.seed_copy(0, 0)
    insts = [sim.scale_up(0, h, "remote_mem") for h in range(1, n + 1)]
    sim.run_until(100.0)
    return sim, [i.ready_s for i in insts]


def assert_clean(sim):
    """Nothing in flight, nothing locked, no multicast left forming."""
    assert not sim.net.transfers and not sim._forming
    assert not sim._out_transfers.any()
    assert not sim.mem_state[:, 2, :].any()  # readers


# ---------------------------------------------------------------------------- multicast ----
def test_unicast_burst_shares_the_holders_nic():
    # 3 loads share host 0's 2 GB/s: each fetch takes 3 x 2 GB / 2 GB/s = 3 s.
    sim, ready = burst(3)
    assert ready == [approx(START + 3.0 + AFTER)] * 3
    assert sim.gb_by_tier["remote_mem"] == 3 * 2.0
    assert_clean(sim)


def test_multicast_chain_sends_once_and_relays_hop_by_hop():
    # One send at the full 2 GB/s (1 s); each relay hop adds one chunk at that rate: 1 s / 4.
    sim, ready = burst(3, multicast=True)
    assert ready == [approx(START + 1.0 + d * 0.25 + AFTER) for d in range(3)]
    assert sim.gb_by_tier["remote_mem"] == 2.0  # the holder sent once
    tx = [sim.net.gb_moved[sim.link_tx[h]] for h in range(4)]
    assert tx == [approx(2.0), approx(2.0), approx(2.0), 0.0]  # host 3 ends the chain
    assert_clean(sim)


def test_multicast_tree_halves_the_rate_of_each_sender_with_two_children():
    # Fanout 2: host 0 feeds hosts 1 and 2 (its NIC shared by two copies: 1 GB/s, 2 s), host 1
    # relays to host 3 one hop later (one chunk: 2 s / 4).
    sim, ready = burst(3, multicast=True, multicast_fanout=2)
    assert ready == [approx(START + 2.0 + AFTER)] * 2 + [approx(START + 2.0 + 0.5 + AFTER)]
    assert sim.net.gb_moved[sim.link_tx[0]] == approx(4.0)
    assert_clean(sim)


def test_pipelined_receivers_stream_into_their_gpus_beside_the_relay():
    # The relay moves 2 GB at 2 GB/s (1 s, hops 0.25 s) while each receiver's own stream
    # through PCIe and the deserialiser takes 2 s: every fetch ends at 1.5 + max(1 + d/4, 2),
    # then the pipeline's fill (fetch 1 s + copy 0.5 s) / 4 chunks.
    _, ready = burst(3, multicast=True, pipelined=True)
    assert ready == [approx(START + 2.0 + 0.375)] * 3
    # A slow deserialiser no longer; a fast one shows the hops: deserialise at 8 GB/s (0.25 s).
    sim = make_sim(
        toy_config(hosts=[host() for _ in range(4)], models=[model(deser=8.0)], pipelined=True,
                   multicast=True)
    )  # fmt: skip
    sim.seed_copy(0, 0)
    insts = [sim.scale_up(0, h, "remote_mem") for h in range(1, 4)]
    sim.run_until(100.0)
    fill = (0.5 + 0.25) / 4  # fetch 1 s is the slowest stage: copy 0.5 s + deserialise 0.25 s
    assert [i.ready_s for i in insts] == [approx(START + 1.0 + d * 0.25 + fill) for d in range(3)]


def test_a_load_whose_fetch_starts_later_does_not_join_the_relay():
    # B's fetch starts at 2.0 while A's (from 1.5) has 1 GB left: they share host 0's NIC as two
    # unicasts (1 GB/s each): A done at 3.0, B then alone: 1 GB at 2 GB/s, done at 3.5.
    sim = make_sim(toy_config(hosts=[host() for _ in range(3)], multicast=True))
    sim.seed_copy(0, 0)
    a = sim.scale_up(0, 1, "remote_mem")
    sim.run_until(0.5)
    b = sim.scale_up(0, 2, "remote_mem")
    sim.run_until(100.0)
    assert (a.ready_s, b.ready_s) == (approx(3.0 + AFTER), approx(3.5 + AFTER))
    assert sim.gb_by_tier["remote_mem"] == 4.0
    assert_clean(sim)


def test_receivers_that_leave_the_relay_speed_up_the_rest():
    # Tree of 3 (host 0's NIC split in two: 1 GB/s). At 2.5 s (1 GB left) two loads are
    # cancelled: the last one alone gets host 0's whole NIC: 1 GB at 2 GB/s, done at 3.0 s.
    sim = make_sim(toy_config(hosts=[host() for _ in range(4)], multicast=True, multicast_fanout=2))
    sim.seed_copy(0, 0)
    insts = [sim.scale_up(0, h, "remote_mem") for h in range(1, 4)]
    sim.run_until(2.5)
    assert sim.scale_down(0, 2) == 2  # the latest started: hosts 3 and 2
    sim.run_until(100.0)
    assert insts[0].ready_s == approx(3.0 + AFTER)
    assert [i.ready_s for i in insts[1:]] == [math.inf, math.inf]
    assert_clean(sim)


def test_cancelling_every_receiver_stops_the_relay():
    sim = make_sim(toy_config(hosts=[host() for _ in range(3)], multicast=True))
    sim.seed_copy(0, 0)
    for h in (1, 2):
        sim.scale_up(0, h, "remote_mem")
    sim.run_until(2.0)
    assert sim.net.transfers
    assert sim.scale_down(0, 2) == 2
    assert_clean(sim)
    sim.run_until(100.0)
    assert sim.gb_by_tier["remote_mem"] == 0.0


def test_multicast_from_cloud_pays_egress_once():
    # Egress 2 GB/s: 3 unicasts share it (3 s); one relayed download takes 1 s. TTFB 0.25 s.
    cloud = CloudStoreSpec(per_stream_gb_per_s=10.0, streams=1, ttfb_s=0.25, egress_gb_per_s=2.0)

    def run(**features):
        sim = make_sim(toy_config(hosts=[host() for _ in range(3)], cloud=cloud, **features))
        insts = [sim.scale_up(0, h, "cloud") for h in range(3)]
        sim.run_until(100.0)
        return sim, [i.ready_s for i in insts]

    sim, ready = run()
    assert ready == [approx(START + 0.25 + 3.0 + AFTER)] * 3
    assert sim.egress_gb == 6.0
    sim, ready = run(multicast=True)
    assert ready == [approx(START + 0.25 + 1.0 + d * 0.25 + AFTER) for d in range(3)]
    assert sim.egress_gb == 2.0 and sim.gb_by_tier["cloud"] == 2.0
    assert sim.hosts_with_copy(0) == [0, 1, 2]  # every receiver kept a copy


def test_two_loads_on_one_host_share_its_node_in_the_relay():
    # Host 1 has two GPUs: one node, its NIC receives once; both land with no relay hop.
    hosts = [host(), host(n_gpus=2)]
    sim = make_sim(toy_config(hosts=hosts, multicast=True))
    sim.seed_copy(0, 0)
    insts = [sim.scale_up(0, 1, "remote_mem") for _ in range(2)]
    sim.run_until(100.0)
    assert [i.ready_s for i in insts] == [approx(START + 1.0 + AFTER)] * 2
    assert sim.net.gb_moved[sim.link_rx[1]] == approx(2.0)


# ----------------------------------------------------------------------------- striping ----
def striped(nics=(2.0, 2.0, 2.0), rx=6.0, pipelined=False, **features):
    """Hosts 0..k-1 hold the model (NICs ``nics``); host k (NIC ``rx``) cold-starts it."""
    hosts = [host(nic_gb_per_s=n) for n in nics] + [host(nic_gb_per_s=rx)]
    sim = make_sim(toy_config(hosts=hosts, pipelined=pipelined, **features))
    for h in range(len(nics)):
        sim.seed_copy(0, h)
    k = len(nics)
    est = sim.estimate_load_s(0, k, "remote_mem")
    inst = sim.scale_up(0, k, "remote_mem")
    sim.run_until(100.0)
    assert_clean(sim)
    return sim, inst.ready_s, est


@pytest.mark.parametrize(
    "nics, rx, features, fetch_s",
    [
        ((2.0, 2.0, 2.0), 6.0, {}, 1.0),  # one holder's 2 GB/s
        ((2.0, 2.0, 2.0), 6.0, {"striping": True}, 1 / 3),  # 3 shards of 2/3 GB at 2 GB/s
        ((2.0, 2.0, 2.0), 6.0, {"striping": True, "stripe_holders": 2}, 0.5),  # 2 x 1 GB
        ((2.0, 2.0, 2.0), 3.0, {"striping": True}, 2 / 3),  # the receiver's 3 GB/s caps the sum
        ((2.0, 2.0, 1.0), 6.0, {"striping": True}, 0.4),  # shards 0.8, 0.8, 0.4 GB at 5 GB/s
        ((4.0, 0.5), 2.0, {"striping": True}, 1.0),  # the receiver's 2 GB/s: 1.5 + 0.5 GB
    ],
)
def test_striped_fetch_reads_disjoint_shards_bounded_by_each_link(nics, rx, features, fetch_s):
    sim, ready, est = striped(nics, rx, **features)
    assert ready == approx(START + fetch_s + AFTER)
    assert est == approx(ready)  # the estimate the placement rules and the env read
    assert sim.gb_by_tier["remote_mem"] == 2.0
    senders = [sim.net.gb_moved[sim.link_tx[h]] for h in range(len(nics))]
    assert sum(senders) == approx(2.0)


def test_pipelined_striped_fetch_matches_the_pipelined_formula():
    # Fetch 2/6 s (3 x 2 GB/s, capped by the 6 GB/s NIC), copy 0.5 s, deserialise 2 s:
    # max 2 s + (1/3 + 0.5) / 4 chunks.
    _, ready, est = striped(striping=True, pipelined=True)
    assert ready == approx(START + 2.0 + (1 / 3 + 0.5) / 4) == est


def test_striped_multicast_feeds_every_shard_down_the_chain():
    # 3 holders at 2 GB/s, 3 receivers at 6 GB/s in a chain: every shard (2/3 GB) moves at
    # 2 GB/s: 1/3 s; each relay hop one chunk of that: 1/12 s.
    hosts = [host(nic_gb_per_s=2.0) for _ in range(3)] + [host(nic_gb_per_s=6.0) for _ in range(3)]
    sim = make_sim(toy_config(hosts=hosts, striping=True, multicast=True))
    for h in range(3):
        sim.seed_copy(0, h)
    insts = [sim.scale_up(0, h, "remote_mem") for h in range(3, 6)]
    sim.run_until(100.0)
    assert [i.ready_s for i in insts] == [approx(START + 1 / 3 + d / 12 + AFTER) for d in range(3)]
    assert sim.gb_by_tier["remote_mem"] == approx(2.0)
    assert_clean(sim)


def test_best_load_and_fastest_placement_see_striping():
    # Host 3 has a free GPU, hosts 0..2 (holders) have none: best_load_s is host 3's striped load.
    hosts = [host(nic_gb_per_s=2.0) for _ in range(3)] + [host(nic_gb_per_s=6.0)]
    sim = make_sim(toy_config(hosts=hosts, striping=True))
    for h in range(3):
        sim.seed_copy(0, h)
        sim.scale_up(0, h, "local_mem")
    assert sim.best_load_s(0) == approx(START + 1 / 3 + AFTER)
    assert sim.choose_host(0, "fastest") == 3


# --------------------------------------------------------------------------- validation ----
@pytest.mark.parametrize(
    "kw, words",
    [
        ({"multicast": "yes"}, ["FeatureSpec.multicast", "a bool", "'yes'"]),
        ({"striping": 1}, ["FeatureSpec.striping", "a bool"]),
        ({"multicast_fanout": 0}, ["FeatureSpec.multicast_fanout", "an integer >= 1", "0"]),
        ({"stripe_holders": 1}, ["FeatureSpec.stripe_holders", ">= 2", "None", "got 1"]),
        ({"striping": True, "remote_pool": False}, ["striping needs remote_pool", "False"]),
    ],
)
def test_bad_multicast_or_striping_settings_are_refused(kw, words):
    with pytest.raises(ConfigError) as e:
        FeatureSpec(**kw)
    for w in words:
        assert w in str(e.value)


def test_both_are_off_by_default():
    f = FeatureSpec()
    assert (f.multicast, f.striping) == (False, False)


def test_the_environment_takes_both_from_the_scenario():
    """Every policy benefits: the techniques are scenario features, no new action."""
    from envs.env import ServerlessGPUEnv

    plain = ServerlessGPUEnv("small", episode_s=60)
    env = ServerlessGPUEnv("small", episode_s=60, features__multicast=True, features__striping=True)
    assert env.action_space == plain.action_space
    env.reset(seed=0)
    f = env.sim.cfg.features
    assert f.multicast and f.striping and f.autostart
    for _ in range(6):
        env.step(env.layout.noop)


# --------------------------------------------------------------------------- invariants ----
def check_links(sim: Simulator) -> None:
    """No link carries more than its capacity (a relay crosses a sender's NIC once per child)."""
    load = np.zeros(len(sim.net.capacity))
    for tr in sim.net.transfers.values():
        assert tr.rate >= 0
        for link in tr.links:
            load[link] += tr.rate
    assert (load <= np.asarray(sim.net.capacity) * (1 + 1e-9) + 1e-12).all()


@st.composite
def relay_scenarios(draw):
    cfg = draw(configs().filter(lambda c: len(c.hosts) == 3))  # a receiver and two holders
    if draw(st.booleans()):  # room for every model in every host's memory
        cfg = cfg.replace(hosts=[dataclasses.replace(h, cache_gb=40.0) for h in cfg.hosts])
    f = cfg.features
    striping = draw(st.booleans())
    pool = striping or f.remote_pool
    features = FeatureSpec(
        **{**{k: getattr(f, k) for k in f.__dataclass_fields__},
           "host_cache": pool or f.host_cache, "remote_pool": pool,
           "multicast": draw(st.booleans()) or not striping,
           "multicast_fanout": draw(st.integers(1, 3)),
           "striping": striping,
           "stripe_holders": draw(st.sampled_from([None, 2])),
           "autostart": draw(st.booleans())},
    )  # fmt: skip
    cfg = cfg.replace(features=features)
    # Copies in several hosts' memory from the start, so that loads have holders to stripe from.
    n_h, n_m = len(cfg.hosts), len(cfg.models)
    seed = st.sampled_from([True, True, False])
    seeds = [(0.0, "seed", m, h, {}) for m in range(n_m) for h in range(n_h) if draw(seed)]
    actions = seeds + draw(action_lists(cfg))
    return cfg, actions, draw(st.integers(0, 2**31 - 1)), draw(st.booleans())


@settings(SETTINGS, max_examples=40)
@given(relay_scenarios())
def test_invariants_hold_with_multicast_and_striping(scenario):
    cfg, actions, seed, grid = scenario
    wl = make_workload(len(cfg.models), seed, grid)
    with time_limit(10.0):
        sim = Simulator(cfg, wl, np.random.default_rng(seed))
        prev = check_step(sim, {})
        for t, *action in actions:
            sim.run_until(t)
            prev = check_step(sim, prev)
            check_links(sim)
            apply(sim, *action)
            prev = check_step(sim, prev)
            check_links(sim)
        sim.run_until(DURATION)
        check_step(sim, prev)
        sim.run_until(DURATION + cfg.features.request_timeout_s + 500.0)
    check_final(sim)
    assert_clean(sim)


@settings(SETTINGS, max_examples=25)
@given(
    n=st.integers(1, 6),
    nic=st.sampled_from([0.5, 1.0, 2.5]),
    size=st.sampled_from([0.5, 2.0, 6.0]),
    chunks=st.integers(1, 16),
    pipelined=st.booleans(),
)
def test_a_chain_is_never_slower_than_unicast_and_its_head_loads_as_if_alone(
    n, nic, size, chunks, pipelined
):
    def run(multicast, receivers):
        cfg = toy_config(
            hosts=[host(nic_gb_per_s=nic) for _ in range(receivers + 1)],
            models=[model(size=size)], pipelined=pipelined, chunks=chunks, multicast=multicast,
        )  # fmt: skip
        sim = make_sim(cfg)
        sim.seed_copy(0, 0)
        est = sim.estimate_load_s(0, 1, "remote_mem")
        insts = [sim.scale_up(0, h, "remote_mem") for h in range(1, receivers + 1)]
        sim.run_until(1e4)
        return [i.ready_s for i in insts], est

    uni, est = run(False, n)
    multi, _ = run(True, n)
    # n sends over the holder's NIC against one plus n - 1 chunk hops (pipelined: either way
    # no sooner than the receiver's own deserialisation).
    assert max(multi) <= max(uni) * (1 + 1e-12)
    assert multi[0] == approx(est)  # the chain's head: one send at the full link rate
    assert multi == sorted(multi)  # receivers further down the chain land later


@settings(SETTINGS, max_examples=25)
@given(
    nics=st.lists(st.sampled_from([0.5, 1.0, 2.0, 4.0]), min_size=1, max_size=4),
    rx=st.sampled_from([1.0, 4.0, 16.0]),
    pipelined=st.booleans(),
)
def test_a_striped_load_alone_takes_its_estimate_and_beats_one_holder(nics, rx, pipelined):
    sim, ready, est = striped(tuple(nics), rx, pipelined, striping=True)
    assert ready == approx(est)
    _, one, _ = striped(tuple(nics), rx, pipelined)
    assert ready <= one * (1 + 1e-12)


def test_a_simulator_pickled_mid_relay_resumes_identically():
    import pickle

    sim = make_sim(toy_config(hosts=[host() for _ in range(4)], multicast=True, striping=False))
    sim.seed_copy(0, 0)
    for h in (1, 2, 3):
        sim.scale_up(0, h, "remote_mem")
    sim.run_until(2.0)  # the relay is half way
    copy = pickle.loads(pickle.dumps(sim))
    for s in (sim, copy):
        s.run_until(100.0)
    ready = [[i.ready_s for i in s.instances[0]] for s in (sim, copy)]
    assert ready[0] == ready[1] == [approx(START + 1.0 + d * 0.25 + AFTER) for d in range(3)]
