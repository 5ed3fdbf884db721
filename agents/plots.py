"""Figures of an :func:`agents.evaluation.evaluate` result (matplotlib, Agg canvas, no pyplot).

* ``latency_cdf.png``: empirical CDF of every completed request's latency per policy (log x),
  with each policy's SLO-relevant tail visible at the top;
* ``cost_vs_p99.png``: mean cost per episode against pooled p99 latency, one point per policy;
* ``timeline.png``: the first episode over time: demand (identical for every policy) on top,
  then one row per policy with its instances (warm + loading, and warm alone) and queued
  requests (right axis, log).

No global matplotlib state is touched (figures are drawn on their own Agg canvases), so this is
safe to call from training code that uses another backend.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


def _title(results: dict) -> str:
    return (
        f"{results.get('scenario')} ({results.get('split')}), {results.get('episodes')} episode(s) "
        f"from seed {results.get('seed')}"
    )


def _label(name: str, r: dict) -> str:
    return name + (" *" if r.get("privileged") else "")


def plot_latency_cdf(results: dict, path: Path) -> Path:
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    raw = results.get("_raw", {})
    for name, r in results["policies"].items():
        lat = np.sort(np.asarray(raw.get(name, {}).get("latencies", []), dtype=float))
        lat = lat[lat > 0]
        if lat.size == 0:
            continue
        y = np.arange(1, lat.size + 1) / lat.size
        ax.step(lat, y, where="post", label=_label(name, r))
    ax.set_xscale("log")
    ax.set_xlabel("end-to-end latency (s)")
    ax.set_ylabel("fraction of completed requests")
    ax.set_ylim(0, 1.01)
    ax.axhline(0.99, color="0.6", lw=0.8, ls=":")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"Latency CDF: {_title(results)}", fontsize=9)
    return _save(fig, path)


def plot_cost_vs_p99(results: dict, path: Path) -> Path:
    fig = Figure(figsize=(6.5, 4.5))
    ax = fig.add_subplot()
    markers = "osD^vP*Xh<>"
    ys = []
    for k, (name, r) in enumerate(results["policies"].items()):
        x, y = r.get("cost_usd"), r.get("p99_latency_s")
        if x is None or y is None or not (np.isfinite(x) and np.isfinite(y)):
            continue
        ax.scatter([x], [y], s=50, marker=markers[k % len(markers)], label=_label(name, r))
        ys.append(y)
    if ys and min(ys) > 0 and max(ys) / min(ys) > 10:
        ax.set_yscale("log")
    ax.set_xlabel("cost per episode ($)")
    ax.set_ylabel("p99 latency (s)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    ax.set_title(f"Cost vs p99 (lower left is better): {_title(results)}", fontsize=9)
    return _save(fig, path)


def plot_timeline(results: dict, path: Path) -> Path | None:
    raw = results.get("_raw", {})
    lines = {n: raw.get(n, {}).get("timeline") for n in results["policies"]}
    lines = {n: t for n, t in lines.items() if t is not None}
    if not lines:
        return None
    n = len(lines)
    fig = Figure(figsize=(9, 1.9 * (n + 1)))
    axes = np.atleast_1d(fig.subplots(n + 1, 1, sharex=True))
    first = next(iter(lines.values()))
    axes[0].fill_between(first["t_s"] / 60, first["demand_rps"], step="pre", color="0.6")
    axes[0].set_ylabel("demand\n(req/s)")
    axes[0].set_title(f"First episode per policy: {_title(results)}", fontsize=9)
    ymax = max(float(np.max(t["instances"], initial=0)) for t in lines.values()) + 0.5
    for ax, (name, tl) in zip(axes[1:], lines.items(), strict=True):
        t = tl["t_s"] / 60
        ax.step(t, tl["instances"], where="pre", color="C0", lw=1.2, label="instances")
        ax.step(t, tl["warm"], where="pre", color="C2", lw=0.8, ls="--", label="warm")
        ax.set_ylim(-0.2, ymax)
        ax.set_ylabel(_label(name, results["policies"][name]), fontsize=9)
        q = ax.twinx()
        q.step(t, tl["queue"], where="pre", color="C3", lw=0.8, label="queued")
        q.set_yscale("symlog", linthresh=1)
        q.tick_params(axis="y", labelsize=7, colors="C3")
        ax.grid(True, alpha=0.3)
    h1, l1 = axes[1].get_legend_handles_labels()
    axes[1].legend(
        h1 + [q.lines[0]], l1 + ["queued (right, log)"], fontsize=7, loc="upper right", ncol=3
    )
    axes[-1].set_xlabel("time in episode (min)")
    return _save(fig, path)


def plot_results(results: dict, out_dir) -> list[Path]:
    """Write ``latency_cdf.png``, ``cost_vs_p99.png`` and ``timeline.png`` into ``out_dir``.

    Returns the paths written (the timeline is skipped when no timeline was recorded).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [
        plot_latency_cdf(results, out / "latency_cdf.png"),
        plot_cost_vs_p99(results, out / "cost_vs_p99.png"),
        plot_timeline(results, out / "timeline.png"),
    ]
    return [p for p in paths if p is not None]
