"""Bound entry points (envs.sim.fastcall): the same results as the dispatcher, every call with
the types it was bound with, and owners that pickle and deep-copy without them."""

from __future__ import annotations

import copy
import pickle

import gymnasium as gym
import numba
import numpy as np
import pytest
from numba.core import types
from numba.core.dispatcher import Dispatcher

from envs import ENV_ID, list_presets
from envs.sim import fastcall
from envs.sim.fastcall import PREFIX, BoundKernels, bind


@numba.njit(cache=False)
def _axpy(a, x, y, n):
    for i in range(n):
        y[i] += a * x[i]
    return y[0]


def test_bind_gives_the_dispatchers_results():
    x, y1, y2 = np.arange(4.0), np.ones(4), np.ones(4)
    ep = bind(_axpy, 0.0, x, y1, 0)
    assert ep(2.0, x, y1, 3) == _axpy(2.0, x, y2, 3)
    assert np.array_equal(y1, y2)
    assert ep(1, x, y1, 4) == _axpy(1.0, x, y2, 4)  # an int where a float was bound
    # Bound once per kernel and argument types: a view of another layout, a read-only array
    # or another dtype is another entry point.
    assert bind(_axpy, 0.0, x, np.ones(4), 0) is ep
    others = [(0.0, x[::2], y1, 0), (0.0, x, y1.astype(np.float32), 0), (0, x, y1, 0)]
    ro = np.ones(4)
    ro.flags.writeable = False
    others.append((0.0, ro, y1, 0))
    eps = {id(bind(_axpy, *a)) for a in others}
    assert len(eps) == len(others) and id(ep) not in eps
    plain = _axpy.py_func
    assert bind(plain, 0.0, x, y1, 0) is plain  # not compiled (NUMBA_DISABLE_JIT): itself


class _Owner(BoundKernels):
    def __init__(self):
        self.x = np.arange(3.0)
        self._bind_kernels()

    def _bind_kernels(self):
        self._k_axpy = bind(_axpy, 0.0, self.x, self.x, 0)


@pytest.mark.parametrize("clone", [lambda o: pickle.loads(pickle.dumps(o)), copy.deepcopy])
def test_an_owner_clones_without_its_entry_points_and_binds_them_again(clone):
    o = _Owner()
    assert not any(k.startswith(PREFIX) for k in o.__getstate__())
    twin = clone(o)
    assert twin._k_axpy(1.0, twin.x, twin.x, 3) == 0.0 and twin.x.tolist() == [0.0, 2.0, 4.0]
    assert o.x.tolist() == [0.0, 1.0, 2.0]  # the original untouched


def _compatible(bound, given) -> bool:
    """A call's argument type is what the entry point was bound with (an integer where a float
    was bound converts exactly)."""
    if bound == given:
        return True
    return isinstance(bound, types.Float) and isinstance(given, (types.Integer, types.Boolean))


@pytest.mark.parametrize("scenario", sorted(list_presets()))
def test_every_bound_call_of_an_episode_passes_the_bound_types(scenario, monkeypatch):
    """The entry points trust their callers: check every call of the env's hot kernels (random
    masked actions, resets, a pickled copy) against the signature each was bound with."""
    compile_ = Dispatcher.compile
    calls = []

    def checked(self, sig):
        ep = compile_(self, sig)

        def call(*args):
            given = tuple(numba.typeof(a) for a in args)
            bad = [(i, b, g) for i, (b, g) in enumerate(zip(sig, given, strict=True))
                   if not _compatible(b, g)]  # fmt: skip
            assert not bad, f"{self.py_func.__name__}: argument (index, bound, given) {bad}"
            calls.append(self.py_func.__name__)
            return ep(*args)

        return call

    monkeypatch.setattr(Dispatcher, "compile", checked)
    monkeypatch.setattr(fastcall, "_BOUND", {})  # (else entry points bound before are reused)
    env = gym.make(ENV_ID, scenario=scenario, disable_env_checker=True).unwrapped
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    for i in range(400):
        if i == 200:
            env = pickle.loads(pickle.dumps(env))  # binds again
        a = int(rng.choice(np.flatnonzero(env.action_masks())))
        _, _, term, trunc, _ = env.step(a)
        if term or trunc:
            env.reset()
    assert {"plan_and_serve", "model_row", "demand_features", "_update"} <= set(calls)


@pytest.mark.parametrize("scenario", ["small", "paper"])
def test_skipping_the_activators_idle_stops_changes_no_result(scenario, monkeypatch):
    """The event loop does not stop at a cold model's arrival while no GPU is free and none can
    free before the next event (kernel.activator_next): the trajectory of uniform-random steps
    (which keep the cluster full) is the one of a loop that stops at every such arrival."""
    from benchmarks.step_parts import passes_per_step
    from benchmarks.trajectory_digest import digest
    from envs.sim.simulator import Simulator

    def run(skip: bool) -> tuple[str, float]:
        monkeypatch.setattr(Simulator, "_skip_cold_stops", skip)
        return digest(scenario, 600), passes_per_step(scenario, 600)

    (with_skip, n_skip), (without, n_all) = run(True), run(False)
    assert with_skip == without
    assert n_skip < n_all  # (the skip happened)
