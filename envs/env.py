"""The Gymnasium environment over the cold-start simulator: ``coldstart/ServerlessGPU-v1``."""

from __future__ import annotations

import copy
import dataclasses
import math

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from . import layout as L
from .observe import N_MODEL, Observer
from .scenarios import Scenario, load_scenario
from .sim import Simulator, summary
from .sim.config import TIERS
from .stats import ModelStats
from .step_kernel import free_gpu_fits, window_counts
from .warmup import WarmupPolicy
from .workloads import make_workload

_SCALARS = (int, float, bool, str, type(None))
_HOLD, _RELEASE = L.CACHE_CHOICES.index("hold"), L.CACHE_CHOICES.index("release")
_KEEP, _PREFETCH = L.CACHE_CHOICES.index("keep"), L.CACHE_CHOICES.index("prefetch")


class StepInfo(dict):
    """The ``info`` dict of a step: a plain ``dict`` whose deep copy is cheap.

    SB3's ``DummyVecEnv`` deep-copies every step's ``info``; numbers and strings are immutable,
    so sharing them is what a deep copy does anyway; any other value is deep-copied.
    """

    __slots__ = ()

    def __deepcopy__(self, memo):
        out = StepInfo(self)
        for k, v in self.items():
            if type(v) is StepInfo:
                out[k] = v.__deepcopy__(memo)
            elif type(v) not in _SCALARS:
                out[k] = copy.deepcopy(v, memo)
        return out

    def __reduce__(self):  # pickles (SubprocVecEnv) as the plain dict it is
        return (dict, (dict(self),))


class ServerlessGPUEnv(gym.Env):
    """Autoscaling, placement, sourcing and caching of DL models on a GPU cluster with cold starts.

    ## Description
    A serverless inference platform serves a catalog of models on a cluster of GPU hosts (see
    :mod:`envs.sim`). A cold start runs a sandbox start, runtime initialisation, then fetches the
    weights from the nearest tier holding them (the host's own memory, another host's memory
    through the remote memory pool, the local disk, or cloud storage) over shared links, copies
    them to the GPU and deserialises them. The platform behaves as real ones do:

    * **No policy can refuse to serve.** A request for a model with no warm or loading instance
      makes the platform start one at once (Knative's activator, AWS Lambda's on-demand start),
      placed and sourced by the model's standing rules; with no free GPU it retries whenever
      one frees up. Requests drop only by timeout (``features.request_timeout_s``).
    * **The policy decides what platforms let an autoscaler decide:** pre-warming and extra
      replicas (scale-out), scale-in and so keep-alive (an instance lives until scaled in, or
      ``features.keep_alive_s``), where new instances go (a placement rule, which the platform's
      own cold starts follow too), which tier they load from (nearest copy or cloud), and what
      the memory pool holds (pin, release, prefetch copies).

    Decisions are made one model at a time (as Decima picks one node at a time): each control
    interval of ``scenario.step_s`` simulated seconds (10 s by default: Knative's 6 s panic
    window's scale, well below cold starts of 5-150 s) has one step per model, in catalog order;
    the observation shows the focused model. Simulated time advances after the last model's step.
    One policy is shared across models, and the spaces do not depend on the number of models.

    ## Action Space
    ``Discrete(n)``: one index over the product of four entries (layout: :mod:`envs.layout`),
    ``n = len(scale_deltas) * 5 * 3 * 4`` (360 with the default deltas).

    | entry | choices | effect |
    |---|---|---|
    | scale | ``scale_deltas`` (default -4, -1, 0, +1, +2, +4) | change the instance count (scale-in removes idle, then loading, then drains busy instances); scale-out that finds fewer free GPUs than asked starts what fits |
    | placement | ``keep``, ``locality``, ``least_loaded``, ``pack``, ``fastest`` | the model's standing placement rule, for this step's scale-out and the platform's cold starts |
    | source | ``keep``, ``nearest``, ``cloud`` | the standing source rule: the sourcing rule's nearest copy, or cloud storage |
    | cache | ``release``, ``hold``, ``keep``, ``prefetch`` | unpin and drop unused memory copies; nothing; pin copies; pin and copy into one more host's memory |

    ``action_masks()`` gives the valid actions (booleans) for sb3-contrib's MaskablePPO: scale-in
    needs an instance it may remove (while requests of the model wait, the platform keeps one:
    scale-in cannot cancel the last instance or cold start serving them), scale-out a free GPU
    the model fits, prefetch a host with room and no copy.
    A masked action is carried out as the no-op (``layout.noop``) and counted in
    ``info["invalid_actions"]``. An action outside the space, or not of an integer type (3.0 is
    refused, as ``action_space.contains`` refuses it), raises ``ValueError``.

    ## Observation Space
    ``Box(0, 25, (33,), float32)``: ``layout.MODEL_FEATURES`` of the focused model, then
    ``layout.CLUSTER_FEATURES``.

    | feature | meaning |
    |---|---|
    | rate_step, rate_1min, rate_10min | log1p of the arrival rate (req/s): last interval, EMAs with 1 and 10 minute time constants |
    | queue, oldest_wait | log1p(waiting requests); oldest waiting request's wait / SLO, clipped to 10, / 10 |
    | warm_idle, warm_busy, loading | instances in each state / GPUs in the cluster |
    | mem_copies, pinned_copies | hosts holding the model in memory (pinned) / hosts |
    | load_time | ``Simulator.best_load_s``: uncontended cold start from the tier its cold start would use (the sourcing rule's nearest copy, or cloud under its ``cloud`` source rule), / 60 s (clipped to 5) |
    | slo, size | SLO / 5 s; weights / largest GPU memory |
    | since_last | log1p(seconds since the model's last request) |
    | idle_p5, idle_p99, idle_count | the model's idle-time histogram (what ``histogram`` uses): log1p of its 5th and 99th percentiles (s), log1p(idle times recorded) |
    | idle_now, hold_left, prewarm_in | log1p of: seconds since the model's last active interval ended (4 h if never active); what is left of ``histogram``'s keep-alive window, and the time until its pre-warm window opens (0 outside them; the windows of :func:`envs.stats.histogram_windows`) |
    | since_scale_out, since_scale_in | log1p(seconds since this episode's policy last scaled the model out / in), 4 h if never |
    | rule_locality ... rule_fastest, rule_cloud | the standing placement rule (one-hot) and source rule |
    | free_gpus, free_cache | cluster-wide fractions |
    | tod_sin, tod_cos, episode_progress | time of day (shifted to [0, 1]); elapsed fraction of the episode |
    | focus | the focused model's index / models |

    ## Rewards
    Money (:class:`envs.scenarios.RewardPrices`), paid on the step that advances time, 0 on the
    others: ``reward = -scale * (cost + late + drop)`` with, over the interval,

    | component | dollars |
    |---|---|
    | cost | GPU-seconds held (loading included) x GPU price, pool memory GB-seconds x memory price, egress (``scenario.prices``) |
    | late | ``late_usd`` ($0.05, a refund) x requests dispatched past their SLO + ``late_usd_per_s`` ($0.005) x seconds past the SLO, summed over them |
    | drop | ``drop_usd`` ($0.50) x requests dropped (timeout); it must exceed the most a late request can cost |

    ``scale`` (100) reports the reward in cents. Serving a request late always scores better
    than letting it drop, and a model with queued requests always keeps an instance (warm or
    loading) that serves them. Components (dollars) are in ``info["reward_components"]`` every step.

    ## Starting State
    The part of the workload before the window (up to ``scenario.warmup_s``, 600 s) is played
    under the documented reference policy :class:`envs.warmup.WarmupPolicy` (reactive scaling
    with a 600 s keep-alive, LRU memory copies); it is not counted in reward or metrics. Before
    it, host memories hold ``scenario.initial_copies`` copies of each model. ``warmup_s: 0``
    starts from an empty cluster. The window's start is drawn from ``np_random`` in the training
    part of the scenario's span (or the held-out part with ``split="eval"``).

    ## Episode End
    Truncation after ``scenario.episode_s`` simulated seconds (``n_steps`` intervals of
    ``n_models`` steps each); never termination.

    ## Information
    Every step: ``requests_arrived``, ``requests_completed``, ``requests_dropped``,
    ``requests_pending`` (queued + in service) over the requests that arrived in the window
    (refreshed when time advances), ``cold_starts``, ``cost_usd``, ``invalid_actions``,
    ``sim_time_s``, ``focus`` and ``reward_components``. On the final step also the episode's
    drop-aware metrics (:mod:`envs.sim.metrics`: a dropped request counts at the timeout):
    ``p50_latency_s``, ``p99_latency_s``, ``mean_latency_s``, ``slo_violation_rate``,
    ``drop_rate``, ``goodput_rps``, ``gpu_utilization``, ``cold_starts_<tier>``, and
    ``episode_metrics`` (the full summary, with ``"models"``: per-model metrics).

    ## Arguments
    ``gym.make("coldstart/ServerlessGPU-v1", scenario="small", split="train", **overrides)``;
    ``scenario`` is a preset name (``envs.list_presets()``) or a YAML path; overrides replace
    scenario keys (``episode_s=600``, ``warmup_s=0``, ``reward__drop_usd=0.05``).

    ## Version History
    * v1: platform semantics (the platform starts an instance for a request with none, and a
      model with waiting requests keeps one, so no policy can refuse to serve: without the
      second rule, scaling in every step cancelled each restart and dropped 97% of `paper`'s
      requests, and a MaskablePPO run collapsed into 40% drops); a reward in money that refunds and grades late requests and
      prices a drop above the worst late request (v0 charged a late and a dropped request
      alike, and a trained agent learned to drop sparse models' requests);
      drop-aware metrics (v0's percentiles left drops out); episodes start after a warm-up
      (v0 started from an empty cluster, so every policy dropped the first minutes' requests);
      a ``Discrete`` action per model with placement and source rules (v0's 16-72 entry
      ``MultiDiscrete`` trained stock SB3 PPO at 0.24x CartPole's speed, and its composite
      wrapper hid placement); observation with the idle-time statistics and standing rules.
      Revised on 2026-12-02 (observation 28 -> 33 features; models trained before it do not
      load): ``histogram``'s windows and where the model stands in them (``idle_now``,
      ``hold_left``, ``prewarm_in``: the 5th/99th percentiles alone do not say which regime
      the policy is in), and the policy's own last scaling (``since_scale_out``,
      ``since_scale_in``): a cloned agent scaled a rarely used model's idle instance in and
      out on alternate intervals, 87 cold starts an episode on ``paper`` against
      ``histogram``'s 30, with nothing in its input saying it had just scaled in.
    * v0: initial version (retired: its layouts would have been a second definition of each).
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
        feats = dataclasses.replace(sc.sim.features, autostart=True)  # v1: the platform's activator
        self.cfg = cfg = dataclasses.replace(sc.sim, features=feats)
        self.M = len(cfg.models)
        self.H = len(cfg.hosts)
        self.G = cfg.n_gpus
        self.layout = L.ActionLayout(sc.scale_deltas)
        self.action_space = spaces.Discrete(self.layout.n)
        self.observation_space = spaces.Box(0.0, L.OBS_HIGH, shape=(L.N_OBS,), dtype=np.float32)
        self._n_steps = sc.n_steps
        self._obs = Observer(cfg, sc.n_steps)
        self._prices = sc.reward
        # Masks by (has an instance, a free GPU fits, prefetch possible): 8 patterns, each as
        # (joint mask, scale entry mask, cache entry mask).
        d = self.layout.deltas
        self._masks = {}
        for inst in (False, True):
            for fit in (False, True):
                for pre in (False, True):
                    scale_ok = (d == 0) | ((d > 0) & fit) | ((d < 0) & inst)
                    cache_ok = np.array([True, True, True, pre])
                    joint = self.layout.joint_mask(scale_ok, cache_ok)
                    for arr in (joint, scale_ok, cache_ok):
                        arr.setflags(write=False)  # shared: action_masks() hands out copies
                    self._masks[inst, fit, pre] = (joint, scale_ok, cache_ok)
        self._deltas = self.layout.deltas.tolist()
        self._struct: dict = {}  # prefetch hosts, by model, while sim.version is unchanged
        self._struct_version = -1
        self._info_key = None  # (sim.version, t) of the cached cost and cold starts of info
        self._info_base = None  # info's entries that change only when time moves
        self.sim: Simulator | None = None

    # ------------------------------------------------------------------------------ reset ----
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        sc = self.scenario
        lo, hi = sc.window_bounds(self.split)
        if options and "start_s" in options:
            self.start_s = float(options["start_s"])
        else:
            # Whole minutes inside [lo, hi]: up for the first, so a held-out window never
            # starts before the cut (and so never in training time).
            x = self.np_random.uniform(lo, hi)
            self.start_s = float(min(math.ceil(lo / 60.0) * 60.0 + math.floor(
                (x - lo) / 60.0) * 60.0, hi))
        # The warm-up is the part of the span just before the window (shorter at its start);
        # simulated seconds, which replay time_scale seconds of a trace each.
        ts = sc.time_scale
        self.warmup_s = float(min(sc.warmup_s, self.start_s / ts))
        wl_rng, sim_rng = self.np_random.spawn(2)
        workload = self.generator(
            wl_rng, self.M, self.warmup_s + sc.episode_s, self.start_s - self.warmup_s * ts
        )
        self.sim = sim = Simulator(self.cfg, workload, sim_rng)
        self._struct_version = -1  # (a new simulator counts its versions from 0 again)
        for m in range(self.M):
            for c in range(sc.initial_copies):
                sim.seed_copy(m, (m + c) % self.H)
        self.stats = ModelStats(sim, sc.step_s)
        if self.warmup_s > 0:
            ref = WarmupPolicy(sim, sc.step_s)
            for k in range(1, math.ceil(self.warmup_s / sc.step_s - 1e-9) + 1):
                ref.act(self.stats.last_arrivals)
                self._advance(min(k * sc.step_s, self.warmup_s))
        sim.open_window()
        self._cold_base = sum(sim.window_base["cold_starts"].values())  # (fixed for the window)
        self.t = 0
        self._new_interval()
        self.focus = 0
        self.invalid_actions = 0
        self._prev_late, self._prev_late_s = int(sim.late.sum()), float(sim.late_s.sum())
        self._prev_dropped = int(sim.dropped.sum())
        self._prev_cost = sim.cost_usd()
        self._totals = dict.fromkeys(("cost", "late", "drop"), 0.0)
        self._counts = np.zeros(4, dtype=np.int64)
        self._count_upto = sim.window_first.copy()  # window_counts' incremental state
        self._count_final = np.zeros(2, dtype=np.int64)
        self._sums = np.zeros(3)  # window_counts' totals: late, late seconds, dropped
        self._last_comps = StepInfo(cost=0.0, late=0.0, drop=0.0)
        return self._observe(), self._info()

    def _advance(self, t_end: float) -> None:
        self.sim.run_until(t_end)
        self.stats.update(self.sim)

    def _new_interval(self) -> None:
        """Simulated time moved: the observation's demand features, once for every model."""
        sim = self.sim
        tod_s = self.start_s + sim.now - self.warmup_s
        self._obs.new_interval(sim, self.stats, self.t, tod_s)
        self._info_key = self._info_base = None

    # ------------------------------------------------------------------------------- step ----
    def step(self, action):
        if self.sim is None:
            raise RuntimeError("call reset() before step()")
        a = self._check_action(action)
        m = self.focus
        if not self._valid(m, a):
            self.invalid_actions += 1
            a = self.layout.noop
        if a != self.layout.noop:
            self._apply(m, a)
        self.focus += 1
        reward = 0.0
        if self.focus == self.M:
            self.focus = 0
            self.t += 1
            self._advance(self.warmup_s + self.t * self.scenario.step_s)
            self._new_interval()
            reward = self._reward()
        truncated = self.t >= self._n_steps
        info = self._info()
        if truncated:
            self._final_info(info)
        return self._observe(), reward, False, truncated, info

    def _check_action(self, action) -> int:
        if type(action) is int or isinstance(action, np.integer):  # the common case, fast
            if 0 <= action < self.layout.n:
                return int(action)
        arr = np.asarray(action)
        if arr.size != 1 or arr.dtype.kind not in "iu":  # as action_space.contains() says
            raise ValueError(
                f"action must be one integer in [0, {self.layout.n - 1}] (Discrete), got "
                f"{action!r} (dtype {arr.dtype}, shape {arr.shape})"
            )
        x = int(arr.reshape(()))
        if not 0 <= x < self.layout.n:
            raise ValueError(f"action must be an integer in [0, {self.layout.n - 1}], got {x}")
        return x

    def _apply(self, m: int, a: int) -> None:
        """Carry out a valid action ``a`` for model ``m``."""
        sim = self.sim
        s, p, src, c = self.layout.decode(a)
        if p or src:  # (one call: the placement rule, then the source rule)
            sim.set_rules(
                m,
                placement=L.PLACEMENT_CHOICES[p] if p else None,
                source=("cloud" if L.SOURCE_CHOICES[src] == "cloud" else None) if src else "keep",
            )
        if c == _RELEASE:
            for h in sim.hosts_with_copy(m):
                sim.cache_keep(m, h, False)
                sim.cache_evict(m, h)
        elif c in (_KEEP, _PREFETCH):
            for h in sim.hosts_with_copy(m):
                sim.cache_keep(m, h, True)
            if c == _PREFETCH:
                h = self._prefetch_host(m)  # (after the pins above: asked again if they moved)
                if h >= 0:
                    sim.prefetch(m, h)
        delta = self._deltas[s]
        self.stats.scaled(m, delta, sim.now)
        if delta < 0:
            sim.scale_down(m, -delta)  # the simulator keeps a queued model's last instance
        for _ in range(max(delta, 0)):
            h = sim.choose_host(m, sim.rule_placement[m])
            if h < 0:
                break
            sim.scale_up(m, h, sim.rule_source[m])

    # ------------------------------------------------------------------------------ masks ----
    def _prefetch_host(self, m: int) -> int:
        """``Simulator.prefetch_host(m)``, cached against ``Simulator.version`` (placement
        state: instances, copies, pins, prefetches, rules)."""
        sim = self.sim
        if sim.version != self._struct_version:
            self._struct.clear()
            self._struct_version = sim.version
        out = self._struct.get(m)
        if out is None:
            out = self._struct[m] = sim.prefetch_host(m)
        return out

    def _can_prefetch(self, m: int) -> bool:
        """Whether a prefetch of ``m`` has a host."""
        return self._prefetch_host(m) >= 0

    def _flags(self, m: int, need_prefetch: bool = True) -> tuple[bool, bool, bool]:
        """(an instance may be removed, a free GPU fits, prefetch possible) of ``m``: the mask
        pattern. The prefetch check (a loop over hosts) is made only when asked."""
        sim = self.sim
        inst = sim.removable(m) > 0  # the queue moves without a version change: not cached
        fit = free_gpu_fits(sim.fits, sim.free_per_host, m)
        pre = need_prefetch and self._can_prefetch(m)
        return inst, fit, pre

    def _mask(self, m: int) -> np.ndarray:
        return self._masks[self._flags(m)][0]

    def _valid(self, m: int, a: int) -> bool:
        """Whether action ``a`` is unmasked for ``m`` (the joint mask's entry, computed from the
        two entries that can be masked)."""
        s, _, _, c = self.layout.decode(a)
        d, sim = self._deltas[s], self.sim
        if c == _PREFETCH and not self._can_prefetch(m):
            return False
        if d > 0:
            return free_gpu_fits(sim.fits, sim.free_per_host, m)
        return d == 0 or sim.removable(m) > 0

    def action_masks(self) -> np.ndarray:
        """Valid actions for the focused model, shape ``(n,)`` (MaskablePPO's layout)."""
        if self.sim is None:
            raise RuntimeError("call reset() before action_masks()")
        return self._mask(self.focus).copy()

    def entry_masks(self, m: int) -> tuple[np.ndarray, np.ndarray]:
        """``(scale_ok, cache_ok)`` of model ``m`` now: the per-entry masks behind the joint one
        (placement and source choices are always valid). Read-only arrays."""
        _, scale_ok, cache_ok = self._masks[self._flags(m)]
        return scale_ok, cache_ok

    # ------------------------------------------------------------------------ observation ----
    def model_features(self, m: int) -> np.ndarray:
        """``layout.MODEL_FEATURES`` of model ``m`` now, float32 ``(n_model_features,)``."""
        return self._obs.row(self.sim, m)[:N_MODEL].copy()

    def cluster_features(self, focus: int | None = None) -> np.ndarray:
        """``layout.CLUSTER_FEATURES`` now, float32, the ``focus`` feature for model ``focus``
        (default: the focused model)."""
        return self.observation(self.focus if focus is None else focus)[N_MODEL:]

    def observation(self, m: int) -> np.ndarray:
        """The observation the env gives when model ``m`` is focused, now (float32 ``(N_OBS,)``;
        for wrappers that show several models at once). Built by :class:`envs.observe.Observer`."""
        return self._obs.observation(self.sim, m)

    def _observe(self) -> np.ndarray:
        return self._obs.observation(self.sim, self.focus)

    # ----------------------------------------------------------------------------- reward ----
    def _reward(self) -> float:
        sim, p = self.sim, self._prices
        window_counts(sim.status, sim.finish_s, sim.window_first, sim.arrived, sim.now,
                      self._counts, self._count_upto, self._count_final, sim.late, sim.late_s,
                      sim.dropped, self._sums)  # fmt: skip
        n_late, late_s, n_dropped = self._sums.tolist()
        if late_s != late_s:  # (nan: more models than the compiled sum takes)
            late_s = float(sim.late_s.sum())
        late, dropped, cost = int(n_late), int(n_dropped), sim.cost_usd()
        comps = StepInfo(
            cost=cost - self._prev_cost,
            late=p.late_dollars(late - self._prev_late, late_s - self._prev_late_s),
            drop=p.drop_dollars(dropped - self._prev_dropped),
        )
        self._prev_late, self._prev_late_s = late, late_s
        self._prev_dropped, self._prev_cost = dropped, cost
        for k, v in comps.items():
            self._totals[k] += v
        self._last_comps = comps
        return -p.scale * (comps["cost"] + comps["late"] + comps["drop"])

    # ------------------------------------------------------------------------------- info ----
    def _info(self) -> dict:
        sim = self.sim
        key = (sim.version, self.t)  # cost and cold starts change with neither: not recomputed
        if key != self._info_key:
            self._info_key = key
            self._info_cost = float(sim.cost_usd() - sim.window_base["cost_usd"])
            self._info_cold = sum(sim.cold_starts.values()) - self._cold_base
        base = self._info_base
        if base is None:  # (time moved: the window's counts and the clock, once an interval)
            arrived, completed, dropped, pending = self._counts.tolist()
            base = self._info_base = StepInfo(
                requests_arrived=arrived,
                requests_completed=completed,
                requests_dropped=dropped,
                requests_pending=pending,
                cold_starts=0,
                cost_usd=0.0,
                invalid_actions=0,
                sim_time_s=float(sim.now - self.warmup_s),
                focus=0,
                reward_components=None,
            )
        info = StepInfo(base)
        info["cold_starts"] = self._info_cold
        info["cost_usd"] = self._info_cost
        info["invalid_actions"] = self.invalid_actions
        info["focus"] = self.focus
        info["reward_components"] = StepInfo(self._last_comps if self.focus == 0 else _ZERO_COMPS)
        return info

    def _final_info(self, info: dict) -> None:
        s = summary(self.sim, per_model=True)
        for k in ("p50_latency_s", "p99_latency_s", "mean_latency_s", "slo_violation_rate",
                  "drop_rate", "goodput_rps", "gpu_utilization"):  # fmt: skip
            info[k] = s[k]
        for tier in TIERS:
            info[f"cold_starts_{tier}"] = s[f"cold_starts_{tier}"]
        info["episode_metrics"] = s
        info["episode_reward_components"] = dict(self._totals)

    # ----------------------------------------------------------------------------- render ----
    def render(self):
        if self.render_mode is None or self.sim is None:
            return None
        if self.render_mode == "rgb_array":
            return self._render_rgb()
        sim = self.sim
        lines = [f"t={sim.now - self.warmup_s:.0f}s  cost=${sim.cost_usd():.3f}  focus={self.focus}"]
        for m, spec in enumerate(self.cfg.models):
            idle, busy, loading = sim.counts(m)
            lines.append(
                f"  {spec.name:>18}: queue={sim.queue_len(m):4d} warm={idle + busy} busy={busy} "
                f"loading={loading} copies={len(sim.hosts_with_copy(m))} "
                f"rules={sim.rule_placement[m]}/{sim.rule_source[m] or 'nearest'}"
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


_ZERO_COMPS = StepInfo(cost=0.0, late=0.0, drop=0.0)
