"""The Gymnasium environment over the cold-start simulator."""

from __future__ import annotations

import copy
import math

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from .scenarios import Scenario, load_scenario
from .sim import SimError, Simulator, summary
from .sim.config import PLACEMENT_RULES, TIERS
from .step_kernel import check_action, fill_dynamic, fill_structure
from .workloads import make_workload

MODEL_FEATURES = (
    "present",  # 1 for a real model, 0 for padding
    "rate_step",  # log1p(arrivals/s over the last step)
    "rate_1min",  # log1p(EMA of arrivals/s, 1-minute time constant)
    "rate_10min",  # log1p(EMA of arrivals/s, 10-minute time constant)
    "queue",  # log1p(requests waiting)
    "oldest_wait",  # oldest waiting request's wait / SLO, clipped to [0, 10], / 10
    "warm_idle",  # warm idle instances / GPUs in the cluster
    "warm_busy",  # warm busy instances / GPUs
    "loading",  # instances in a cold start / GPUs
    "mem_copies",  # hosts holding the model in memory / hosts
    "pinned_copies",  # of those, pinned by the policy / hosts
    "load_time",  # uncontended cold-start time from the best source now / 60 s, clipped to 5
    "slo",  # SLO / 5 s
    "size",  # weights size / largest GPU memory
)
CLUSTER_FEATURES = ("free_gpus", "free_cache", "tod_sin", "tod_cos", "episode_progress")
OBS_HIGH = 25.0  # log1p features are clipped here (a rate of e^25 req/s never occurs)
CACHE_ACTIONS = ("release", "hold", "keep", "prefetch")
SOURCE_ACTIONS = ("nearest", "cloud")
_HOLD = CACHE_ACTIONS.index("hold")
_SCALARS = (int, float, bool, str, type(None))


class StepInfo(dict):
    """The ``info`` dict of a step: a plain ``dict`` whose deep copy is cheap.

    SB3's ``DummyVecEnv`` deep-copies every step's ``info``; ``copy.deepcopy`` visits each
    number through its dispatch table, which cost more than a third of CartPole's whole step.
    Numbers and strings are immutable, so sharing them is what a deep copy does anyway; any
    other value (nested dicts, the arrays wrappers add on the last step) is deep-copied.
    """

    __slots__ = ()

    def __deepcopy__(self, memo):
        out = StepInfo()
        for k, v in self.items():
            out[k] = v if type(v) in _SCALARS else copy.deepcopy(v, memo)
        return out

    def __reduce__(self):  # pickles (SubprocVecEnv) as the plain dict it is
        return (dict, (dict(self),))


class ServerlessGPUEnv(gym.Env):
    """Autoscaling, placement and caching of DL models on a GPU cluster with cold starts.

    ## Description
    A serverless inference platform serves a catalog of models on a cluster of GPU hosts (see
    :mod:`envs.sim`). Requests for a model with no warm instance wait for a cold start: sandbox
    start, runtime initialisation, then the weights are fetched from the nearest tier holding
    them (the host's own memory, another host's memory through the remote memory pool, the
    local disk, or cloud storage) over shared links, copied to the GPU and deserialised. The
    agent decides every control interval, per model, how many instances to run, where new ones
    go, which tier they load from, and which models stay in the memory pool. One step covers
    ``scenario.step_s`` simulated seconds (10 s by default: the scale of Knative's 6 s panic
    window and well below cold-start times of 5-150 s, so a step can react to a burst).

    ## Action Space
    ``MultiDiscrete`` with 4 entries per model slot (``max_models`` slots, padding included),
    model-major: ``[scale, placement, source, cache] * max_models``.

    | entry | choices | effect |
    |---|---|---|
    | scale | ``scale_deltas`` (default -4, -1, 0, +1, +2, +4) | change the instance count (scale-in removes idle, then loading, then drains busy instances) |
    | placement | ``locality``, ``least_loaded``, ``pack``, then one per host | where this step's new instances go |
    | source | ``nearest``, ``cloud`` | tier new instances load from: the sourcing rule's nearest copy, or cloud storage |
    | cache | ``release``, ``hold``, ``keep``, ``prefetch`` | unpin and drop unused memory copies; nothing; pin copies; pin and copy into one more host's memory |

    ``action_masks()`` returns the valid choices (booleans, concatenated per entry) for
    sb3-contrib's MaskablePPO. A masked choice is a no-op for that entry, counted in
    ``info["invalid_actions"]``. Scale-out that finds fewer free GPUs than asked starts what fits.

    ## Observation Space
    ``Box(0, 25, (max_models * 14 + 5,), float32)``: 14 features per model slot (zeros for
    padding) followed by 5 cluster features.

    | feature | meaning |
    |---|---|
    | present | 1 for a real model, 0 for padding (the mask) |
    | rate_step, rate_1min, rate_10min | log1p of the arrival rate (req/s): last step, EMAs with 1 and 10 minute time constants |
    | queue | log1p(waiting requests) |
    | oldest_wait | oldest waiting request's wait / SLO, clipped to 10, / 10 |
    | warm_idle, warm_busy, loading | instances in each state / GPUs in the cluster |
    | mem_copies, pinned_copies | hosts holding the model in memory (pinned) / hosts |
    | load_time | uncontended cold-start time from the best source now / 60 s (clipped to 5) |
    | slo, size | SLO / 5 s; weights / largest GPU memory |
    | free_gpus, free_cache | cluster-wide fractions |
    | tod_sin, tod_cos | time of day of the workload window (shifted to [0, 1]) |
    | episode_progress | elapsed fraction of the episode |

    ## Rewards
    ``reward = -sum_k weight_k * component_k``, weights from ``scenario.reward``; the components
    are in ``info["reward_components"]`` every step (as penalties, >= 0).

    | component | default weight | per step |
    |---|---|---|
    | slo | 1.0 | requests dispatched this step whose latency exceeds their SLO / mean requests per step of the episode |
    | drop | 1.0 | requests dropped this step (timeout) / mean requests per step |
    | cost | 0.5 | dollars spent this step (GPU-seconds, pool memory, egress) / price of every GPU for one step |

    The defaults make a step where every request misses its SLO cost about -1, and holding
    every GPU for a step -0.5, so keeping the whole cluster warm is never free but a policy that
    lets cold starts hit users pays more. Violations are counted when a request is dispatched.

    ## Starting State
    No instance is running and no disk holds a model. Host memories hold
    ``scenario.initial_copies`` copies of each model (model ``m``'s copies on hosts ``m, m+1, ...``
    modulo the host count, where they fit): 0 is an empty pool, 1 a pool warmed up by earlier
    traffic. The workload window is
    drawn from ``np_random``: a start time in the training part of the scenario's span (or the
    held-out part with ``split="eval"``), and its arrivals.

    ## Episode End
    Truncation after ``scenario.episode_s`` simulated seconds (``n_steps`` steps); never
    termination.

    ## Information
    Every step: cumulative ``requests_arrived``, ``requests_completed``, ``requests_dropped``,
    ``requests_pending`` (queued + in service), ``cold_starts``, ``cost_usd``,
    ``invalid_actions``, and ``reward_components``. On the final step also ``p50_latency_s``,
    ``p99_latency_s``, ``mean_latency_s``, ``slo_violation_rate``, ``gpu_utilization``,
    ``cold_starts_<tier>`` for each tier, and ``episode_metrics`` (the full summary dict).

    ## Arguments
    ``gym.make("coldstart/ServerlessGPU-v0", scenario="small", split="train", **overrides)``;
    ``scenario`` is a preset name (``envs.list_presets()``) or a YAML path; overrides replace
    scenario keys (``episode_s=600``, ``features__keep_alive_s=600``, ``reward__cost=0.2``).

    ## Version History
    * v0: initial version.
    """

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}

    def __init__(
        self,
        scenario: str | Scenario = "small",
        split: str = "train",
        render_mode: str | None = None,
        **overrides,
    ) -> None:
        self.scenario = sc = load_scenario(scenario, **overrides)
        sc.window_bounds(split)  # validates split
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}"
            )
        self.render_mode = render_mode
        self.split = split
        self.generator = make_workload(sc.workload)
        cfg = sc.sim
        self.M = len(cfg.models)
        self.K = sc.max_models
        self.H = len(cfg.hosts)
        self.G = cfg.n_gpus
        self.deltas = np.array(sc.scale_deltas, dtype=np.int64)
        self.n_place = len(PLACEMENT_RULES) + self.H
        self.nvec_model = np.array(
            [len(self.deltas), self.n_place, len(SOURCE_ACTIONS), len(CACHE_ACTIONS)],
            dtype=np.int64,
        )
        self._nvec_full = np.tile(self.nvec_model, self.K)
        self.action_space = spaces.MultiDiscrete(self._nvec_full)
        n_obs = self.K * len(MODEL_FEATURES) + len(CLUSTER_FEATURES)
        self.observation_space = spaces.Box(0.0, OBS_HIGH, shape=(n_obs,), dtype=np.float32)
        self._zero_delta = int(np.flatnonzero(self.deltas == 0)[0])
        self._noop = np.tile(np.array([self._zero_delta, 0, 0, 1]), self.K)
        self._max_gpu_mem = max(h.gpu_mem_gb for h in cfg.hosts)
        self._gpu_mem = [h.gpu_mem_gb for h in cfg.hosts]
        # EMA weights of the 1- and 10-minute arrival rates.
        self._ema_alpha = 1.0 - np.exp(-sc.step_s / np.array([60.0, 600.0]))
        # A padding slot's mask row: it may only hold (the no-op in every entry). Real models'
        # rows come from envs.step_kernel.fill_structure.
        nd = len(self.deltas)
        self._mask_absent = np.zeros(int(self.nvec_model.sum()), dtype=bool)
        self._mask_absent[[self._zero_delta, nd, nd + self.n_place, nd + self.n_place + 2 + 1]] = (
            True
        )
        # Observation template: the constant features (present, slo, size) of every slot.
        nf = len(MODEL_FEATURES)
        self._obs_template = np.zeros(self.observation_space.shape, dtype=np.float32)
        for m, spec in enumerate(cfg.models):
            self._obs_template[m * nf] = 1.0
            self._obs_template[m * nf + 12] = spec.slo_s / 5.0
            self._obs_template[m * nf + 13] = spec.size_gb / self._max_gpu_mem
        self._slo = np.array([m.slo_s for m in cfg.models])
        self._step_cost_norm = self.G * cfg.prices.gpu_usd_per_hour * sc.step_s / 3600.0
        self._offs = [int(x) for x in np.cumsum(np.r_[0, self.nvec_model[:-1]])]
        # Column of choice 0 of flat action entry i inside the flat mask, and the choices that
        # do something when valid (scale by a non-zero delta; a cache choice but "hold"):
        # placement and source matter only with a scale-out.
        block = int(self.nvec_model.sum())
        self._mask_cols = (
            np.arange(self.K, dtype=np.int64)[:, None] * block + np.asarray(self._offs)
        ).reshape(-1)
        active = np.zeros(block, dtype=bool)
        active[: len(self.deltas)] = self.deltas != 0
        c_cache = self._offs[3]
        active[c_cache : c_cache + len(CACHE_ACTIONS)] = np.arange(len(CACHE_ACTIONS)) != _HOLD
        self._active_cols = np.tile(active, self.K)
        self._ok = np.zeros(4 * self.K, dtype=bool)
        self._acting = np.zeros(self.K, dtype=np.int64)
        self._req_buf = np.zeros(5, dtype=np.int64)
        # Placement-state part (_refresh_structure): buffers, padding rows of the mask preset.
        self._block = block
        self._size_ok = np.array(
            [[g >= spec.size_gb for g in self._gpu_mem] for spec in cfg.models], dtype=bool
        ).reshape(self.M, self.H)
        self._sizes = np.array([spec.size_gb for spec in cfg.models], dtype=np.float64)
        self._mask_flat = np.tile(self._mask_absent, self.K)
        self._struct_feats = np.zeros((self.M, 4), dtype=np.float32)
        self._cluster = np.zeros(len(CLUSTER_FEATURES))
        self._tables: tuple | None = None
        self._struct_version = -1
        self._n_steps = sc.n_steps
        self._weights = sc.reward
        self.sim: Simulator | None = None

    # ------------------------------------------------------------------------------ reset ----
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        sc = self.scenario
        lo, hi = sc.window_bounds(self.split)
        if options and "start_s" in options:
            self.start_s = float(options["start_s"])
        else:
            self.start_s = float(np.floor(self.np_random.uniform(lo, hi) / 60.0) * 60.0)
        wl_rng, sim_rng = self.np_random.spawn(2)
        workload = self.generator(wl_rng, self.M, sc.episode_s, self.start_s)
        self.sim = Simulator(sc.sim, workload, sim_rng)
        for m in range(self.M):
            for c in range(sc.initial_copies):
                self.sim.seed_copy(m, (m + c) % self.H)
        self._struct_version = -1
        self.t = 0
        self._req_norm = max(1.0, workload.n_requests / sc.n_steps)
        self._rates = np.zeros((3, self.M))
        self._prev_arrived = self.sim.offsets[:-1].copy()  # absolute indices: counts by difference
        self._prev_late = 0
        self._prev_dropped = 0
        self._prev_cost = 0.0
        self.invalid_actions = 0
        self._totals = dict.fromkeys(("slo", "drop", "cost"), 0.0)
        return self._observe(), self._info()

    # ------------------------------------------------------------------------------- step ----
    def step(self, action):
        if self.sim is None:
            raise RuntimeError("call reset() before step()")
        a = np.asarray(action, dtype=np.int64).reshape(-1)
        if a.shape != (self.K * 4,):
            raise ValueError(f"action must have shape ({self.K * 4},), got {np.shape(action)}")
        self._refresh_structure()
        ok, acting = self._ok, self._acting
        bad, n_acting = check_action(
            a, self._nvec_full, self._mask_flat, self._mask_cols, self._active_cols, ok, acting
        )
        if bad < 0:
            raise ValueError(
                f"action {a.tolist()} is outside the MultiDiscrete nvec {self.action_space.nvec.tolist()}"
            )
        self.invalid_actions += bad
        if n_acting:
            for m in acting[:n_acting].tolist():
                self._apply(m, a[4 * m : 4 * m + 4].tolist(), ok[4 * m : 4 * m + 4].tolist())
        sim = self.sim
        self.t += 1
        sim.run_until(self.t * self.scenario.step_s)
        obs = self._observe()  # also counts the requests (self._req_buf) for reward and info
        reward, comps = self._reward()
        truncated = self.t >= self._n_steps
        info = self._info(cost_usd=self._prev_cost)  # _reward() just computed the cost
        info["reward_components"] = comps
        if truncated:
            self._final_info(info)
        return obs, reward, False, truncated, info

    def _apply(self, m: int, act: list[int], ok: list[bool]) -> None:
        """Carry out model ``m``'s four choices; ``ok[i]``: choice ``i`` is valid (else a no-op)."""
        sim = self.sim
        cache = CACHE_ACTIONS[act[3]] if ok[3] else "hold"
        if cache == "release":
            for h in range(self.H):
                sim.cache_keep(m, h, False)
                sim.cache_evict(m, h)
        elif cache in ("keep", "prefetch"):
            for h in sim.hosts_with_copy(m):
                sim.cache_keep(m, h, True)
            if cache == "prefetch":
                h = self._prefetch_host(m)
                if h >= 0:
                    sim.prefetch(m, h)
        delta = int(self.deltas[act[0]]) if ok[0] else 0
        if delta < 0:
            sim.scale_down(m, -delta)
        elif delta > 0:
            place = act[1] if ok[1] else 0
            source = "cloud" if (ok[2] and act[2] == 1) else None
            for _ in range(delta):
                if place < len(PLACEMENT_RULES):
                    h = sim.choose_host(m, PLACEMENT_RULES[place])
                else:
                    h = place - len(PLACEMENT_RULES)
                    if not sim.free_gpus(h):
                        h = -1
                if h < 0:
                    break
                try:
                    sim.scale_up(m, h, source)
                except SimError:  # pragma: no cover - masks rule these out
                    self.invalid_actions += 1
                    break

    def _prefetch_host(self, m: int) -> int:
        """Host whose memory would take a prefetched copy of ``m`` (most free memory), or -1."""
        sim = self.sim
        best, best_free = -1, -1.0
        for h in range(self.H):
            c = sim.mem[h]
            if m not in c and c.can_fit(m) and not sim.prefetch_pending(m, h):
                if c.free_gb > best_free:
                    best, best_free = h, c.free_gb
        return best

    # ---------------------------------------------------------- placement-state features ----
    def _refresh_structure(self) -> None:
        """Recompute the masks and the observation features that depend only on placement
        state (instances, copies, prefetches), if the simulator changed it since last time.

        The work is :func:`envs.step_kernel.fill_structure` over the arrays the simulator
        keeps; ``tests/test_env_fastpath.py`` checks it against a plain recomputation."""
        sim = self.sim
        if self._struct_version == sim.version:
            return
        if self._tables is None:  # a function of the (frozen) config: once per env
            t = sim.load_time_tables()
            self._tables = (t["local_mem"], t["remote_mem"], t["disk"], t["cloud"])
        f = self.scenario.sim.features
        fill_structure(
            self._mask_flat, self._block, self._struct_feats, self._cluster, self.deltas,
            len(PLACEMENT_RULES), sim.free_per_host, self._size_ok, sim.n_loading,
            sim.n_serving, sim.mem_state, sim.mem_used, sim.mem_capacity, sim.disk_state,
            sim.prefetch_count, sim._out_transfers, self._sizes, *self._tables, f.host_cache,
            f.remote_pool, self.G,
        )  # fmt: skip
        self._struct_version = sim.version

    # ------------------------------------------------------------------------------ masks ----
    def action_masks(self) -> np.ndarray:
        """Flat boolean mask over every entry's choices (MaskablePPO's MultiDiscrete layout)."""
        if self.sim is None:
            raise RuntimeError("call reset() before action_masks()")
        self._refresh_structure()
        return self._mask_flat.copy()

    # ------------------------------------------------------------------------ observation ----
    def _observe(self) -> np.ndarray:
        sim, sc = self.sim, self.scenario
        self._refresh_structure()
        out = self._obs_template.copy()
        tod = 2 * math.pi * ((self.start_s + sim.now) % 86400.0) / 86400.0
        cl = self._cluster  # CLUSTER_FEATURES; the first two from _refresh_structure
        cl[2], cl[3], cl[4] = (
            0.5 + 0.5 * math.sin(tod),
            0.5 + 0.5 * math.cos(tod),
            self.t / self._n_steps,
        )
        fill_dynamic(
            out, len(MODEL_FEATURES), sim.now, sc.step_s, sim.arrivals, sim.offsets, sim.arrived,
            sim.head, self._prev_arrived, self._rates, self._ema_alpha, self._slo, sim.slot_free,
            sim.slot_on, sim.slot_batch, self.G, sim.n_serving, sim.served, sim.dropped, sim.late,
            OBS_HIGH, self._req_buf, self._struct_feats, cl,
        )  # fmt: skip
        self._req = self._req_buf.tolist()  # arrived, started, dropped, late, in service
        return out

    # ----------------------------------------------------------------------------- reward ----
    def _reward(self) -> tuple[float, dict]:
        sim = self.sim
        _, _, dropped, late, _ = self._req  # cumulative; late counted at dispatch
        viol, drops = late - self._prev_late, dropped - self._prev_dropped
        self._prev_late, self._prev_dropped = late, dropped
        cost = sim.cost_usd()
        slo, drop = viol / self._req_norm, drops / self._req_norm
        cost_c = (cost - self._prev_cost) / self._step_cost_norm
        self._prev_cost = cost
        w = self._weights
        reward = -(w.slo * slo + w.drop * drop + w.cost * cost_c)
        tot = self._totals
        tot["slo"] += slo
        tot["drop"] += drop
        tot["cost"] += cost_c
        return float(reward), StepInfo(slo=slo, drop=drop, cost=cost_c)

    # ------------------------------------------------------------------------------- info ----
    def _info(self, cost_usd: float | None = None) -> dict:
        sim = self.sim
        arrived, started, dropped, _, in_service = self._req  # Simulator.request_counts()
        return StepInfo(
            {
                "requests_arrived": arrived,
                "requests_completed": started - in_service,
                "requests_dropped": dropped,
                "requests_pending": arrived - started - dropped + in_service,  # queued + in service
                "cold_starts": sum(sim.cold_starts.values()),
                "cost_usd": float(sim.cost_usd() if cost_usd is None else cost_usd),
                "invalid_actions": self.invalid_actions,
                "sim_time_s": float(sim.now),
            }
        )

    def _final_info(self, info: dict) -> None:
        s = summary(self.sim)
        for k in (
            "p50_latency_s",
            "p99_latency_s",
            "mean_latency_s",
            "slo_violation_rate",
            "gpu_utilization",
        ):
            info[k] = s[k]
        for tier in TIERS:
            info[f"cold_starts_{tier}"] = s[f"cold_starts_{tier}"]
        info["episode_metrics"] = s
        info["episode_reward_components"] = dict(self._totals)

    def render(self):
        if self.render_mode is None or self.sim is None:
            return None
        if self.render_mode == "rgb_array":
            return self._render_rgb()
        sim = self.sim
        lines = [f"t={sim.now:.0f}s  cost=${sim.cost_usd():.3f}  {sim.request_counts()}"]
        for m, spec in enumerate(self.scenario.sim.models):
            idle, busy, loading = sim.counts(m)
            lines.append(
                f"  {spec.name:>18}: queue={sim.queue_len(m):4d} warm={idle + busy} busy={busy} "
                f"loading={loading} copies={len(sim.hosts_with_copy(m))}"
            )
        return "\n".join(lines)

    def _render_rgb(self) -> np.ndarray:
        """One row per GPU (colour = model; dim = loading, mid = idle, bright = busy), then one
        row per model whose length is its queue (log scale). Shape ``(rows * 16, 256, 3)``."""
        sim = self.sim
        palette = np.array(
            [[31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189],
             [140, 86, 75], [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207]],
            dtype=np.float32,
        )  # fmt: skip
        rows = self.G + self.M
        img = np.full((rows * 16, 256, 3), 255, dtype=np.uint8)
        for g, inst in enumerate(sim.gpu_instance):
            if inst is None:
                continue
            busy = sim.slot_free[inst.model, g] > sim.now
            shade = 0.35 if inst.state == 0 else (1.0 if busy else 0.65)
            img[g * 16 + 2 : g * 16 + 14, :] = (palette[inst.model % 10] * shade).astype(np.uint8)
        for m in range(self.M):
            y = (self.G + m) * 16
            n = int(min(256, 32 * math.log1p(sim.queue_len(m))))
            img[y + 4 : y + 12, :n] = palette[m % 10].astype(np.uint8)
        return img
