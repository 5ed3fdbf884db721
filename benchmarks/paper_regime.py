"""What decides the speedup of hierarchical sourcing over the baseline: one-at-a-time sweeps.

    python -m benchmarks.paper_regime                      # around `paper`, 20 episodes a point
    python -m benchmarks.paper_regime --quick              # CI size: 2 values a sweep, 1 short episode
    python -m benchmarks.paper_regime --out docs/img       # also the plots
    python -m benchmarks.paper_regime --around paper_regime

San Juan & Wong 2023 report "up to 19.3x lower p99 and 1.4x lower median" end-to-end latency for
hierarchical sourcing (calibration.md). Each sweep changes one parameter of the centre scenario
(``--around``, default ``paper``) through the same scenario overrides ``evaluate.py -o`` takes,
and runs the ``baseline`` and ``hierarchical`` policies with :func:`agents.evaluation.evaluate`
on identical held-out windows; a speedup is baseline latency / hierarchical latency of the
drop-aware percentiles that ``evaluate`` computes, pooled over every request and per deployment.
The sweeps (:data:`SWEEPS`): model size (every deployment one catalog model), cloud bandwidth
per load (one stream's rate, then parallel streams), deserialisation rate, runtime
initialisation, request timeout, request rate per deployment (the trace's ``time_scale``), pool
size (host memory lent to the cache) and which models serve the busiest trace functions. Values
with a calibration.md row are marked ``sourced`` in the JSON and filled on the plots.
:data:`PATH` then adds, one at a time, the changes that lead from ``paper`` to the
``paper_regime`` preset.

The last line printed is JSON: ``{"around", "episodes", "episode_s", "paper": {"p99", "p50",
"tolerance"}, "sweeps": {name: [point, ...]}, "path": [point, ...], "closest": point}``; a point
is ``{"value", "sourced", "p99_speedup", "p50_speedup", "within", "models_within", "models":
{name: {"requests", "p99_speedup", "p50_speedup"}}, ...}`` (``within``: both speedups within 25%
of the paper's; ``models_within``: the deployments for which both are).
``--out DIR`` writes ``paper_regime_p99.png`` and ``paper_regime_p50.png``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass

PAPER = {"p99": 19.3, "p50": 1.4}  # San Juan & Wong 2023, abstract (calibration.md)
TOLERANCE = 0.25  # "within 25%" of the paper's figures (issue 11)
POLICIES = ("baseline", "hierarchical")
EPISODES = 20  # per point: evaluate.py's default, so the centre point is the README's table


def within(p99: float, p50: float) -> bool:
    """Both speedups within :data:`TOLERANCE` of the paper's."""
    return all(
        math.isfinite(x) and abs(x / PAPER[k] - 1) <= TOLERANCE
        for k, x in (("p99", p99), ("p50", p50))
    )


@dataclass(frozen=True)
class Sweep:
    """One parameter swept around the centre scenario.

    ``apply(scenario, value)`` returns the overrides (``evaluate.py -o`` keys) that set it, from
    the centre's loaded :class:`envs.scenarios.Scenario`; ``sourced`` maps values that have a
    calibration.md row to that row.
    """

    label: str
    values: tuple
    quick: tuple
    sourced: dict
    apply: Callable
    log_x: bool = True


def _models(sc, **changes) -> list[dict]:
    """The centre's deployments as full ModelSpec entries, with ``changes`` applied."""
    return [{**dataclasses.asdict(m), **changes} for m in sc.sim.models]


def _hosts(sc, **changes) -> list[dict]:
    return [{**dataclasses.asdict(h), **changes} for h in sc.sim.hosts]


def _timeout(sc, t: float) -> dict:
    """The request timeout, with the smallest ``reward.drop_usd`` the scenario check accepts
    (late_usd + timeout x late_usd_per_s; the heuristics compared here do not read the reward)."""
    r = sc.reward
    return {
        "features__request_timeout_s": t,
        "reward__drop_usd": max(r.drop_usd, round(r.late_usd + t * r.late_usd_per_s + 0.05, 2)),
    }


def _one_model(sc, name: str) -> dict:
    """Every deployment becomes a copy of catalog model ``name`` (same count, same trace
    functions); a deserialisation rate the centre gives every model alike is kept."""
    from envs.sim.catalog import CATALOG

    rates = {m.deserialize_gb_per_s for m in sc.sim.models}
    base = dataclasses.asdict(CATALOG[name])
    if len(rates) == 1:
        base["deserialize_gb_per_s"] = rates.pop()
    return {"models": [{**base, "name": f"{name}.{i + 1}"} for i in range(len(sc.sim.models))]}


def _cloud(sc, gb_per_s: float) -> dict:
    """Cloud bandwidth of one load: below one stream's 93 MB/s a slower stream, above it that
    many parallel 93 MB/s streams (each load still crosses its host's NIC)."""
    one = 0.093  # S3, one stream (dvassallo/s3-benchmark)
    if gb_per_s <= one:
        return {"cloud__per_stream_gb_per_s": gb_per_s, "cloud__streams": 1}
    return {"cloud__per_stream_gb_per_s": one, "cloud__streams": round(gb_per_s / one)}


def _order(sc, order: str) -> dict:
    """The deployments listed by model size, so that (the trace mapping dealing the busiest
    drawn function to the first deployment) the smallest or the largest models serve the
    busiest functions. Which model serves which function is not published either way."""
    ms = sorted(sc.sim.models, key=lambda m: m.size_gb, reverse=order == "largest first")
    return {"models": [dataclasses.asdict(m) for m in ms]}


SWEEPS: dict[str, Sweep] = {
    "model_size_gb": Sweep(
        "model (every deployment), size GB",
        ("resnet50", "bert-base", "bart-large", "gpt2-xl", "t5-3b", "llama-2-7b"),
        ("bert-base", "t5-3b"),
        {
            "resnet50": "torchvision",
            "bert-base": "HF card",
            "bart-large": "author's prototype",
            "gpt2-xl": "author's prototype",
            "t5-3b": "author's prototype",
            "llama-2-7b": "HF shards",
        },  # fmt: skip
        _one_model,
    ),
    "cloud_gb_per_s": Sweep(
        "cloud GB/s per load",
        (0.023, 0.047, 0.093, 0.372, 2.7),
        (0.047, 2.7),
        {
            0.093: "S3 one stream (dvassallo/s3-benchmark)",
            2.7: "S3 many streams at 25 Gb/s (dvassallo/s3-benchmark)",
        },  # fmt: skip
        _cloud,
    ),
    "deserialize_gb_per_s": Sweep(
        "deserialisation GB/s",
        (0.7, 2.6, 11.4, 23.6),
        (0.7, 11.4),
        {
            0.7: "author's prototype (~0.7)",
            2.6: "safetensors, OPT-6.7B 13.4 GB in 5.09 s (ServerlessLLM; derived)",
            11.4: "ServerlessLLM loader, OPT-6.7B 13.4 GB in 1.18 s (derived)",
            23.6: "ServerlessLLM loader, Llama-3.1-8B 16.1 GB in 0.68 s on H100 (derived)",
        },  # fmt: skip
        lambda sc, v: {"models": _models(sc, deserialize_gb_per_s=v)},
    ),
    "runtime_init_s": Sweep(
        "runtime initialisation s",
        (0.0, 0.5, 1.0, 2.0, 4.48),
        (0.5, 4.48),
        {4.48: "CUDA + PyTorch init median (pytorch#22583)"},
        lambda sc, v: {"startup__runtime_init_s": v},
        log_x=False,
    ),
    "request_timeout_s": Sweep(
        "request timeout s",
        (60.0, 120.0, 300.0, 3600.0),
        (60.0, 3600.0),
        {60.0: "assumption (FeatureSpec)", 3600.0: "none within an episode (paper: end-to-end)"},
        _timeout,
    ),
    "rate_scale": Sweep(
        "request rate per deployment (x trace)",
        (0.25, 0.5, 1.0, 2.0, 4.0),
        (0.25, 4.0),
        {1.0: "Azure Functions 2019 as recorded"},
        lambda sc, v: {"workload__time_scale": v},
    ),
    "cache_gb": Sweep(
        "pool: host memory lent per host GB",
        (0.0, 8.0, 16.0, 32.0, 64.0, 128.0),
        (8.0, 64.0),
        {},
        lambda sc, v: {"hosts": _hosts(sc, cache_gb=v)},
        log_x=False,
    ),
    "function_order": Sweep(
        "busiest trace functions go to",
        ("smallest first", "largest first"),
        ("smallest first", "largest first"),
        {},  # a choice, not a number: neither order is published (paper.yaml lists smallest first)
        _order,
        log_x=False,
    ),
}

PATH: tuple[tuple[str, dict], ...] = (
    ("paper", {}),
    ("+ safetensors loader", {"deserialize_gb_per_s": 2.6}),
    ("+ no request timeout", {"request_timeout_s": 3600.0}),
    ("+ larger models on busier functions", {"function_order": "largest first"}),
)
"""Cumulative changes from ``paper``: each step adds sweep values to the previous ones; the last
step is the ``paper_regime`` preset (a test checks they build the same scenario)."""


def path_overrides(step: int, base: dict | None = None) -> dict:
    """Overrides of ``paper`` (beside ``base``) that make step ``step`` of :data:`PATH`: each
    sweep value is applied to the scenario the steps before it built."""
    from envs.scenarios import load_scenario

    out: dict = {}
    for _, changes in PATH[: step + 1]:
        for name, value in changes.items():
            out.update(SWEEPS[name].apply(load_scenario("paper", **(base or {}), **out), value))
    return out


def _sourced(step: int) -> bool:
    """Whether every value :data:`PATH` has set by ``step`` has a calibration.md row."""
    return all(
        SWEEPS[n].sourced.get(v) is not None for _, ch in PATH[: step + 1] for n, v in ch.items()
    )


def measure(scenario: str, overrides: dict, episodes: int, seed: int = 0) -> dict:
    """Pooled and per-deployment p50/p99 speedups of hierarchical over baseline (drop-aware
    percentiles from :func:`agents.evaluation.evaluate`)."""
    from agents.evaluation import evaluate
    from baselines import make_policy

    res = evaluate(
        scenario, {n: make_policy(n) for n in POLICIES}, episodes=episodes, seed=seed,
        overrides=overrides, progress=False, record_timeline=False,
    )  # fmt: skip
    b, h = (res["policies"][n] for n in POLICIES)

    def ratio(x: dict, y: dict, key: str) -> float:
        a, c = x[key], y[key]
        return a / c if math.isfinite(a) and math.isfinite(c) and c > 0 else float("nan")

    models = {
        name: {
            "requests": bm["requests_arrived"],
            "p99_speedup": ratio(bm, h["models"][name], "p99_latency_s"),
            "p50_speedup": ratio(bm, h["models"][name], "p50_latency_s"),
        }
        for name, bm in b["models"].items()
        if bm["requests_arrived"] > 0
    }
    p99, p50 = ratio(b, h, "p99_latency_s"), ratio(b, h, "p50_latency_s")
    return {
        "p99_speedup": p99,
        "p50_speedup": p50,
        "within": within(p99, p50),
        "models_within": [
            n for n, m in models.items() if within(m["p99_speedup"], m["p50_speedup"])
        ],
        "baseline": {k: b[k] for k in ("p50_latency_s", "p99_latency_s", "drop_rate")},
        "hierarchical": {k: h[k] for k in ("p50_latency_s", "p99_latency_s", "drop_rate")},
        "requests": b["requests_arrived"],
        "models": models,
    }


def _distance(p: dict) -> float:
    """How far a point is from the paper: the larger of the two log-ratios."""
    d = [abs(math.log(p[f"{k}_speedup"] / PAPER[k])) for k in ("p99", "p50")]
    return max(d) if all(math.isfinite(x) for x in d) else math.inf


def run(around: str = "paper", quick: bool = False, episodes: int | None = None,
        log=None) -> dict:  # fmt: skip
    """Every sweep around ``around`` and the :data:`PATH`; see the module docstring."""
    from envs.scenarios import load_scenario

    episodes = episodes or (1 if quick else EPISODES)
    base = {"episode_s": 600.0} if quick else {}
    centre = load_scenario(around, **base)
    out: dict = {
        "around": around, "episodes": episodes, "episode_s": centre.episode_s,
        "paper": {**PAPER, "tolerance": TOLERANCE}, "sweeps": {}, "path": [],
    }  # fmt: skip

    def point(scenario, ov, value, sourced) -> dict:
        t0 = time.perf_counter()
        p = {"value": value, "sourced": sourced, **measure(scenario, {**base, **ov}, episodes)}
        if log:
            log(f"{value!s:>24}: p99 {p['p99_speedup']:6.2f}x  p50 {p['p50_speedup']:6.2f}x"
                f"  ({time.perf_counter() - t0:.1f} s)")  # fmt: skip
        return p

    for name, sw in SWEEPS.items():
        if log:
            log(f"{name} around {around}")
        vals = sw.quick if quick else sw.values
        out["sweeps"][name] = [
            point(around, sw.apply(centre, v), v, sw.sourced.get(v)) for v in vals
        ]
    steps = [len(PATH) - 1] if quick else range(len(PATH))
    if log:
        log("path from paper")
    for i in steps:
        out["path"].append(point("paper", path_overrides(i, base), PATH[i][0], _sourced(i)))
    out["path"].append(point("paper_regime", {}, "paper_regime preset", _sourced(len(PATH) - 1)))
    candidates = [p for pts in out["sweeps"].values() for p in pts] + out["path"]
    out["closest"] = min(candidates, key=_distance)
    return out


def main(argv: list[str] | None = None) -> int:
    from agents.cli import OneLineParser, UsageError, check_output, one_line
    from envs.sim.config import ConfigError

    p = OneLineParser(prog="python -m benchmarks.paper_regime", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="2 values a sweep, one 600-s episode")
    p.add_argument(
        "--around", default="paper", help="centre scenario (preset or YAML; default paper)"
    )
    p.add_argument(
        "--episodes", type=int, help=f"episodes per point (default {EPISODES}, 1 with --quick)"
    )
    p.add_argument("--out", metavar="DIR", help="write the plots (PNG) into this folder")
    try:
        a = p.parse_args(argv)
        if a.episodes is not None and a.episodes < 1:
            raise UsageError(f"--episodes must be >= 1, got {a.episodes}")
        if a.out:
            check_output(a.out, "--out", folder=True)
        from envs.scenarios import load_scenario

        load_scenario(a.around)  # a bad centre fails here, before any run
    except (UsageError, ConfigError) as e:
        print(f"paper_regime: error: {one_line(e)}", file=sys.stderr)
        return 2
    res = run(a.around, a.quick, a.episodes, log=lambda s: print(s, file=sys.stderr, flush=True))
    if a.out:
        for path in plot(res, a.out):
            print(f"plot: {path}", file=sys.stderr)
    c = res["closest"]
    print(f"closest: {c['value']} p99 {c['p99_speedup']:.2f}x p50 {c['p50_speedup']:.2f}x"
          f" (paper {PAPER['p99']}x, {PAPER['p50']}x)", file=sys.stderr)  # fmt: skip
    print(json.dumps(_finite(res)))
    return 0


def _finite(x):
    """NaN and infinities as null, so the JSON line is strict JSON."""
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


# ================================================================================= plots ========
def _x(name: str, values: list) -> tuple[list[float], list[str]]:
    """Plot positions of a sweep's values and their tick labels (models and path steps in
    order, numbers at their value)."""
    if name == "model_size_gb":
        from envs.sim.catalog import CATALOG

        return list(range(len(values))), [f"{v}\n{CATALOG[v].size_gb:g} GB" for v in values]
    if name == "path" or isinstance(values[0], str):
        return list(range(len(values))), [textwrap.fill(str(v), 16) for v in values]
    return [float(v) for v in values], [f"{v:g}" for v in values]


def plot(res: dict, out_dir) -> list:
    """``paper_regime_{p99,p50}.png`` in ``out_dir``: one panel per sweep and one for the path;
    pooled speedup in black (filled where the value is sourced), each deployment a dot coloured
    by its base model, the paper's figure as a line in its +-25% band."""
    from pathlib import Path

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullLocator

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    panels = [*res["sweeps"].items(), ("path", res["path"])]
    bases = sorted({n.rsplit(".", 1)[0] for _, pts in panels for p in pts for n in p["models"]})
    colour = {b: f"C{i % 10}" for i, b in enumerate(bases)}
    paths = []
    for metric in ("p99", "p50"):
        key, paper = f"{metric}_speedup", res["paper"][metric]
        rows = math.ceil(len(panels) / 3)
        fig = Figure(figsize=(14, 3.6 * rows + 1.2))
        axes = fig.subplots(rows, 3, sharey=True).ravel()
        for ax in axes[len(panels) :]:
            ax.set_visible(False)
        for ax, (name, pts) in zip(axes[: len(panels)], panels, strict=True):
            xs, ticks = _x(name, [p["value"] for p in pts])
            ys = [p[key] if p[key] is not None else math.nan for p in pts]
            ax.axhspan(paper * (1 - res["paper"]["tolerance"]), paper * (1 + res["paper"]["tolerance"]),
                       color="gold", alpha=0.3, lw=0)  # fmt: skip
            ax.axhline(paper, color="goldenrod", lw=1, ls="--")
            for x, p in zip(xs, pts, strict=True):
                for n, m in p["models"].items():
                    if m[key] is not None and math.isfinite(m[key]):
                        ax.plot(x, m[key], "o", ms=3, alpha=0.5, color=colour[n.rsplit(".", 1)[0]])
            ax.plot(xs, ys, "-", color="black", lw=1.8)
            for x, y, p in zip(xs, ys, pts, strict=True):
                ax.plot(x, y, "o", ms=7, color="black", mfc="black" if p["sourced"] else "white")
            ax.set_yscale("log")
            if name in SWEEPS and SWEEPS[name].log_x and name != "model_size_gb":
                ax.set_xscale("log")
            ax.set_xticks(xs)
            ax.set_xticklabels(
                ticks, rotation=30 if name in ("path", "model_size_gb") else 0, fontsize=7
            )
            ax.xaxis.set_minor_locator(NullLocator())
            ax.set_title(SWEEPS[name].label if name in SWEEPS else "sourced path from paper",
                         fontsize=9)  # fmt: skip
            ax.grid(True, which="both", alpha=0.3)
        ys_all = [1.0, paper * 1.3] + [
            v for _, pts in panels for p in pts
            for v in [p[key], *(m[key] for m in p["models"].values())]
            if v is not None and math.isfinite(v) and v > 0
        ]  # fmt: skip
        axes[0].set_ylim(min(ys_all) / 1.2, max(ys_all) * 1.2)
        grid = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
        ticks_y = sorted(
            {paper, *(t for t in grid if t <= max(ys_all) and abs(t / paper - 1) > 0.3)}
        )
        axes[0].set_yticks(ticks_y)
        axes[0].set_yticklabels([f"{t:g}x" for t in ticks_y])
        axes[0].yaxis.set_minor_locator(NullLocator())
        for ax in axes[::3]:
            ax.set_ylabel(f"{metric} speedup (baseline / hierarchical)")
        handles = [axes[0].plot([], [], "o", color=c, label=b)[0] for b, c in colour.items()]
        handles += [
            axes[0].plot([], [], "o-", color="black", label="pooled (filled: sourced values)")[0],
            axes[0].plot([], [], "--", color="goldenrod", label=f"paper {paper}x +-25%")[0],
        ]
        fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 5), fontsize=8)
        fig.suptitle(
            f"{metric} speedup of hierarchical over baseline around {res['around']} "
            f"({res['episodes']} episode(s) of {res['episode_s']:g} s a point, drop-aware)"
        )
        fig.subplots_adjust(bottom=0.12, top=0.93, hspace=0.5, wspace=0.12)
        FigureCanvasAgg(fig)
        path = out / f"paper_regime_{metric}.png"
        fig.savefig(path, dpi=110)
        paths.append(path)
    return paths


if __name__ == "__main__":
    sys.exit(main())
