"""Scenarios: a cluster, a catalog, a workload and the episode/reward settings, from YAML.

A scenario is a preset name (``envs/presets/<name>.yaml``) or a path to a YAML file of the same
layout. Every key is validated; an unknown key names the valid ones and the closest, a bad value
names the field and the allowed range. ``list_presets()`` returns each preset's one-line
description.

YAML layout (all keys optional except ``models`` and ``workload``)::

    description: one line
    hosts: [{count: 2, n_gpus: 2, gpu_mem_gb: 24, cache_gb: 64, ...}]   # HostSpec fields
    #   or {profile: my-host.yaml, count: 2}: a host profile written by benchmarks.calibrate_host
    #   (relative to this file; explicit keys win over the profile's)
    models: [bert-base, {base: gpt2-xl, slo_s: 3}, {name: mine, size_gb: 1, ...}]  # names/specs
            # {base: NAME, copies: 3} deploys 3 distinct models NAME.1..NAME.3 of that shape
    cloud: {...}      # CloudStoreSpec fields
    startup: {...}    # StartupSpec fields
    prices: {...}     # PriceSpec fields
    features: {...}   # FeatureSpec fields
    workload: {kind: bursty, rate_rps: 4, cv: 4, zipf_s: 1.0}          # envs.workloads
    episode_s: 1800   # simulated seconds per episode
    step_s: 10        # simulated seconds per env step (control interval)
    span_s: 86400     # time span episodes are drawn from (trace length for traces)
    held_out_fraction: 0.25   # the last fraction of span_s is kept for evaluation
    max_models: 4     # v0's padding; v1's spaces do not depend on the number of models
    scale_deltas: [-4, -1, 0, 1, 2, 4]
    reward: {late_usd: 0.05, late_usd_per_s: 0.005, drop_usd: 0.50, scale: 100}  # RewardPrices
    initial_copies: 0 # memory copies of each model present at reset (a warmed-up pool)
    warmup_s: 600     # played before each episode's window under the reference policy
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from . import yamlvalues
from .host_profile import expand_host_entry
from .sim import catalog
from .sim.config import (
    CloudStoreSpec,
    ConfigError,
    FeatureSpec,
    HostSpec,
    ModelSpec,
    PriceSpec,
    SimConfig,
    StartupSpec,
)

PRESET_DIR = Path(__file__).parent / "presets"


@dataclass(frozen=True)
class RewardPrices:
    """The reward's exchange rates: what a late and a dropped request cost, in dollars.

    ``reward = -scale * (dollars spent + late_usd * late requests + late_usd_per_s * seconds
    late + drop_usd * drops)`` per control interval; a request is late when dispatched past its
    SLO, and "seconds late" sums latency - SLO over those (see the env's docstring). GPU-hours
    and pool memory are priced by the scenario's ``prices`` section (calibration.md); these
    are the operator's, for a request worth $0.05 (an assumption: calibration.md has no figure;
    it is the order of a few thousand tokens of a hosted large model):

    * ``late_usd``: $0.05 per late request: it is refunded (an SLA credit of its whole value).
    * ``late_usd_per_s``: $0.005 per second past the SLO: Amazon's often-quoted finding that
      every 100 ms of latency cost 1% of sales (G. Linden, 2006) prices latency at 10% of a
      request's value per second, so a 20 s cold start costs more than a 1 s one.
    * ``drop_usd``: $0.50 per dropped request: the value plus a lost-customer cost (10x).

    At these rates an A10G-hour ($1.006) is worth about 20 late requests: keeping a GPU warm
    pays for a model that would otherwise make a few requests an hour wait for a cold start.
    ``drop_usd`` must exceed the most a late request can cost (``late_usd`` + the request
    timeout x ``late_usd_per_s``: $0.35 at the defaults), so serving a request late always
    scores better than letting it drop; a scenario that breaks this is refused.
    * ``scale``: 100 reports the reward in cents, so a step's reward is of order 1 for the
      learners (it changes no ranking).
    """

    late_usd: float = 0.05
    late_usd_per_s: float = 0.005
    drop_usd: float = 0.50
    scale: float = 100.0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if not _finite(v) or v < 0 or (f.name == "scale" and v == 0):
                want = "a finite number > 0" if f.name == "scale" else "a finite number >= 0"
                raise ConfigError(f"reward.{f.name} must be {want}, got {v!r}")

    def late_dollars(self, late, late_s):
        """Price of ``late`` late requests that were ``late_s`` seconds late in all (numbers or
        arrays alike, e.g. per model)."""
        return self.late_usd * late + self.late_usd_per_s * late_s

    def drop_dollars(self, dropped):
        """Price of ``dropped`` dropped requests."""
        return self.drop_usd * dropped


def _finite(v) -> bool:
    """A real number (not a bool) that is finite: what every numeric scenario field needs."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _integer(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass(frozen=True)
class Scenario:
    """Everything an environment needs to build episodes."""

    name: str
    description: str
    sim: SimConfig
    workload: dict
    episode_s: float = 1800.0
    step_s: float = 10.0
    span_s: float = 86400.0
    held_out_fraction: float = 0.25
    max_models: int = 4
    scale_deltas: tuple[int, ...] = (-4, -1, 0, 1, 2, 4)
    reward: RewardPrices = field(default_factory=RewardPrices)
    initial_copies: int = 0
    # Assumption: 600 s, the keep-alive of the warm-up's reference policy (AWS Lambda's,
    # calibration.md): after it every instance reflects demand within that window, and the
    # pool holds what those minutes fetched. Longer is dearer: every reset plays the whole
    # warm-up, which PPO pays every episode.
    warmup_s: float = 600.0

    def __post_init__(self) -> None:
        def bad(name, expected):
            raise ConfigError(
                f"scenario {self.name!r}: {name} must be {expected}, got {getattr(self, name)!r}"
            )

        w = self.warmup_s
        if not isinstance(w, (int, float)) or isinstance(w, bool) or not 0 <= w < math.inf:
            bad("warmup_s", "a finite number >= 0 (0: episodes start from an empty cluster)")
        for f in ("episode_s", "step_s", "span_s"):
            v = getattr(self, f)
            if not _finite(v) or not v > 0:
                bad(f, "a finite number > 0")
        if self.step_s > self.episode_s:
            bad("step_s", f"<= episode_s ({self.episode_s})")
        if not _finite(self.held_out_fraction) or not 0 <= self.held_out_fraction < 1:
            bad("held_out_fraction", "a number in [0, 1)")
        ts = self.time_scale
        train_span = self.span_s * (1 - self.held_out_fraction)
        need = self.episode_s * ts  # trace seconds one episode replays
        if need > train_span or (self.held_out_fraction > 0 and need > self.span_s - train_span):
            what = "shorter than both the training and the held-out part of span_s"
            if ts != 1:
                raise ConfigError(
                    f"scenario {self.name!r}: episode_s * workload.time_scale = {self.episode_s:g}"
                    f" * {ts:g} = {need:g} trace seconds must be {what} ({train_span:g} and "
                    f"{self.span_s - train_span:g} s of span_s {self.span_s:g})"
                )
            bad("episode_s", f"{what} ({train_span:g} and {self.span_s - train_span:g} s)")
        if not _integer(self.max_models) or self.max_models < len(self.sim.models):
            bad("max_models", f"an integer >= the number of models ({len(self.sim.models)})")
        if not _integer(self.initial_copies) or not 0 <= self.initial_copies <= len(
            self.sim.hosts
        ):
            bad("initial_copies", f"an integer in [0, {len(self.sim.hosts)}] (the number of hosts)")
        r, timeout = self.reward, self.sim.features.request_timeout_s
        worst_late = r.late_usd + timeout * r.late_usd_per_s
        if not r.drop_usd > worst_late:
            raise ConfigError(
                f"scenario {self.name!r}: reward.drop_usd must exceed late_usd + "
                f"request_timeout_s x late_usd_per_s = {worst_late:g} (so that serving a request "
                f"late always beats dropping it), got {r.drop_usd!r}"
            )
        d = self.scale_deltas
        if (
            not isinstance(d, tuple)
            or not d
            or not all(_integer(x) for x in d)
            or len(set(d)) != len(d)
            or 0 not in d
        ):
            bad("scale_deltas", "a list of distinct integers including 0")

    @property
    def n_steps(self) -> int:
        return int(round(self.episode_s / self.step_s))

    @property
    def time_scale(self) -> float:
        """Trace seconds one simulated second replays: the workload's ``time_scale`` for a trace
        (the largest among a composition's trace parts), 1 for synthetic workloads (whose
        ``start_s`` is a time of day, not a position in a finite source)."""
        return _trace_time_scale(self.workload)

    def window_bounds(self, split: str) -> tuple[float, float]:
        """[lo, hi] range of episode start times for ``"train"`` or ``"eval"`` (held out).

        Start times are in the workload's own seconds (trace seconds for a trace): an episode
        starting at ``s`` replays ``[s, s + episode_s * time_scale)``, so every training window
        ends by the held-out cut ``span_s * (1 - held_out_fraction)`` and every held-out window
        starts at or after it and ends by ``span_s``.
        """
        cut = self.span_s * (1 - self.held_out_fraction)
        need = self.episode_s * self.time_scale
        if split == "train":
            return 0.0, cut - need
        if split == "eval":
            if self.held_out_fraction == 0:
                raise ConfigError(
                    f"scenario {self.name!r} has no held-out windows (held_out_fraction 0)"
                )
            return cut, self.span_s - need
        raise ConfigError(f"split must be 'train' or 'eval', got {split!r}")


def _trace_time_scale(workload) -> float:
    if not isinstance(workload, dict):
        return 1.0
    if workload.get("kind") == "trace":
        ts = workload.get("time_scale", 1.0)
        return float(ts) if _finite(ts) and ts > 0 else 1.0  # a bad value: make_workload says so
    if workload.get("kind") == "compose" and isinstance(workload.get("parts"), list):
        return max([_trace_time_scale(p) for p in workload["parts"]] + [1.0])
    return 1.0


_SPEC_SECTIONS = {
    "cloud": CloudStoreSpec,
    "startup": StartupSpec,
    "prices": PriceSpec,
    "features": FeatureSpec,
}
_MAPPING_KEYS = {"workload", "reward", *_SPEC_SECTIONS}
_TOP_KEYS = {
    "description", "hosts", "models", "workload", "episode_s", "step_s", "span_s",
    "held_out_fraction", "max_models", "scale_deltas", "reward", "initial_copies", "warmup_s",
    *_SPEC_SECTIONS,
}  # fmt: skip


def _unknown(where: str, key: str, valid) -> ConfigError:
    close = difflib.get_close_matches(key, list(valid), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"{where}: unknown key {key!r}; valid keys: {sorted(valid)}.{hint}")


def _build(cls, data, where: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping of {cls.__name__} fields, got {data!r}")
    valid = {f.name for f in dataclasses.fields(cls)}
    for k in data:
        if k not in valid:
            raise _unknown(where, k, valid)
    try:
        return cls(**data)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    except TypeError as e:
        raise ConfigError(f"{where}: {e}") from None


def _model(entry, where: str) -> ModelSpec:
    if isinstance(entry, str):
        try:
            return catalog.get_models([entry])[0]
        except ValueError as e:
            raise ConfigError(f"{where}: {e}") from None
    if isinstance(entry, dict) and "base" in entry:
        base = dataclasses.asdict(_model(entry["base"], where))
        rest = {k: v for k, v in entry.items() if k != "base"}
        for k in rest:
            if k not in base:
                raise _unknown(where, k, base)
        base.update(rest)
        return _build(ModelSpec, base, where)
    return _build(ModelSpec, entry, where)


def scenario_from_dict(
    data: dict, name: str = "custom", overrides: dict | None = None, base_dir: Path | None = None
) -> Scenario:
    """Build a validated :class:`Scenario` from a YAML-like dict plus keyword overrides.

    Overrides take top-level keys (``episode_s=600``) or section keys with a double underscore
    (``features__keep_alive_s=600``, ``reward__drop_usd=0.05``, ``workload__rate_rps=2``).
    """
    where = f"scenario {name!r}"
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: the file must hold a mapping")
    data = dict(data)
    for key, value in (overrides or {}).items():
        if "__" in key:
            sec, sub = key.split("__", 1)
            if sec not in _TOP_KEYS:
                raise _unknown(f"scenario {name!r} override", sec, _TOP_KEYS)
            if sec not in _MAPPING_KEYS:
                raise ConfigError(
                    f"{where}: override {key!r}: {sec} is not a section of keys; "
                    f"sections: {sorted(_MAPPING_KEYS)} (give {sec}=VALUE instead)"
                )
            current = data.get(sec) or {}
            if not isinstance(current, dict):
                raise ConfigError(f"{where}: {sec} must be a mapping, got {current!r}")
            data[sec] = {**current, sub: value}
        else:
            data[key] = value
    for k in data:
        if k not in _TOP_KEYS:
            raise _unknown(where, k, _TOP_KEYS)
    for k in ("models", "workload"):
        if k not in data:
            raise ConfigError(f"{where}: missing required key {k!r}")
    hosts = []
    host_list = data.get("hosts", [{}])  # absent: one default host; null or [] is an error
    if not isinstance(host_list, list) or not host_list:
        raise ConfigError(
            f"{where}: hosts must be a non-empty list of host mappings "
            f"([{{count: 2, n_gpus: 4, ...}}]), got {host_list!r}"
        )
    for i, h in enumerate(host_list):
        if not isinstance(h, dict):
            raise ConfigError(
                f"{where}: hosts[{i}] must be a mapping of HostSpec fields (and count), got {h!r}"
            )
        try:  # a host profile (benchmarks.calibrate_host): its fields, explicit keys winning
            h = expand_host_entry(h, base_dir if base_dir is not None else Path.cwd())
        except ConfigError as e:
            raise ConfigError(f"{where}: hosts[{i}]: {e}") from None
        h = dict(h)
        count = h.pop("count", 1)
        if not _integer(count) or count < 1:
            raise ConfigError(f"{where}: hosts[{i}].count must be an integer >= 1, got {count!r}")
        hosts += [_build(HostSpec, h, f"{where}: hosts[{i}]")] * count
    models = data["models"]
    if not isinstance(models, list) or not models:
        raise ConfigError(f"{where}: models must be a non-empty list, got {models!r}")
    specs = []
    for i, m in enumerate(models):
        if isinstance(m, dict) and "copies" in m:
            m = dict(m)
            n = m.pop("copies")
            if not isinstance(n, int) or n < 1:
                raise ConfigError(f"{where}: models[{i}].copies must be an integer >= 1, got {n!r}")
            spec = _model(m, f"{where}: models[{i}]")
            specs += [dataclasses.replace(spec, name=f"{spec.name}.{k + 1}") for k in range(n)]
        else:
            specs.append(_model(m, f"{where}: models[{i}]"))
    specs = tuple(specs)
    sections = {
        k: _build(cls, data.get(k) or {}, f"{where}: {k}") for k, cls in _SPEC_SECTIONS.items()
    }
    try:
        sim = SimConfig(hosts=tuple(hosts), models=specs, **sections)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    wl = data["workload"]
    if not isinstance(wl, dict) or "kind" not in wl:
        raise ConfigError(f"{where}: workload must be a mapping with a 'kind', got {wl!r}")
    top = {
        k: data[k]
        for k in (
            "episode_s",
            "step_s",
            "span_s",
            "held_out_fraction",
            "max_models",
            "initial_copies",
            "warmup_s",
        )
        if k in data
    }
    if "scale_deltas" in data:
        d = data["scale_deltas"]
        if not isinstance(d, list):
            raise ConfigError(
                f"{where}: scale_deltas must be a list of distinct integers including 0 "
                f"([-1, 0, 1]), got {d!r}"
            )
        top["scale_deltas"] = tuple(d)
    reward = _build(RewardPrices, data.get("reward") or {}, f"{where}: reward")
    sc = Scenario(
        name=name,
        description=str(data.get("description", "")),
        sim=sim,
        workload=dict(wl),
        reward=reward,
        **top,
    )
    # Validate the workload spec now rather than at the first reset.
    from .workloads import make_workload

    try:
        gen = make_workload(sc.workload)
    except (ValueError, TypeError, FileNotFoundError) as e:
        raise ConfigError(f"{where}: workload: {e}") from None
    check_workload_size(gen, sc.episode_s, where)
    return sc


MAX_REQUESTS_PER_EPISODE = 20_000_000
"""Memory bound on one episode's workload (an assumption, not a calibration). At the cap, drawing
the workload and building the simulator's per-request arrays raised the peak resident memory
from 0.10 to 0.72 GB (``python -m benchmarks.workload_memory``, 2026-12-01: 32 bytes a request),
which fits beside training on a small machine. The Azure day shipped with the project is 927,272
requests."""


def check_workload_size(gen, episode_s: float, where: str) -> None:
    """Refuse, before anything is drawn, a workload whose expected requests in one episode exceed
    :data:`MAX_REQUESTS_PER_EPISODE` (``gen.expected_requests``: an upper estimate and the
    field that sets it).

    Raises:
        ConfigError: Naming the field, the expected count and the cap.
    """
    bound = getattr(gen, "expected_requests", None)
    if bound is None:
        return
    n, fld = bound(float(episode_s))
    if n > MAX_REQUESTS_PER_EPISODE:
        raise ConfigError(
            f"{where}: workload.{fld}: about {n:.3g} requests per {episode_s:g}-s episode, "
            f"above the {MAX_REQUESTS_PER_EPISODE:,} a workload may hold in memory "
            "(envs.scenarios.MAX_REQUESTS_PER_EPISODE); lower the rate or episode_s"
        )


def trace_overrides(
    scenario, overrides: dict, trace, time_col: str | None = None, model_col: str | None = None
) -> tuple[dict, str | None]:
    """Overrides that replay the trace file ``trace`` instead of ``scenario``'s workload (what
    ``--trace`` does in both command-line tools).

    ``span_s`` becomes the trace's length and ``workload__<key>`` overrides (``time_scale``,
    ``mapping``...) apply to the trace workload, unless given. If ``episode_s`` was not given
    and one episode (``episode_s * time_scale`` trace seconds) does not fit both the training
    and the held-out part, it shrinks to the whole steps that fit.

    Returns:
        ``(overrides, note)``; ``note`` says how the episode shrank, or is None.

    Raises:
        ConfigError: A trace too short for one step in each part, or a bad override.
        FileNotFoundError, ValueError: The trace cannot be read (``TraceFormatError``).
    """
    from .workloads import load_trace

    tr = load_trace(trace, time_col=time_col, model_col=model_col)
    wl: dict = {"kind": "trace", "path": str(trace)}
    if time_col:
        wl["time_col"] = time_col
    if model_col:
        wl["model_col"] = model_col
    out = {}
    for k, v in overrides.items():
        if k.startswith("workload__"):
            wl[k[len("workload__") :]] = v
        elif k != "workload":
            out[k] = v
    out["workload"] = wl
    out.setdefault("span_s", float(tr.duration_s))
    if "episode_s" in out:
        return out, None
    base = load_scenario(scenario, **{k: v for k, v in out.items() if k not in ("workload", "span_s")})
    ts, f, span = _trace_time_scale(wl), base.held_out_fraction, float(out["span_s"])
    fit = (span * min(f, 1 - f) if f > 0 else span) / ts  # simulated seconds that fit
    if base.episode_s <= fit:
        return out, None
    episode_s = math.floor(fit / base.step_s) * base.step_s
    if episode_s < base.step_s:
        raise ConfigError(
            f"trace {str(trace)!r} lasts {span:g} s: too short for one {base.step_s:g}-s step in "
            f"both its training and held-out parts (held_out_fraction {f:g}, time_scale {ts:g})"
        )
    out["episode_s"] = episode_s
    return out, (
        f"trace {str(trace)!r} lasts {span:g} s; episode_s shrunk from {base.episode_s:g} to "
        f"{episode_s:g} s to fit its training and held-out parts (held_out_fraction {f:g}"
        + (f", time_scale {ts:g})" if ts != 1 else ")")
    )


def list_presets() -> dict[str, str]:
    """Preset name -> its one-line description."""
    out = {}
    for p in sorted(PRESET_DIR.glob("*.yaml")):
        with open(p) as f:
            out[p.stem] = str((yamlvalues.load(f) or {}).get("description", ""))
    return out


def load_scenario(scenario: str | Path | Scenario, **overrides) -> Scenario:
    """A preset name, a YAML path, or a Scenario (returned with overrides applied)."""
    if isinstance(scenario, Scenario):
        if not overrides:
            return scenario
        raise ConfigError("overrides need a preset name or a YAML path, not a Scenario object")
    s = str(scenario)
    path = PRESET_DIR / f"{s}.yaml"
    if not path.exists():
        path = Path(s)
        if not (s.endswith((".yaml", ".yml")) or path.exists()):
            names = list(list_presets())
            close = difflib.get_close_matches(s, names, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"unknown scenario {s!r}; presets: {names}, or a YAML file path.{hint}"
            )
        if not path.exists():
            raise ConfigError(f"scenario file {s!r} does not exist")
    try:
        with open(path) as f:
            data = yamlvalues.load(f)
    except yaml.YAMLError as e:
        raise ConfigError(f"scenario file {path}: not valid YAML ({' '.join(str(e).split())})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"scenario file {path}: cannot be read ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"scenario file {path}: must hold a mapping of keys, got {type(data).__name__}"
        )
    return scenario_from_dict(
        data,
        name=path.stem if path.parent == PRESET_DIR else str(path),
        overrides=overrides,
        base_dir=path.parent,
    )
