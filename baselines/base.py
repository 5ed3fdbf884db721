"""The interface every reference policy shares, and the helpers they are built from.

A policy is an object with SB3's ``predict(observation, state=None, episode_start=None,
deterministic=True) -> (action, state)``, so that SB3's ``evaluate_policy`` and the project's
``agents.evaluation.evaluate`` treat a heuristic exactly like a trained agent.

What a policy may read:

* the observation, decoded with the env's feature layout (:class:`ObsView`);
* static facts of the scenario (:class:`ScenarioFacts`: action layout, GPU count, step length,
  per-instance throughput from the model specs), taken from the env given to :meth:`Policy.bind`;
* the env's ``action_masks()`` (the same interface sb3-contrib's MaskablePPO reads), so that every
  action lies inside the mask: an intended choice that is masked is replaced by the nearest valid
  one (:meth:`Policy.legalize`);
* the simulator itself only if the policy says so with ``privileged = True`` (results label it).

Policies act only through the action space. Per-env state (windows, histograms, counters) is kept
per batch index and reset when ``episode_start`` is true, and by :meth:`Policy.bind` and
:meth:`Policy.reset`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from envs.env import CACHE_ACTIONS, CLUSTER_FEATURES, MODEL_FEATURES, SOURCE_ACTIONS
from envs.sim.config import PLACEMENT_RULES

NF = len(MODEL_FEATURES)
_F = {name: i for i, name in enumerate(MODEL_FEATURES)}
_C = {name: i for i, name in enumerate(CLUSTER_FEATURES)}

# Choice indices inside each entry (see the env's action table).
LOCALITY, LEAST_LOADED, PACK = (
    PLACEMENT_RULES.index(r) for r in ("locality", "least_loaded", "pack")
)
NEAREST, CLOUD = SOURCE_ACTIONS.index("nearest"), SOURCE_ACTIONS.index("cloud")
RELEASE, HOLD, KEEP, PREFETCH = (
    CACHE_ACTIONS.index(c) for c in ("release", "hold", "keep", "prefetch")
)


# ==================================================================== scenario facts ==========
@dataclass(frozen=True)
class ScenarioFacts:
    """Static facts of a scenario a policy may use (nothing that changes during an episode).

    Attributes:
        K: Model slots (``max_models``, padding included); M: real models.
        G: GPUs in the cluster; H: hosts; gpus_per_host: shape ``(H,)``.
        deltas: The scale choices, shape ``(n_deltas,)``.
        nvec: Choices per entry for one model ``[scale, placement, source, cache]``.
        step_s: Simulated seconds per step; n_steps: steps per episode.
        capacity_rps: Requests/s one instance serves at full batches,
            ``max_batch / gpu_exec_s(max_batch)``, shape ``(M,)``.
        exec1_s: GPU time of a batch of one, shape ``(M,)``.
        max_batch: Largest batch, shape ``(M,)``.
        host_cache: Whether hosts keep model copies in memory (prefetch is possible).
    """

    K: int
    M: int
    G: int
    H: int
    gpus_per_host: tuple[int, ...]
    deltas: np.ndarray
    nvec: np.ndarray
    step_s: float
    n_steps: int
    capacity_rps: np.ndarray
    exec1_s: np.ndarray
    max_batch: np.ndarray
    host_cache: bool

    @classmethod
    def from_env(cls, env) -> ScenarioFacts:
        sc = env.scenario
        cfg = sc.sim
        models = cfg.models
        return cls(
            K=sc.max_models,
            M=len(models),
            G=cfg.n_gpus,
            H=len(cfg.hosts),
            gpus_per_host=tuple(h.n_gpus for h in cfg.hosts),
            deltas=np.array(sc.scale_deltas, dtype=np.int64),
            nvec=np.array(
                [
                    len(sc.scale_deltas),
                    len(PLACEMENT_RULES) + len(cfg.hosts),
                    len(SOURCE_ACTIONS),
                    len(CACHE_ACTIONS),
                ],
                dtype=np.int64,
            ),
            step_s=float(sc.step_s),
            n_steps=sc.n_steps,
            capacity_rps=np.array([m.max_batch / m.gpu_exec_s(m.max_batch) for m in models]),
            exec1_s=np.array([m.gpu_exec_s(1) for m in models]),
            max_batch=np.array([m.max_batch for m in models], dtype=np.int64),
            host_cache=bool(cfg.features.host_cache),
        )

    @property
    def offsets(self) -> np.ndarray:
        """Start of each entry's choices in one model's mask row, shape ``(4,)``."""
        return np.r_[0, np.cumsum(self.nvec[:-1])]

    @property
    def zero_delta(self) -> int:
        return int(np.flatnonzero(self.deltas == 0)[0])


# ======================================================================= observation ==========
class ObsView:
    """One observation decoded into counts and rates (real models only, arrays of shape ``(M,)``).

    Rates are ``expm1`` of the log1p features (requests/s); instance counts are the features times
    the GPU count, host counts times the host count, both rounded to integers.
    """

    def __init__(self, facts: ScenarioFacts, obs: np.ndarray) -> None:
        K, M = facts.K, facts.M
        obs = np.asarray(obs, dtype=np.float64)
        f = obs[: K * NF].reshape(K, NF)[:M]
        c = obs[K * NF :]
        self.rate_step = np.expm1(f[:, _F["rate_step"]])
        self.rate_1min = np.expm1(f[:, _F["rate_1min"]])
        self.rate_10min = np.expm1(f[:, _F["rate_10min"]])
        self.queue = np.rint(np.expm1(f[:, _F["queue"]])).astype(np.int64)
        self.idle = np.rint(f[:, _F["warm_idle"]] * facts.G).astype(np.int64)
        self.busy = np.rint(f[:, _F["warm_busy"]] * facts.G).astype(np.int64)
        self.loading = np.rint(f[:, _F["loading"]] * facts.G).astype(np.int64)
        self.copies = np.rint(f[:, _F["mem_copies"]] * facts.H).astype(np.int64)
        self.pinned = np.rint(f[:, _F["pinned_copies"]] * facts.H).astype(np.int64)
        self.load_time_s = f[:, _F["load_time"]] * 60.0
        self.free_gpus = int(round(float(c[_C["free_gpus"]]) * facts.G))
        self.progress = float(c[_C["episode_progress"]])

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
    """Instances needed for the recent demand: ``ceil((rate_step + queue / step_s) / capacity)``.

    ``rate_step`` is the arrival rate of the last step and ``queue / step_s`` the rate that clears
    the backlog within one step; ``capacity`` is one instance's full-batch throughput divided by
    ``headroom``. Zero demand (no arrival in the last step, empty queue) gives 0 instances.
    """
    demand = view.rate_step + view.queue / facts.step_s
    need = np.ceil(demand * headroom / facts.capacity_rps - 1e-9)
    return np.clip(need, 0, facts.G).astype(np.int64)


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
        if not (hasattr(e, "scenario") and hasattr(e, "action_masks")):
            raise TypeError(
                f"bind() needs a coldstart ServerlessGPUEnv (or a sequence / DummyVecEnv of them), "
                f"got {type(e).__name__}"
            )
    return out


# ============================================================================ policy ==========
class Policy:
    """Base class: SB3's ``predict`` over :meth:`act`, with per-env state and mask legalisation.

    Subclasses implement :meth:`act` (one env's observation -> a ``(K, 4)`` choice matrix) and,
    if stateful, :meth:`new_state`. ``name`` is the registry name; ``privileged`` says whether
    the policy reads the simulator (``self.sim(i)``).

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
            if other.K != facts.K or not np.array_equal(other.nvec, facts.nvec):
                raise ValueError("bind(): all envs of a batch must share the action layout")
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
        """SB3's signature: a single observation ``(n_obs,)`` or a batch ``(n_envs, n_obs)``."""
        if self.facts is None:
            raise RuntimeError(f"{self.name}: call bind(env) before predict()")
        obs = np.asarray(observation)
        single = obs.ndim == 1
        batch = obs.reshape(1, -1) if single else obs
        n = batch.shape[0]
        if n > len(self._envs):
            raise ValueError(
                f"{self.name}: a batch of {n} observations but {len(self._envs)} bound env(s); "
                f"bind the DummyVecEnv (or a list of envs)"
            )
        starts = np.zeros(n, dtype=bool)
        if episode_start is not None:
            starts[:] = np.broadcast_to(np.asarray(episode_start, dtype=bool).reshape(-1), (n,))
        out = np.empty((n, 4 * self.facts.K), dtype=np.int64)
        for i in range(n):
            if starts[i]:
                self._state.pop(i, None)
            st = self._state.get(i)
            if st is None:
                st = self._state[i] = {"t": 0, **self.new_state()}
            mask = self.mask(i)
            choice = self.act(i, ObsView(self.facts, batch[i]), mask, st)
            out[i] = self.legalize(choice, mask).reshape(-1)
            st["t"] += 1
        return (out[0] if single else out), state

    def mask(self, i: int) -> np.ndarray:
        """Valid choices of batch index ``i``, shape ``(K, sum(nvec))``."""
        return np.asarray(self._envs[i].action_masks(), dtype=bool).reshape(self.facts.K, -1)

    def act(self, i: int, view: ObsView, mask: np.ndarray, st: dict) -> np.ndarray:
        """Choices ``[scale index, placement, source, cache]`` per model slot, shape ``(K, 4)``."""
        raise NotImplementedError

    def noop(self) -> np.ndarray:
        """Hold everything: shape ``(K, 4)``."""
        a = np.zeros((self.facts.K, 4), dtype=np.int64)
        a[:, 0] = self.facts.zero_delta
        a[:, 3] = HOLD
        return a

    def legalize(self, choice: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Replace masked choices by the nearest valid ones.

        scale: the valid delta nearest to the intended one (0 is always valid); placement: an
        explicit host without a free GPU falls back to ``locality``; cache: ``prefetch`` falls
        back to ``keep``, anything else to ``hold``; padding slots get the no-op.
        """
        f = self.facts
        off = f.offsets
        out = np.array(choice, dtype=np.int64).reshape(f.K, 4)
        for m in range(f.K):
            row = mask[m]
            for e in range(4):
                seg = row[off[e] : off[e] + f.nvec[e]]
                c = int(out[m, e])
                if 0 <= c < f.nvec[e] and seg[c]:
                    continue
                if e == 0:
                    want = int(f.deltas[c]) if 0 <= c < f.nvec[0] else 0
                    out[m, e] = nearest_delta(want, f.deltas, seg)
                else:
                    pref = {
                        1: (LOCALITY,),
                        2: (NEAREST,),
                        3: (KEEP, HOLD) if c == PREFETCH else (HOLD,),
                    }[e]
                    valid = [p for p in pref if seg[p]] or list(np.flatnonzero(seg))
                    out[m, e] = int(valid[0])
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, privileged={self.privileged})"


# ======================================================================== data paths ==========
@dataclass(frozen=True)
class DataPath:
    """Where new instances go, which tier they load from, and what the memory pool keeps.

    Attributes:
        placement: ``LOCALITY``, ``LEAST_LOADED`` or ``PACK``.
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

    Subclasses implement :meth:`targets`; this class turns targets into scale deltas (the nearest
    available delta to ``target - instances``) and applies the data path, tracking prefetches in
    flight so that a ``"warm"`` pool asks for one copy at a time.

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

    def act(self, i, view, mask, st):
        f, dp = self.facts, self.datapath
        out = self.noop()
        target = np.asarray(self.targets(i, view, st), dtype=np.int64)
        off = f.offsets
        cur = view.instances
        for m in range(f.M):
            diff = int(target[m] - cur[m])
            if diff < 0 and not self.scale_in:
                diff = 0
            out[m, 0] = nearest_delta(diff, f.deltas, mask[m, : f.nvec[0]])
            out[m, 1] = dp.placement
            out[m, 2] = dp.source
            out[m, 3] = self._cache_choice(m, view, mask[m, off[3] :], st)
        self.place(i, view, mask, st, out)
        return out

    def place(self, i, view, mask, st, out) -> None:
        """Hook: adjust placement (and scale) choices in ``out`` in place."""

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
