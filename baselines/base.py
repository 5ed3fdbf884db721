"""The interface every reference policy shares, and the helpers they are built from.

A policy is an object with SB3's ``predict(observation, state=None, episode_start=None,
deterministic=True) -> (action, state)``, so that SB3's ``evaluate_policy`` and the project's
``agents.evaluation.evaluate`` treat a heuristic exactly like a trained agent.

``coldstart/ServerlessGPU-v1`` asks for one model's action per step, every model in turn within
a control interval (see the env's docstring). A policy plans the whole interval at its first
step (:meth:`Policy.plan`: one row of choices per model) and plays the focused model's row at
each step, checked against the env's masks at that moment (:meth:`Policy.legalize`).

What a policy may read:

* every model's observation row for the interval (``env.model_features(m)``: the features the
  agent sees one model at a time), decoded with the layout (:class:`ObsView`);
* static facts of the scenario (:class:`ScenarioFacts`), taken from the env given to
  :meth:`Policy.bind`;
* the env's masks (``entry_masks(m)``, the per-entry form of ``action_masks()``), so that every
  action lies inside the mask: an intended choice that is masked is replaced by the nearest
  valid one;
* the simulator itself only if the policy says so with ``privileged = True`` (results label it).

Per-env state (windows, histograms, counters) is kept per batch index and reset when
``episode_start`` is true, and by :meth:`Policy.bind` and :meth:`Policy.reset`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from envs import layout as L
from envs.warmup import capacity_rps
from envs.warmup import reactive_target as _reactive_counts

# Choice indices inside each entry (envs.layout).
KEEP_RULE = 0
LOCALITY, LEAST_LOADED, PACK, FASTEST = (
    L.PLACEMENT_CHOICES.index(r) for r in ("locality", "least_loaded", "pack", "fastest")
)
NEAREST, CLOUD = L.SOURCE_CHOICES.index("nearest"), L.SOURCE_CHOICES.index("cloud")
RELEASE, HOLD, KEEP, PREFETCH = (
    L.CACHE_CHOICES.index(c) for c in ("release", "hold", "keep", "prefetch")
)


# ==================================================================== scenario facts ==========
@dataclass(frozen=True)
class ScenarioFacts:
    """Static facts of a scenario a policy may use (nothing that changes during an episode).

    Attributes:
        M: Models; G: GPUs in the cluster; H: hosts; gpus_per_host: shape ``(H,)``.
        layout: The action layout (:class:`envs.layout.ActionLayout`); deltas: its scale deltas.
        step_s: Simulated seconds per control interval; n_steps: intervals per episode.
        capacity_rps: Requests/s one instance serves at full batches, shape ``(M,)``.
        exec1_s: GPU time of a batch of one, shape ``(M,)``; max_batch: shape ``(M,)``.
        host_cache: Whether hosts keep model copies in memory (prefetch is possible).
    """

    M: int
    G: int
    H: int
    gpus_per_host: tuple[int, ...]
    layout: L.ActionLayout
    deltas: np.ndarray
    step_s: float
    n_steps: int
    capacity_rps: np.ndarray
    exec1_s: np.ndarray
    max_batch: np.ndarray
    host_cache: bool

    @classmethod
    def from_env(cls, env) -> ScenarioFacts:
        sc = env.scenario
        cfg = env.cfg
        models = cfg.models
        return cls(
            M=len(models),
            G=cfg.n_gpus,
            H=len(cfg.hosts),
            gpus_per_host=tuple(h.n_gpus for h in cfg.hosts),
            layout=env.layout,
            deltas=env.layout.deltas,
            step_s=float(sc.step_s),
            n_steps=sc.n_steps,
            capacity_rps=capacity_rps(models),
            exec1_s=np.array([m.gpu_exec_s(1) for m in models]),
            max_batch=np.array([m.max_batch for m in models], dtype=np.int64),
            host_cache=bool(cfg.features.host_cache),
        )

    @property
    def zero_delta(self) -> int:
        return self.layout.zero_delta


# ======================================================================= observation ==========
class ObsView:
    """Every model's observation row for the interval, decoded into counts and rates.

    Arrays have shape ``(M,)``. Rates are ``expm1`` of the log1p features (requests/s); instance
    counts are the features times the GPU count, host counts times the host count, rounded.

    Args:
        facts: The scenario's facts.
        rows: ``(M, len(MODEL_FEATURES))`` model features; cluster: the cluster features.
    """

    def __init__(self, facts: ScenarioFacts, rows: np.ndarray, cluster: np.ndarray) -> None:
        f = np.asarray(rows, dtype=np.float64)
        F = L.F
        self.rate_step = np.expm1(f[:, F["rate_step"]])
        self.rate_1min = np.expm1(f[:, F["rate_1min"]])
        self.rate_10min = np.expm1(f[:, F["rate_10min"]])
        self.queue = np.rint(np.expm1(f[:, F["queue"]])).astype(np.int64)
        self.idle = np.rint(f[:, F["warm_idle"]] * facts.G).astype(np.int64)
        self.busy = np.rint(f[:, F["warm_busy"]] * facts.G).astype(np.int64)
        self.loading = np.rint(f[:, F["loading"]] * facts.G).astype(np.int64)
        self.copies = np.rint(f[:, F["mem_copies"]] * facts.H).astype(np.int64)
        self.pinned = np.rint(f[:, F["pinned_copies"]] * facts.H).astype(np.int64)
        self.load_time_s = f[:, F["load_time"]] * 60.0
        self.since_last_s = np.expm1(f[:, F["since_last"]])
        c = np.asarray(cluster, dtype=np.float64)
        n_m = len(L.MODEL_FEATURES)
        self.free_gpus = int(round(float(c[L.C["free_gpus"] - n_m]) * facts.G))
        self.progress = float(c[L.C["episode_progress"] - n_m])

    @property
    def instances(self) -> np.ndarray:
        """Warm + loading instances (what scale-in and scale-out change)."""
        return self.idle + self.busy + self.loading

    @property
    def ready(self) -> np.ndarray:
        """Warm instances (idle or busy)."""
        return self.idle + self.busy

    @property
    def active(self) -> np.ndarray:
        """Models with arrivals in the last step, a queue, or a busy instance."""
        return (self.rate_step > 0) | (self.queue > 0) | (self.busy > 0)


# ==================================================================== shared helpers ==========
def reactive_target(view: ObsView, facts: ScenarioFacts, headroom: float = 1.0) -> np.ndarray:
    """Instances needed for the recent demand (:func:`envs.warmup.reactive_target`, the one
    definition the warm-up's reference policy uses too) from an observation."""
    return _reactive_counts(
        view.rate_step, view.queue, float(facts.step_s), facts.capacity_rps, facts.G,
        float(headroom),
    )


def nearest_delta(diff: int, deltas: np.ndarray, valid: np.ndarray | None = None) -> int:
    """Index of the valid scale delta closest to ``diff`` (ties: the smaller change)."""
    idx = np.arange(len(deltas)) if valid is None else np.flatnonzero(valid)
    d = deltas[idx]
    best = np.lexsort((np.abs(d), np.abs(d - diff)))[0]
    return int(idx[best])


def _as_env_list(env) -> list:
    """The unwrapped envs behind ``env``: one env, a sequence of envs, or a DummyVecEnv."""
    if hasattr(env, "envs") and not hasattr(env, "action_masks"):  # DummyVecEnv and the like
        envs = list(env.envs)
    elif isinstance(env, Sequence):
        envs = list(env)
    else:
        envs = [env]
    out = [getattr(e, "unwrapped", e) for e in envs]
    for e in out:
        if not (hasattr(e, "scenario") and hasattr(e, "model_features")):
            raise TypeError(
                f"bind() needs a coldstart ServerlessGPUEnv (or a sequence / DummyVecEnv of them), "
                f"got {type(e).__name__}"
            )
    return out


# ============================================================================ policy ==========
class Policy:
    """Base class: SB3's ``predict`` over :meth:`plan`, with per-env state and legalisation.

    Subclasses implement :meth:`plan` (the interval's choices, one row per model) and, if
    stateful, :meth:`new_state`; or override :meth:`choose` to act per step. ``name`` is the
    registry name; ``privileged`` says whether the policy reads the simulator (``self.sim(i)``).

    Args:
        env: Optional env to :meth:`bind` right away.
    """

    name = "policy"
    privileged = False

    def __init__(self, env=None) -> None:
        self._envs: list = []
        self.facts: ScenarioFacts | None = None
        self._state: dict[int, dict] = {}
        if env is not None:
            self.bind(env)

    # --------------------------------------------------------------------- binding ----------
    def bind(self, env) -> Policy:
        """Attach the env(s) the policy acts in (one per batch index) and reset all state."""
        envs = _as_env_list(env)
        facts = ScenarioFacts.from_env(envs[0])
        for e in envs[1:]:
            other = ScenarioFacts.from_env(e)
            if other.M != facts.M or not np.array_equal(other.deltas, facts.deltas):
                raise ValueError("bind(): all envs of a batch must share the scenario's layout")
        self._envs = envs
        self.facts = facts
        self.on_bind()
        self.reset()
        return self

    def on_bind(self) -> None:
        """Hook: precompute from ``self.facts`` (called by :meth:`bind` before :meth:`reset`)."""

    def reset(self, env=None) -> None:
        """Forget every env's episode state; ``reset(env)`` is ``bind(env)``."""
        if env is not None:
            self.bind(env)
            return
        self._state.clear()

    def new_state(self) -> dict:
        """Fresh per-env episode state (override to add fields)."""
        return {}

    def sim(self, i: int = 0):
        """The simulator of batch index ``i`` (privileged policies only)."""
        if not self.privileged:
            raise RuntimeError(f"{self.name} is not privileged: it may not read the simulator")
        return self._envs[i].sim

    def env(self, i: int = 0):
        return self._envs[i]

    # --------------------------------------------------------------------- acting -----------
    def predict(self, observation, state=None, episode_start=None, deterministic: bool = True):
        """SB3's signature: a single observation ``(n_obs,)`` or a batch ``(n_envs, n_obs)``.

        The observation itself is not decoded (the env's ``model_features`` give every model's
        row at once); its batch size says how many bound envs act."""
        if self.facts is None:
            raise RuntimeError(f"{self.name}: call bind(env) before predict()")
        obs = np.asarray(observation)
        single = obs.ndim == 1
        n = 1 if single else obs.shape[0]
        if n > len(self._envs):
            raise ValueError(
                f"{self.name}: a batch of {n} observations but {len(self._envs)} bound env(s); "
                f"bind the DummyVecEnv (or a list of envs)"
            )
        starts = np.zeros(n, dtype=bool)
        if episode_start is not None:
            starts[:] = np.broadcast_to(np.asarray(episode_start, dtype=bool).reshape(-1), (n,))
        out = np.empty(n, dtype=np.int64)
        for i in range(n):
            if starts[i]:
                self._state.pop(i, None)
            st = self._state.get(i)
            if st is None:
                st = self._state[i] = {"t": 0, **self.new_state()}
            env = self._envs[i]
            if env.focus == 0 or "plan" not in st:
                if "plan" in st:
                    st["t"] += 1
                view = self.view(i)
                masks = [env.entry_masks(m) for m in range(self.facts.M)]
                st["plan"] = np.asarray(self.plan(i, view, masks, st), dtype=np.int64)
            out[i] = self.choose(i, env.focus, st)
        return (out[0] if single else out), state

    def view(self, i: int) -> ObsView:
        """Every model's observation row of batch index ``i`` now."""
        env = self._envs[i]
        rows = np.stack([env.model_features(m) for m in range(self.facts.M)])
        return ObsView(self.facts, rows, np.asarray(env.cluster_features()))

    def plan(self, i: int, view: ObsView, masks: list, st: dict) -> np.ndarray:
        """Choices ``[scale, placement, source, cache]`` (indices into the layout's entries)
        per model, shape ``(M, 4)``; ``masks[m]`` is ``env.entry_masks(m)``."""
        raise NotImplementedError

    def choose(self, i: int, m: int, st: dict) -> int:
        """The action for model ``m`` now: its planned row, legalised against the current masks."""
        scale_ok, cache_ok = self._envs[i].entry_masks(m)
        row = self.legalize(st["plan"][m], scale_ok, cache_ok)
        return self.facts.layout.encode(*row)

    def noop(self) -> np.ndarray:
        """Hold everything: shape ``(M, 4)``."""
        return np.tile(np.asarray(self.facts.layout.decode(self.facts.layout.noop)), (self.facts.M, 1))

    def legalize(self, choice, scale_ok: np.ndarray, cache_ok: np.ndarray) -> list[int]:
        """Replace masked choices by the nearest valid ones: scale the valid delta nearest to
        the intended one (0 is always valid); cache ``prefetch`` falls back to ``keep``,
        anything else to ``hold`` (placement and source are always valid)."""
        s, p, src, c = (int(x) for x in choice)
        f = self.facts
        if not scale_ok[s]:
            s = nearest_delta(int(f.deltas[s]), f.deltas, scale_ok)
        if not cache_ok[c]:
            c = KEEP if c == PREFETCH and cache_ok[KEEP] else HOLD
        return [s, p, src, c]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, privileged={self.privileged})"


# ======================================================================== data paths ==========
@dataclass(frozen=True)
class DataPath:
    """Where new instances go, which tier they load from, and what the memory pool keeps.

    Attributes:
        placement: ``LOCALITY``, ``LEAST_LOADED``, ``PACK`` or ``FASTEST``.
        source: ``NEAREST`` (the scenario's sourcing rule: local memory, remote memory, disk,
            cloud) or ``CLOUD``.
        cache: ``"release"`` (unpin and evict unused copies every step), ``"hold"`` (leave the
            hosts' LRU caches alone), ``"keep"`` (pin copies) or ``"warm"`` (prefetch until
            ``copies`` hosts hold the model, then keep: a pool kept warm).
        copies: Hosts that should hold a copy under ``"warm"``.
    """

    placement: int
    source: int
    cache: str
    copies: int = 1


DATAPATHS: dict[str, DataPath] = {
    # Every cold start from cloud storage, no memory pool, placement blind to locality.
    "cloud": DataPath(LEAST_LOADED, CLOUD, "release"),
    # Remote memory pooling: a warm copy somewhere in the cluster, placement still blind.
    "pool": DataPath(LEAST_LOADED, NEAREST, "warm"),
    # Hierarchical sourcing with locality-aware placement, pool kept warm.
    "hierarchical": DataPath(LOCALITY, NEAREST, "warm"),
    # The platform's defaults: nearest tier, locality placement, hosts' LRU caches untouched.
    "lru": DataPath(LOCALITY, NEAREST, "hold"),
}


def get_datapath(datapath: str | DataPath) -> DataPath:
    if isinstance(datapath, DataPath):
        return datapath
    if datapath not in DATAPATHS:
        raise ValueError(f"unknown datapath {datapath!r}; valid: {sorted(DATAPATHS)}")
    return DATAPATHS[datapath]


class ScalingPolicy(Policy):
    """A policy that sets a target instance count per model and a :class:`DataPath`.

    Subclasses implement :meth:`targets`; this class plans scale deltas (the nearest available
    delta to ``target - instances``) and the data path (the placement and source become the
    model's standing rules, which the platform's own cold starts follow too), tracking prefetches
    in flight so that a ``"warm"`` pool asks for one copy at a time.

    Args:
        datapath: A name of :data:`DATAPATHS` or a :class:`DataPath`.
        scale_in: Whether targets below the current count remove instances.
    """

    scale_in = True

    def __init__(self, env=None, datapath: str | DataPath = "hierarchical") -> None:
        self.datapath = get_datapath(datapath)
        super().__init__(env)

    def targets(self, i: int, view: ObsView, st: dict) -> np.ndarray:
        """Wanted instances (warm + loading) per real model, shape ``(M,)``."""
        raise NotImplementedError

    def plan(self, i, view, masks, st):
        f, dp = self.facts, self.datapath
        out = self.noop()
        target = np.asarray(self.targets(i, view, st), dtype=np.int64)
        cur = view.instances
        for m in range(f.M):
            diff = int(target[m] - cur[m])
            if diff < 0 and not self.scale_in:
                diff = 0
            scale_ok, cache_ok = masks[m]
            out[m, 0] = nearest_delta(diff, f.deltas, scale_ok)
            out[m, 1] = dp.placement
            out[m, 2] = dp.source
            out[m, 3] = self._cache_choice(m, view, cache_ok, st)
        return out

    def _cache_choice(self, m: int, view: ObsView, cache_mask: np.ndarray, st: dict) -> int:
        dp = self.datapath
        if dp.cache == "release":
            return RELEASE
        if dp.cache == "hold":
            return HOLD
        if dp.cache == "keep":
            return KEEP
        # "warm": one prefetch at a time until enough hosts hold a copy.
        wait = st.setdefault("prefetch_wait", np.zeros(self.facts.M, dtype=np.int64))
        seen = st.setdefault("copies_seen", np.zeros(self.facts.M, dtype=np.int64))
        if view.copies[m] > seen[m]:
            wait[m] = 0  # the copy we waited for arrived
        seen[m] = view.copies[m]
        want = min(dp.copies, self.facts.H)
        if view.copies[m] >= want or st["t"] < wait[m] or not cache_mask[PREFETCH]:
            return KEEP
        # Wait about one uncontended transfer before asking for another copy.
        wait[m] = st["t"] + max(1, math.ceil(view.load_time_s[m] / self.facts.step_s)) + 1
        return PREFETCH
