"""The incentives of v1's money reward (issue 8, section 2).

Known answers on the toy cluster of conftest (one GPU; a cold start from cloud storage takes
5.25 s, a batch of one 0.1 s, SLO 1 s), then orderings on every preset:

* serving a request late scores better than letting it drop;
* a policy that scales in a model with a queue scores worse than the same policy without that
  sabotage;
* ``random`` and a policy that scales every model to zero every step score below both
  ``hierarchical`` and ``histogram``.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import (
    CLOUD_S,
    DISK,
    env_action,
    exec_s,
    host,
    model,
    toy_config,
    toy_env,
)

import envs
from agents.evaluation import evaluate
from baselines import make_policy
from envs import layout as L
from envs.env import ServerlessGPUEnv
from envs.scenarios import ConfigError, RewardPrices

HOLD = L.CACHE_CHOICES.index("hold")


def two_model_env(timeout_s=10.0, arrivals_a=(1.0,), **kw):
    cfg = toy_config(
        hosts=[host(disk_gb_per_s=DISK, disk_cache_gb=0.0)],
        models=[model("a"), model("b")],
        request_timeout_s=timeout_s,
    )
    return toy_env(cfg, list(arrivals_a), [], **kw)


def play(env, actions_at: dict[tuple[int, int], int]):
    """Play an episode: the no-op except ``actions_at[(interval, model)]``. Returns the final
    info."""
    env.reset(seed=0)
    done, info = False, {}
    while not done:
        a = actions_at.get((env.t, env.focus), env.layout.noop)
        _, _, term, trunc, info = env.step(a)
        done = term or trunc
    return info


# ---------------------------------------------------------------- late beats dropped -------
def test_serving_late_scores_better_than_letting_it_drop_known_answer():
    """One request of model a at t = 1 s, one GPU. Left alone, the platform cold-starts a at
    the arrival and serves it 4.35 s past its SLO. A policy that fills the GPU with model b at
    t = 0 makes the request wait, then drop at the 10 s timeout."""
    p = RewardPrices()
    serve = play(two_model_env(), {})
    env = two_model_env()
    hog = play(env, {(0, 1): env_action(env, delta=1)})
    cs, ch = serve["episode_reward_components"], hog["episode_reward_components"]
    lateness = CLOUD_S + exec_s(1) - 1.0  # 4.35 s past the 1 s SLO
    assert cs["late"] == pytest.approx(p.late_usd + p.late_usd_per_s * lateness, rel=1e-9)
    assert cs["drop"] == 0.0 and serve["requests_dropped"] == 0
    assert ch["late"] == 0.0 and ch["drop"] == pytest.approx(p.drop_usd)
    assert hog["requests_dropped"] == 1
    assert cs["late"] < ch["drop"]
    # GPU time: a from its arrival (59 s), b for the whole minute (60 s).
    assert serve["episode_metrics"]["gpu_seconds"] == pytest.approx(59.0)
    assert hog["episode_metrics"]["gpu_seconds"] == pytest.approx(60.0)
    assert sum(cs.values()) < sum(ch.values())


def test_the_per_interval_reward_is_minus_scale_times_the_components():
    env = two_model_env()
    env.reset(seed=0)
    p = env.scenario.reward
    total = 0.0
    done = False
    while not done:
        _, r, _, trunc, info = env.step(env.layout.noop)
        c = info["reward_components"]
        assert r == pytest.approx(-p.scale * (c["cost"] + c["late"] + c["drop"]), abs=1e-12)
        total += r
        done = trunc
    assert total == pytest.approx(-p.scale * sum(info["episode_reward_components"].values()))


@pytest.mark.parametrize("scenario", sorted(envs.list_presets()))
def test_a_drop_costs_more_than_the_latest_serve_on_every_preset(scenario):
    sc = ServerlessGPUEnv(scenario, episode_s=60).scenario
    p, timeout = sc.reward, sc.sim.features.request_timeout_s
    assert p.late_usd + p.late_usd_per_s * timeout < p.drop_usd


def test_a_scenario_whose_drop_price_is_too_low_is_refused():
    # Default timeout 60 s: the latest possible serve costs $0.05 + 60 x $0.005 = $0.35.
    with pytest.raises(ConfigError, match="drop_usd"):
        ServerlessGPUEnv("small", reward__drop_usd=0.3)
    ServerlessGPUEnv("small", reward__drop_usd=0.3, features__request_timeout_s=10.0)


# -------------------------------------------------------------------------- sabotage -------
class ScaleInQueued:
    """``inner``, except that a model with queued requests is scaled in (the most negative valid
    delta) whenever it is focused: the sabotage the platform semantics must make pointless."""

    privileged = False

    def __init__(self, inner) -> None:
        self.inner = inner
        self.name = f"{inner.name}+scale-in"
        self.triggered = 0

    def bind(self, env):
        self.env = env.unwrapped
        self.inner.bind(env)
        return self

    def predict(self, obs, state=None, episode_start=None, deterministic=True):
        a, state = self.inner.predict(obs, state, episode_start, deterministic)
        env = self.env
        m = env.focus
        if env.sim.queue_len(m) > 0:
            scale_ok, _ = env.entry_masks(m)
            neg = [int(i) for i in np.argsort(env.layout.deltas) if scale_ok[i]]
            s = neg[0]
            if env.layout.deltas[s] < 0:
                _, p, src, c = env.layout.decode(int(a))
                a = env.layout.encode(s, p, src, c)
                self.triggered += 1
        return a, state


def test_scaling_in_a_queued_model_scores_worse_known_answer():
    """Requests every 0.25 s; a policy keeps one instance from t = 0. Sabotaged, it scales the
    model in at every interval where requests queue: each time the platform restarts it at
    once (a cold start), so the sabotage only adds lateness (and drops none)."""
    arr = np.arange(0.1, 60.0, 0.25)
    env = two_model_env(timeout_s=30.0, arrivals_a=arr)
    plain = play(env, {(0, 0): env_action(env, delta=1)})
    env = two_model_env(timeout_s=30.0, arrivals_a=arr)
    down = env_action(env, delta=-1)
    sabotage = {(t, 0): down for t in range(1, 6)}
    bad = play(env, {(0, 0): env_action(env, delta=1), **sabotage})
    cp, cb = plain["episode_reward_components"], bad["episode_reward_components"]
    assert bad["requests_dropped"] == plain["requests_dropped"] == 0
    assert bad["episode_metrics"]["autostarts"] >= 1
    assert cb["late"] > cp["late"]
    assert sum(cb.values()) > sum(cp.values())


@pytest.mark.parametrize("base", ["hierarchical", "histogram"])
def test_scaling_in_a_queued_model_scores_no_better_on_small(base):
    """The sabotage (scale a model with waiting requests in as far as the masks allow) never
    pays, and never leaves a model with waiting requests without an instance."""

    class Watched(ScaleInQueued):
        starved = 0

        def predict(self, obs, state=None, episode_start=None, deterministic=True):
            env = self.env
            self.starved += sum(
                env.sim.queue_len(m) > 0 and env.sim.instance_count(m) == 0
                and bool(env.sim.free_per_host.any())
                for m in range(env.M)
            )  # fmt: skip
            return super().predict(obs, state, episode_start, deterministic)

    sab = Watched(make_policy(base))
    res = evaluate(
        "small", {base: make_policy(base), "sabotaged": sab}, episodes=2,
        overrides={"episode_s": 600}, progress=False, record_timeline=False,
    )  # fmt: skip
    plain, bad = res["policies"][base], res["policies"]["sabotaged"]
    assert bad["invalid_actions"] == 0 and sab.starved == 0
    assert bad["requests_dropped"] <= plain["requests_dropped"]
    for e_plain, e_bad in zip(plain["per_episode"], bad["per_episode"], strict=True):
        assert e_plain["start_s"] == e_bad["start_s"]
        assert e_bad["episode_reward"] <= e_plain["episode_reward"] + 1e-9


# ------------------------------------------------------------- floors on every preset ------
class ScaleToZero:
    """Scale every model to zero every step: the most negative valid scale delta (everything
    else held); the no-op when the model has nothing to remove."""

    name = "zero"
    privileged = False

    def bind(self, env):
        self.env = env.unwrapped
        return self

    def predict(self, obs, state=None, episode_start=None, deterministic=True):
        env = self.env
        mask = env.action_masks()
        for s in np.argsort(env.layout.deltas):
            a = env.layout.encode(int(s), 0, 0, HOLD)
            if mask[a]:
                return a, state
        return env.layout.noop, state


@pytest.mark.parametrize("scenario", sorted(envs.list_presets()))
def test_random_and_scale_to_zero_score_below_hierarchical_and_histogram(scenario):
    pols = {
        "hierarchical": make_policy("hierarchical"),
        "histogram": make_policy("histogram"),
        "random": make_policy("random"),
        "zero": ScaleToZero(),
    }
    # Hour-long windows: a model with waiting requests keeps an instance (the platform rule), so
    # "zero" is reactive scaling with no keep-alive at all; in 10- and 20-minute windows on paper
    # it came within 1% of hierarchical (reactive, scale to zero after one quiet step), over
    # whole held-out hours 37% below it (3 windows: -2,098 against -1,315).
    res = evaluate(
        scenario, pols, episodes=2, overrides={"episode_s": 3600}, progress=False,
        record_timeline=False,
    )  # fmt: skip
    r = {k: v["episode_reward"] for k, v in res["policies"].items()}
    assert res["policies"]["zero"]["invalid_actions"] == 0
    for floor in ("random", "zero"):
        for good in ("hierarchical", "histogram"):
            assert r[floor] < r[good], (scenario, r)
